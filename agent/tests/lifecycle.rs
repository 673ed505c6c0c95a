//! Lifecycle: draining, RA-TLS identity and renewal with fresh evidence,
//! engine supervision.

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrysalis_agent::config::{ProviderKind, TlsSettings};
use chrysalis_agent::identity::open_provider;
use chrysalis_agent::{Agent, IdentitySource, InputState, RaTlsManager};
use chrysalis_attestation::{Policy, Tee};
use chrysalis_ratls::{FreshEvidence, VerifierConfig};
use common::*;
use time::OffsetDateTime;

const CHAT: &str = r#"{"model":"m","messages":[]}"#;
const STREAM: &str = r#"{"model":"m","stream":true,"messages":[]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_finishes_running_streams_and_refuses_new_connections() {
    let stub = Stub::start().await;
    let agent = start_agent(stub.addr, |_| {}).await;
    wait_ready(&agent).await;
    let addr = agent.https_addr();
    let readiness = agent.readiness().clone();
    let mut c = Client::h1(addr).await;
    let mut r = req("POST", "/v1/chat/completions", STREAM);
    r.headers_mut().insert("x-stub-gated", "1".parse().unwrap());
    r.headers_mut()
        .insert("x-stub-chunks", "2".parse().unwrap());
    let resp = c.send(r).await.unwrap();
    let mut body = resp.into_body();
    stub.release(1);
    assert_eq!(
        next_chunk(&mut body).await.unwrap().unwrap(),
        chunk_text(0).as_bytes()
    );
    // An idle keep-alive connection is closed by the drain at once.
    let mut idle = Client::h2(addr).await;
    let resp = idle.send(req("GET", "/healthz", "")).await.unwrap();
    text(resp).await;

    let drain = tokio::spawn(agent.shutdown(Duration::from_secs(60)));
    within("draining", async {
        while !readiness.is_draining() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(!readiness.is_ready());
    within("listener closed", async {
        while tls(addr, &[b"http/1.1"]).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // The running stream completes.
    stub.release(1);
    let mut rest = Vec::new();
    while let Some(c) = next_chunk(&mut body).await {
        rest.extend_from_slice(&c.unwrap());
    }
    let rest = String::from_utf8(rest).unwrap();
    assert!(rest.starts_with(&chunk_text(1)), "{rest}");
    assert!(rest.ends_with("data: [DONE]\n\n"), "{rest}");
    let report = within("drain returns", drain).await.unwrap();
    assert_eq!(report.open_at_start, 2);
    assert_eq!(report.aborted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_deadline_closes_what_is_left() {
    let stub = Stub::start().await;
    let agent = start_agent(stub.addr, |_| {}).await;
    wait_ready(&agent).await;
    let mut c = Client::h2(agent.https_addr()).await;
    let mut r = req("POST", "/v1/chat/completions", STREAM);
    r.headers_mut().insert("x-stub-gated", "1".parse().unwrap());
    let resp = c.send(r).await.unwrap();
    let mut body = resp.into_body();
    stub.release(1);
    next_chunk(&mut body).await.unwrap().unwrap();
    let report = within(
        "drain with a stuck stream",
        agent.shutdown(Duration::from_millis(300)),
    )
    .await;
    assert_eq!(report.aborted, 1);
    // The client sees its stream end abnormally, not a clean end.
    let end = next_chunk(&mut body).await;
    assert!(matches!(end, Some(Err(_))), "{end:?}");
    stub.wait_event("engine stream abandoned", |e| {
        matches!(e, Event::StreamCancelled)
    })
    .await;
}

fn sim_manager(settings: &TlsSettings) -> Arc<RaTlsManager> {
    let (provider, collateral) = open_provider(ProviderKind::Sim, Tee::Tdx, None).unwrap();
    Arc::new(RaTlsManager::new(provider, collateral, settings))
}

async fn attest(
    send: &mut hyper::client::conn::http2::SendRequest<ReqBody>,
    spki: &[u8],
    cfg: &VerifierConfig,
    nonce: &[u8],
) -> Result<(), chrysalis_ratls::Error> {
    send.ready().await.unwrap();
    let resp = send
        .send_request(req(
            "GET",
            &format!("/attestation?nonce={}", hex::encode(nonce)),
            "",
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let fresh = FreshEvidence::from_json(&text(resp).await).unwrap();
    chrysalis_ratls::verify_fresh(&fresh, spki, None, nonce, cfg, OffsetDateTime::now_utc())
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ra_tls_identity_fresh_evidence_and_renewal_without_dropping_connections() {
    let stub = Stub::start().await;
    // Renewal 2 s after each certificate is made.
    let settings = TlsSettings {
        cert_validity: Duration::from_secs(600),
        renew_before: Duration::from_secs(598),
    };
    let mut config = test_config(stub.addr);
    config.tls = settings.clone();
    let agent = Agent::start(config, IdentitySource::RaTls(sim_manager(&settings)))
        .await
        .unwrap();
    wait_ready(&agent).await;
    let report = agent.readiness().report();
    assert_eq!(report.inputs.evidence.state, InputState::Ready);
    assert!(report.inputs.evidence.detail.contains("sim"), "{report:?}");

    let cfg = Arc::new(VerifierConfig::new(Policy::default().allow_simulated(true)));
    let (mut first, first_spki) = ra_tls_client(agent.https_addr(), &cfg).await;
    attest(&mut first, &first_spki, &cfg, &[0x11; 32])
        .await
        .unwrap();
    // Evidence for one nonce does not answer another.
    first.ready().await.unwrap();
    let resp = first
        .send_request(req("GET", "/attestation?nonce=2222", ""))
        .await
        .unwrap();
    let fresh = FreshEvidence::from_json(&text(resp).await).unwrap();
    assert!(chrysalis_ratls::verify_fresh(
        &fresh,
        &first_spki,
        None,
        &[0x33, 0x33],
        &cfg,
        OffsetDateTime::now_utc()
    )
    .is_err());
    // The default (production) policy rejects simulated evidence.
    let strict = VerifierConfig::new(Policy::default());
    assert!(attest(&mut first, &first_spki, &strict, &[1])
        .await
        .is_err());

    // Wait for a renewal.
    let before = agent.identities().current();
    within("certificate renewed", async {
        while Arc::ptr_eq(&agent.identities().current(), &before) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let (mut second, second_spki) = ra_tls_client(agent.https_addr(), &cfg).await;
    assert_ne!(first_spki, second_spki, "a new key after renewal");
    // The old connection still works, and its evidence is still bound to
    // its own certificate's key.
    first.ready().await.unwrap();
    let resp = first
        .send_request(req("POST", "/v1/chat/completions", CHAT))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    text(resp).await;
    attest(&mut first, &first_spki, &cfg, &[0x44; 8])
        .await
        .unwrap();
    attest(&mut second, &second_spki, &cfg, &[0x55; 8])
        .await
        .unwrap();
    assert!(attest(&mut second, &first_spki, &cfg, &[0x66; 8])
        .await
        .is_err());
    let (_, m) = metrics_get(agent.metrics_addr(), "/metrics").await;
    assert!(
        !m.contains("chrysalis_agent_certificate_renewals_total 0"),
        "{m}"
    );
    assert!(
        m.contains(r#"chrysalis_agent_requests_total{route="attestation",status="200"}"#),
        "{m}"
    );
    agent.shutdown(Duration::from_secs(5)).await;
}

/// The pid in an engine readiness detail ("… (pid N) …").
fn pid_of(detail: &str) -> Option<i32> {
    let rest = detail.split("(pid ").nth(1)?;
    rest.split(')').next()?.parse().ok()
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

async fn wait_engine(agent: &Agent, what: &str, pred: impl Fn(InputState, &str) -> bool) -> String {
    within(what, async {
        loop {
            let e = agent.readiness().report().inputs.engine;
            if pred(e.state, &e.detail) {
                return e.detail;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervised_engine_is_restarted_and_stopped() {
    // The "engine" is a process that only sleeps; the in-process stub
    // answers for it on the upstream address. Killing the process is an
    // engine crash; the supervisor must notice and start it again.
    let stub = Stub::start().await;
    let agent = start_agent(stub.addr, |c| {
        c.engine.cmd = Some("sleep 1000".into());
        c.engine.backoff_initial = Duration::from_millis(50);
        c.engine.backoff_max = Duration::from_millis(200);
    })
    .await;
    wait_ready(&agent).await;
    let detail = agent.readiness().report().inputs.engine.detail;
    let pid = pid_of(&detail).unwrap_or_else(|| panic!("{detail}"));
    assert!(alive(pid));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_engine(&agent, "crash noticed", |s, d| {
        s == InputState::Failed && d.contains("engine exited") && d.contains("restarting in")
    })
    .await;
    let detail = wait_engine(&agent, "restarted", |s, d| {
        s == InputState::Ready && pid_of(d).is_some_and(|p| p != pid)
    })
    .await;
    let new_pid = pid_of(&detail).unwrap();
    assert!(alive(new_pid));
    let (_, m) = metrics_get(agent.metrics_addr(), "/metrics").await;
    assert!(m.contains("chrysalis_agent_engine_restarts_total 1"), "{m}");
    agent.shutdown(Duration::from_secs(5)).await;
    assert!(!alive(new_pid), "the engine is stopped with the agent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervised_engine_that_exits_or_never_answers_backs_off() {
    let agent = start_agent(dead_port(), |c| {
        c.engine.cmd = Some("exit 3".into());
        c.engine.backoff_initial = Duration::from_millis(20);
        c.engine.backoff_max = Duration::from_millis(80);
    })
    .await;
    wait_engine(&agent, "start-up exit reported", |s, d| {
        s == InputState::Failed && d.contains("exited during start-up") && d.contains("3")
    })
    .await;
    within("backoff reaches its maximum", async {
        loop {
            let d = agent.readiness().report().inputs.engine.detail;
            if d.contains("restarting in 80ms") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(!agent.readiness().is_ready());
    agent.shutdown(Duration::from_secs(5)).await;

    let agent = start_agent(dead_port(), |c| {
        c.engine.cmd = Some("sleep 1000".into());
        c.engine.ready_timeout = Duration::from_millis(300);
        c.engine.backoff_initial = Duration::from_millis(20);
        c.engine.stop_timeout = Duration::from_millis(500);
    })
    .await;
    wait_engine(&agent, "never answered reported", |s, d| {
        s == InputState::Failed && d.contains("did not answer GET /v1/models within 300ms")
    })
    .await;
    agent.shutdown(Duration::from_secs(5)).await;
}
