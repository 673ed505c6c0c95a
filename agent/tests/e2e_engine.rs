//! End to end with a real engine: llama.cpp's OpenAI server
//! (llama-cpp-python) on a tiny random-weight model, supervised by the
//! agent binary (`--engine-cmd`), with the simulated TEE. A streamed chat
//! completion goes through the agent over RA-TLS.
//!
//! Needs `bash ci/engine.sh` (venv + model in target/enginevenv, or
//! CHRYSALIS_ENGINE_VENV); skipped with a message when absent, unless
//! CHRYSALIS_REQUIRE_ENGINE is set (CI), which makes absence a failure.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::*;
use http_body_util::BodyExt;

fn venv() -> PathBuf {
    match std::env::var_os("CHRYSALIS_ENGINE_VENV") {
        Some(v) => PathBuf::from(v),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/enginevenv"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_chat_completion_through_the_agent_to_llama_cpp() {
    let venv = venv();
    let python = venv.join("bin/python");
    let model = venv.join("tiny.gguf");
    if !python.exists() || !model.exists() {
        // CI installs the engine and sets this, so a broken install fails
        // instead of silently skipping the only real-engine check.
        assert!(
            std::env::var_os("CHRYSALIS_REQUIRE_ENGINE").is_none(),
            "CHRYSALIS_REQUIRE_ENGINE is set but the real engine is missing ({} / {}); run `bash ci/engine.sh`",
            python.display(),
            model.display()
        );
        eprintln!(
            "skipping: real engine not installed ({} or {} missing); run `bash ci/engine.sh`",
            python.display(),
            model.display()
        );
        return;
    }
    let port = dead_port();
    let engine_cmd = format!(
        "exec '{}' -m llama_cpp.server --model '{}' --n_ctx 256 --host 127.0.0.1 --port {}",
        python.display(),
        model.display(),
        port.port()
    );
    let upstream = format!("http://{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_chrysalis-agent"))
        .args([
            "--provider",
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--engine-cmd",
            &engine_cmd,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The agent's and the engine's stderr (inherited by the engine) share
    // the pipe; only the agent's lines matter here.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let ready = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(180)) {
                Ok(l) if l.contains("chrysalis-agent ready") => return (l, rx),
                Ok(l) => seen.push(l),
                Err(_) => panic!("no ready line within 180 s:\n{}", seen.join("\n")),
            }
        }
    });
    let (line, rx) = ready.await.unwrap();
    let addr: std::net::SocketAddr = line
        .split("https://")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line}"));

    let cfg = Arc::new(chrysalis_ratls::VerifierConfig::new(
        chrysalis_attestation::Policy::default().allow_simulated(true),
    ));
    let (mut c, spki) = ra_tls_client(addr, &cfg).await;
    let body = r#"{"model":"tiny","stream":true,"max_tokens":12,"temperature":0,
        "messages":[{"role":"user","content":"hello"}]}"#;
    c.ready().await.unwrap();
    let resp = c
        .send_request(req("POST", "/v1/chat/completions", body))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut b = resp.into_body();
    let mut frames = 0;
    let mut all = String::new();
    while let Some(f) = within("engine stream", b.frame()).await {
        if let Ok(d) = f.expect("stream intact").into_data() {
            frames += 1;
            all.push_str(std::str::from_utf8(&d).unwrap());
        }
    }
    let events: Vec<&str> = all
        .split("\n\n")
        .filter_map(|e| e.trim().strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{all}");
    assert!(events.len() >= 3, "{all}");
    for e in &events[..events.len() - 1] {
        let v: serde_json::Value = serde_json::from_str(e).unwrap_or_else(|x| panic!("{x}: {e}"));
        assert_eq!(v["object"], "chat.completion.chunk", "{e}");
    }
    assert!(
        frames >= 2,
        "the stream came in one piece: {frames} frame(s)"
    );

    // Fresh evidence for a nonce, bound to this connection's key.
    c.ready().await.unwrap();
    let resp = c
        .send_request(req("GET", "/attestation?nonce=c0ffee", ""))
        .await
        .unwrap();
    let fresh = chrysalis_ratls::FreshEvidence::from_json(&text(resp).await).unwrap();
    chrysalis_ratls::verify_fresh(
        &fresh,
        &spki,
        None,
        &[0xc0, 0xff, 0xee],
        &cfg,
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();

    drop(c);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let s = child.wait().unwrap();
        (s, rx.iter().collect::<Vec<_>>())
    });
    let (status, rest) = within("agent exit", status).await.unwrap();
    assert!(status.success(), "{status:?}: {}", rest.join("\n"));
    assert!(
        rest.iter().any(|l| l.contains("engine stopped")),
        "{}",
        rest.join("\n")
    );
    assert!(
        std::net::TcpStream::connect(port).is_err(),
        "the engine stopped with the agent"
    );
}
