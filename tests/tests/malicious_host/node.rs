//! The honest parts of the suite: the real binaries (`chrysalis-agent`,
//! `chrysalis`, `chrysalis-stub-engine`, built by cargo), a node (stub
//! engine + agent with the simulated TEE, both on 127.0.0.1, killed on
//! drop), and the client (`chrysalis verify` with its default policy: the
//! published releases compiled in).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

/// The published release every node plays.
pub const RELEASE: &str = "chrysalis-0.2.0-cpu";
/// Its SNP configuration (verifiable by default).
pub const SNP_CONFIGURATION: &str = "snp-2cpu-EPYC-v4";
/// Its TDX configuration (every register predicted: verifiable by default).
pub const TDX_CONFIGURATION: &str = "tdx-2cpu-2048m-0gpu";
/// How long a process may take to start or answer.
const WAIT: Duration = Duration::from_secs(90);

/// The binaries under test.
pub struct Bins {
    pub agent: PathBuf,
    pub chrysalis: PathBuf,
    pub engine: PathBuf,
}

/// Newest modification time of the sources the binaries are built from
/// (the workspace crates they link, the releases compiled in, the lock).
fn newest_source() -> std::time::SystemTime {
    fn walk(dir: &Path, newest: &mut std::time::SystemTime, depth: u32) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.')
                || [
                    "target",
                    "node_modules",
                    "tests",
                    "benches",
                    "examples",
                    "python",
                ]
                .contains(&name.as_ref())
            {
                continue;
            }
            let built_from = [".rs", ".toml", ".json"].iter().any(|x| name.ends_with(x));
            match e.file_type() {
                Ok(t) if t.is_dir() && depth < 8 => walk(&path, newest, depth + 1),
                Ok(t) if t.is_file() && built_from => {
                    if let Ok(m) = e.metadata().and_then(|m| m.modified()) {
                        *newest = (*newest).max(m);
                    }
                }
                _ => {}
            }
        }
    }
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let mut newest = std::time::SystemTime::UNIX_EPOCH;
    for d in [
        "agent/src",
        "attestation",
        "host-tools/src",
        "host-tools/ton/src",
        "measurements",
        "image/stub-engine",
    ] {
        walk(&root.join(d), &mut newest, 0);
    }
    for f in [
        "Cargo.lock",
        "Cargo.toml",
        "agent/Cargo.toml",
        "host-tools/Cargo.toml",
    ] {
        if let Ok(m) = std::fs::metadata(root.join(f)).and_then(|m| m.modified()) {
            newest = newest.max(m);
        }
    }
    newest
}

/// The binaries: `$CHRYSALIS_AGENT_BIN`, `$CHRYSALIS_BIN` and
/// `$CHRYSALIS_STUB_ENGINE_BIN` when set; else those beside this test's
/// executable (`cargo test --workspace` builds them) when they are newer
/// than their sources; else built once with cargo into this test's own
/// target directory.
pub fn bins() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(|| {
        let given = |var: &str| std::env::var_os(var).map(PathBuf::from);
        if let (Some(agent), Some(chrysalis), Some(engine)) = (
            given("CHRYSALIS_AGENT_BIN"),
            given("CHRYSALIS_BIN"),
            given("CHRYSALIS_STUB_ENGINE_BIN"),
        ) {
            return Bins {
                agent,
                chrysalis,
                engine,
            };
        }
        // target/<profile>/deps/malicious_host-HASH → target/<profile>.
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>/deps")
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("target directory");
        let built = Bins {
            agent: profile_dir.join("chrysalis-agent"),
            chrysalis: profile_dir.join("chrysalis"),
            engine: profile_dir.join("chrysalis-stub-engine"),
        };
        let sources = newest_source();
        let fresh = |p: &Path| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t >= sources)
        };
        if fresh(&built.agent) && fresh(&built.chrysalis) && fresh(&built.engine) {
            return built;
        }
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args([
            "build",
            "-q",
            "-p",
            "chrysalis-agent",
            "-p",
            "chrysalis-host-tools",
            "-p",
            "chrysalis-stub-engine",
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("CARGO_TARGET_DIR", target_dir);
        // What cargo sets for this test process (package name, manifest
        // directory, …) would change build-script fingerprints and rebuild
        // half the workspace: the nested build gets the user's environment.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            let cargo_set = (k.starts_with("CARGO_")
                && ![
                    "CARGO_HOME",
                    "CARGO_TARGET_DIR",
                    "CARGO_INCREMENTAL",
                    "CARGO_NET_OFFLINE",
                ]
                .contains(&k.as_ref())
                && !k.starts_with("CARGO_BUILD_")
                && !k.starts_with("CARGO_PROFILE_")
                && !k.starts_with("CARGO_REGISTRIES_")
                && !k.starts_with("CARGO_TERM_"))
                || k == "OUT_DIR"
                || k == "RUST_TEST_THREADS";
            if cargo_set {
                cmd.env_remove(k.as_ref());
            }
        }
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build of the binaries failed");
        built
    })
}

/// A child process whose output lines arrive on a channel.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn start(program: &Path, args: &[String]) -> Proc {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        let (tx, rx) = mpsc::channel();
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Proc {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// The first line containing `needle`, or `Err(all output)` when the
    /// process ends (or [`WAIT`] passes) first.
    fn wait_for(&mut self, needle: &str) -> Result<String, String> {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return Ok(l);
                    }
                }
                Err(_) => return Err(self.seen.join("\n")),
            }
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `addr` from the first `http(s)://ADDR` in `line`.
fn url_in(line: &str, scheme: &str) -> String {
    let start = line.find(scheme).expect("URL in line");
    let rest = &line[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '"' || c == ',' || c == ')')
        .unwrap_or(rest.len());
    rest[..end].to_owned()
}

/// A node: the stub engine and `chrysalis-agent --provider sim` before it.
pub struct Node {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The agent's output up to its ready line.
    pub log: String,
    _agent: Proc,
    _engine: Proc,
}

/// What starting an agent gave: a serving node, or the agent's refusal.
pub enum Started {
    /// It serves.
    Serving(Node),
    /// It exited before serving, with this code and output.
    Refused { code: Option<i32>, output: String },
}

impl Node {
    /// Starts a node whose agent gets `agent_args` after the common ones.
    pub fn try_start(agent_args: &[String]) -> Started {
        let b = bins();
        let mut engine = Proc::start(&b.engine, &["--listen".into(), "127.0.0.1:0".into()]);
        let line = engine
            .wait_for("listening on http://")
            .unwrap_or_else(|out| panic!("stub engine did not start:\n{out}"));
        let upstream = url_in(&line, "http://");
        let mut args: Vec<String> = [
            "--provider",
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--metrics-listen",
            "127.0.0.1:0",
            "--log-format",
            "text",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend_from_slice(agent_args);
        let mut agent = Proc::start(&b.agent, &args);
        match agent.wait_for("chrysalis-agent ready: https://") {
            Ok(line) => Started::Serving(Node {
                url: url_in(&line, "https://"),
                log: agent.seen.join("\n"),
                _agent: agent,
                _engine: engine,
            }),
            Err(output) => {
                // It said why; give it a moment (bounded) to exit.
                let mut code = None;
                for _ in 0..100 {
                    if let Ok(Some(s)) = agent.child.try_wait() {
                        code = s.code();
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                agent.stop();
                Started::Refused { code, output }
            }
        }
    }

    /// Starts a node that must serve.
    pub fn start(agent_args: &[String]) -> Node {
        match Node::try_start(agent_args) {
            Started::Serving(n) => n,
            Started::Refused { code, output } => {
                panic!("agent {agent_args:?} exited ({code:?}) before serving:\n{output}")
            }
        }
    }
}

/// The agent arguments of a node playing `configuration` of the release,
/// deviating by each `--sim-set` in `sets`.
pub fn plays(configuration: &str, sets: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "--sim-release".into(),
        RELEASE.into(),
        "--sim-configuration".into(),
        configuration.into(),
    ];
    for s in sets {
        a.push("--sim-set".into());
        a.push((*s).into());
    }
    a
}

/// What `chrysalis verify` said.
pub struct Verdict {
    /// Its exit code.
    pub code: Option<i32>,
    /// Its `--json` output.
    pub json: Value,
}

impl Verdict {
    /// The rejection or error message (`error.message`: every reason).
    pub fn message(&self) -> &str {
        self.json["error"]["message"].as_str().unwrap_or_default()
    }

    /// The label of the configuration the node was found to run.
    pub fn node(&self) -> &str {
        self.json["node"]["label"].as_str().unwrap_or_default()
    }

    /// Asserts a refusal with `code` whose message contains `reason`.
    #[track_caller]
    pub fn refused(&self, code: i32, reason: &str) {
        assert_eq!(self.json["accepted"], false, "{}", self.json);
        assert_eq!(self.code, Some(code), "{}", self.json);
        assert!(
            self.message().contains(reason),
            "expected {reason:?} in: {}",
            self.message()
        );
    }
}

/// `chrysalis verify URL --allow-sim --json`: the default client (the
/// published releases compiled in, fresh evidence for a nonce), with only
/// simulated evidence allowed on top.
pub fn verify(url: &str) -> Verdict {
    let out = Command::new(&bins().chrysalis)
        .args(["verify", url, "--allow-sim", "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("run chrysalis verify");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    Verdict {
        code: out.status.code(),
        json,
    }
}
