//! Spawns `node contract/harness.js` and talks JSON lines to it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{json, Value};

pub fn contract_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contract")
}

/// Whether node, the npm packages and the compiled contract are present.
/// Missing: skip with a message, or fail when CHRYSALIS_REQUIRE_TON=1.
pub fn ton_available(test: &str) -> bool {
    let dir = contract_dir();
    let node_ok = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let missing = if !node_ok {
        Some("node is not installed")
    } else if !dir.join("node_modules/@ton/sandbox").is_dir() {
        Some("npm packages missing (run: bash ci/ton.sh)")
    } else if !dir.join("build/registry.json").is_file()
        || !dir.join("build/channel.json").is_file()
    {
        Some("contract not compiled (run: bash ci/ton.sh)")
    } else {
        None
    };
    match missing {
        None => true,
        Some(why) => {
            if std::env::var("CHRYSALIS_REQUIRE_TON").as_deref() == Ok("1") {
                panic!("{test}: CHRYSALIS_REQUIRE_TON=1 but {why}");
            }
            eprintln!("SKIPPED {test}: {why}");
            false
        }
    }
}

pub struct Harness {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Harness {
    pub fn start(now: u64) -> Harness {
        let mut child = Command::new("node")
            .arg("harness.js")
            .current_dir(contract_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node harness.js");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut h = Harness {
            child,
            stdin,
            stdout,
        };
        h.call(json!({"cmd": "init", "now": now}));
        h
    }

    /// Sends one request; panics unless it answers ok.
    pub fn call(&mut self, req: Value) -> Value {
        let v = self.try_call(req.clone());
        assert_eq!(v["ok"], true, "harness refused {req}: {v}");
        v
    }

    pub fn try_call(&mut self, req: Value) -> Value {
        writeln!(self.stdin, "{req}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "harness exited");
        serde_json::from_str(&line).unwrap()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
