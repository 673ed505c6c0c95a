//! The command-line contract of the `chrysalis-agent` binary: the `ready`
//! line, the SIMULATED warning, refusals at start-up, JSON logs, SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_chrysalis-agent");

/// Runs the agent; its stderr lines arrive on the returned channel.
fn spawn(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent binary starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Lines up to and including the first containing `needle`.
fn lines_until(rx: &mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) => {
                let hit = l.contains(needle);
                seen.push(l);
                if hit {
                    return seen;
                }
            }
            Err(_) => panic!(
                "no line containing {needle:?} within 60 s; saw:\n{}",
                seen.join("\n")
            ),
        }
    }
}

fn sigterm(child: &Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    for _ in 0..600 {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("the agent did not exit within 60 s");
}

/// The `https://ADDR` in the ready line.
fn https_addr(line: &str) -> std::net::SocketAddr {
    let rest = line
        .split("https://")
        .nth(1)
        .expect("address in the ready line");
    rest.split([' ', '"', ','])
        .next()
        .unwrap()
        .parse()
        .expect("socket address")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_agent_logs_ready_serves_and_drains_on_sigterm() {
    let stub = Stub::start().await;
    let upstream = format!("http://{}", stub.addr);
    let (mut child, rx) = spawn(&[
        "--provider",
        "sim",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    let rx2 = tokio::task::spawn_blocking(move || {
        let lines = lines_until(&rx, "ready");
        (lines, rx)
    });
    let (lines, rx) = within("ready line", rx2).await.unwrap();
    let all = lines.join("\n");
    assert!(
        all.contains("SIMULATED"),
        "no SIMULATED warning before ready:\n{all}"
    );
    let ready = lines.last().unwrap();
    assert_eq!(
        lines.iter().filter(|l| l.contains("ready")).count(),
        1,
        "only one line says ready:\n{all}"
    );
    let addr = https_addr(ready);
    // The certificate is an RA-TLS certificate with simulated evidence:
    // a development policy accepts it.
    let cfg = std::sync::Arc::new(chrysalis_ratls::VerifierConfig::new(
        chrysalis_attestation::Policy::default().allow_simulated(true),
    ));
    let (mut c, _) = ra_tls_client(addr, &cfg).await;
    c.ready().await.unwrap();
    let resp = c
        .send_request(req("POST", "/v1/chat/completions", r#"{"messages":[]}"#))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    text(resp).await;
    drop(c);
    sigterm(&child);
    let status = tokio::task::spawn_blocking(move || {
        let status = wait_exit(&mut child);
        let rest: Vec<String> = rx.iter().collect();
        (status, rest)
    });
    let (status, rest) = within("exit", status).await.unwrap();
    assert!(status.success(), "{status:?}\n{}", rest.join("\n"));
    assert!(
        rest.iter().any(|l| l.contains("drained")),
        "{}",
        rest.join("\n")
    );
}

/// `--sim-quote-latency`: each simulated quote takes that long (a
/// per-request quote shows it), while `/attestation/latest` answers every
/// client from its window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_quote_latency_slows_quotes_not_latest() {
    let stub = Stub::start().await;
    let upstream = format!("http://{}", stub.addr);
    let (mut child, rx) = spawn(&[
        "--provider",
        "sim",
        "--sim-quote-latency",
        "400ms",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    // The receiver stays alive: the agent's stderr must not break.
    let (lines, rx) = within(
        "ready line",
        tokio::task::spawn_blocking(move || (lines_until(&rx, "ready"), rx)),
    )
    .await
    .unwrap();
    let addr = https_addr(lines.last().unwrap());
    let cfg = std::sync::Arc::new(chrysalis_ratls::VerifierConfig::new(
        chrysalis_attestation::Policy::default().allow_simulated(true),
    ));
    let (mut c, spki) = ra_tls_client(addr, &cfg).await;
    c.ready().await.unwrap();
    let t0 = std::time::Instant::now();
    let resp = c
        .send_request(req("GET", "/attestation?nonce=0102", ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    text(resp).await;
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(400), "{took:?}");
    c.ready().await.unwrap();
    let resp = c
        .send_request(req("GET", "/attestation/latest", ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = text(resp).await;
    let ans = chrysalis_agent::fresh::BatchedEvidence::from_json(&body).unwrap();
    chrysalis_agent::fresh::verify_batched(
        &ans,
        &spki,
        None,
        None,
        Duration::from_secs(10),
        &cfg,
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    drop(c);
    sigterm(&child);
    let (status, rest) = within(
        "exit",
        tokio::task::spawn_blocking(move || {
            let status = wait_exit(&mut child);
            (status, rx.iter().collect::<Vec<String>>())
        }),
    )
    .await
    .unwrap();
    assert!(status.success(), "{status:?}\n{}", rest.join("\n"));
}

#[test]
fn json_logs_are_one_object_per_line() {
    // No engine: the agent runs but never becomes ready; its log lines up
    // to the readiness report must each be JSON.
    let port = dead_port();
    let upstream = format!("http://{port}");
    let (mut child, rx) = spawn(&[
        "--provider",
        "sim",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
        "--metrics-listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
    ]);
    let lines = lines_until(&rx, "readiness input changed");
    sigterm(&child);
    assert!(wait_exit(&mut child).success());
    let json: Vec<serde_json::Value> = lines
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(json.len() >= 2, "{lines:?}");
    for v in &json {
        assert!(v["level"].is_string() && v["message"].is_string(), "{v}");
    }
    // The SIMULATED box is the only non-JSON output, and it says so.
    assert!(lines.iter().any(|l| l.contains("SIMULATED")));
    assert!(!lines.iter().any(|l| l.contains("ready")), "{lines:?}");
}

fn run_to_exit(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("agent binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn start_up_refusals() {
    let (code, err) = run_to_exit(&["--provider", "sim", "--upstream", "http://10.1.2.3:8000"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a loopback address"), "{err}");
    let (code, err) = run_to_exit(&["--provider", "sim", "--metrics-listen", "0.0.0.0:9464"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--allow-remote-metrics"), "{err}");
    let (code, err) = run_to_exit(&["--listen", "127.0.0.1:0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--provider"), "{err}");
    let (code, err) = run_to_exit(&["--provider", "sim", "--bogus"]);
    assert_eq!(code, 2, "{err}");
    if !std::path::Path::new("/sys/kernel/config/tsm/report").exists() {
        // No TEE here: the real provider fails at once, naming the interface.
        let (code, err) = run_to_exit(&[
            "--provider",
            "tsm",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("/sys/kernel/config/tsm/report"), "{err}");
        assert!(!err.contains("SIMULATED"), "{err}");
    }
    // A port already in use.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let (code, err) = run_to_exit(&[
        "--provider",
        "sim",
        "--listen",
        &addr,
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&addr), "{err}");
}

/// A busy port is one line naming the address and the cause once, in
/// text and in JSON log format.
#[test]
fn busy_port_is_one_line_with_the_cause_once() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let want = format!("cannot listen on {addr}: address already in use");
    for (listen, metrics) in [
        (addr.as_str(), "127.0.0.1:0"),
        ("127.0.0.1:0", addr.as_str()),
    ] {
        let (code, err) = run_to_exit(&[
            "--provider",
            "sim",
            "--listen",
            listen,
            "--metrics-listen",
            metrics,
        ]);
        assert_eq!(code, 1, "{err}");
        let hits: Vec<&str> = err.lines().filter(|l| l.contains(&addr)).collect();
        assert_eq!(hits, [format!("chrysalis-agent: {want}")], "{err}");
        assert_eq!(err.matches("already in use").count(), 1, "{err}");
        assert!(!err.contains("os error"), "{err}");
    }
    let (code, err) = run_to_exit(&[
        "--provider",
        "sim",
        "--listen",
        &addr,
        "--metrics-listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
    ]);
    assert_eq!(code, 1, "{err}");
    let hits: Vec<&str> = err.lines().filter(|l| l.contains(&addr)).collect();
    assert_eq!(hits.len(), 1, "{err}");
    let v: serde_json::Value = serde_json::from_str(hits[0]).unwrap();
    assert_eq!(v["level"], "ERROR", "{v}");
    assert_eq!(v["message"], want.as_str(), "{v}");
}

/// The runtime configuration is measured before the first certificate: a
/// client policy pinning RTMR3 to what `chrysalis measure --config`
/// predicts accepts the agent, one pinning another configuration refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_config_is_measured_into_rtmr3_before_serving() {
    use chrysalis_attestation::runtime_events::{canonical_json, rtmr3_expected};
    let stub = Stub::start().await;
    let upstream = format!("http://{}", stub.addr);
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("runtime.json");
    // Key order and spacing differ from the canonical form on purpose.
    let text = r#"{ "price_per_mtok": 12, "endpoint": "node.example:8443", "model": "tiny" }"#;
    std::fs::write(&cfg_path, text).unwrap();
    let expected = rtmr3_expected(&canonical_json(&serde_json::from_str(text).unwrap()));
    let (mut child, rx) = spawn(&[
        "--provider",
        "sim",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
        "--metrics-listen",
        "127.0.0.1:0",
        "--runtime-config",
        cfg_path.to_str().unwrap(),
    ]);
    let lines = within(
        "ready line",
        tokio::task::spawn_blocking(move || lines_until(&rx, "ready")),
    )
    .await
    .unwrap();
    let all = lines.join("\n");
    assert!(all.contains("measured into RTMR3"), "{all}");
    let addr = https_addr(lines.last().unwrap());
    let policy_for = |rtmr3: &[u8]| {
        let toml = format!(
            "allow_simulated = true\n[[tdx.measurements]]\nname = \"runtime\"\nrtmr3 = \"{}\"\n",
            hex::encode(rtmr3)
        );
        std::sync::Arc::new(chrysalis_ratls::VerifierConfig::new(
            chrysalis_attestation::Policy::from_toml(&toml).unwrap(),
        ))
    };
    // Accepted with the prediction.
    let (mut c, _) = ra_tls_client(addr, &policy_for(&expected)).await;
    c.ready().await.unwrap();
    drop(c);
    // Refused when the client expects another configuration.
    let other =
        rtmr3_expected(br#"{"endpoint":"node.example:8443","model":"tiny","price_per_mtok":1}"#);
    let v = std::sync::Arc::new(chrysalis_ratls::RaTlsServerVerifier::new(policy_for(
        &other,
    )));
    let tls_cfg = chrysalis_ratls::client_config(v).unwrap();
    let err = tls_with(addr, std::sync::Arc::new(tls_cfg))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("RTMR3"), "{err}");
    sigterm(&child);
    within(
        "exit",
        tokio::task::spawn_blocking(move || wait_exit(&mut child)),
    )
    .await
    .unwrap();
}

#[test]
fn a_malformed_runtime_config_stops_start_up_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for (text, want) in [
        ("[1, 2]", "JSON object"),
        (r#"{"model_volume":{"verity_root_hash":"abc"}}"#, "64 hex"),
    ] {
        let p = dir.path().join("bad.json");
        std::fs::write(&p, text).unwrap();
        let out = Command::new(BIN)
            .args([
                "--provider",
                "sim",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--runtime-config",
                p.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{text}: {err}");
        assert!(!err.contains("ready"), "{err}");
    }
}
