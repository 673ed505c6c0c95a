//! Fresh evidence without a quote per client: windows shared by many
//! clients (`/attestation/batch`, `/attestation/latest`), verified with
//! `chrysalis_agent::fresh::verify_batched`; attestation's own bounds,
//! never the inference permits; `--sim-quote-latency`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrysalis_agent::config::{ProviderKind, TlsSettings};
use chrysalis_agent::fresh::{verify_batched, BatchedEvidence};
use chrysalis_agent::identity::open_provider;
use chrysalis_agent::quote_latency::SlowQuotes;
use chrysalis_agent::{Agent, IdentitySource, RaTlsManager};
use chrysalis_attestation::{Policy, Tee};
use chrysalis_ratls::Error as VerifyError;
use chrysalis_ratls::VerifierConfig;
use common::*;
use time::OffsetDateTime;

/// A simulated TDX identity whose quotes take `latency`, one at a time.
fn slow_manager(latency: Duration) -> Arc<RaTlsManager> {
    let (provider, collateral) = open_provider(ProviderKind::Sim, Tee::Tdx, None).unwrap();
    let slow = Arc::new(SlowQuotes::new(provider, latency));
    Arc::new(RaTlsManager::new(slow, collateral, &TlsSettings::default()))
}

fn dev_policy() -> Arc<VerifierConfig> {
    Arc::new(VerifierConfig::new(Policy::default().allow_simulated(true)))
}

async fn get(
    send: &mut hyper::client::conn::http2::SendRequest<ReqBody>,
    path: &str,
) -> (u16, http::HeaderMap, String) {
    send.ready().await.unwrap();
    let resp = send.send_request(req("GET", path, "")).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, text(resp).await)
}

const N: Duration = Duration::from_secs(10);

/// 24 clients ask with their own nonces at once: a few windows (not 24
/// quotes) answer all of them, each proof leads to its window's root, the
/// evidence verifies for the connection's key, and a wrong nonce does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_nonces_share_one_quote_per_window() {
    let stub = Stub::start().await;
    let agent = Agent::start(
        test_config(stub.addr),
        IdentitySource::RaTls(slow_manager(Duration::from_millis(300))),
    )
    .await
    .unwrap();
    wait_ready(&agent).await;
    let cfg = dev_policy();
    // Every client connects first; then all ask at once.
    let go = Arc::new(tokio::sync::Barrier::new(25));
    let mut tasks = Vec::new();
    for i in 0..24u8 {
        let (addr, cfg, go) = (agent.https_addr(), cfg.clone(), go.clone());
        tasks.push(tokio::spawn(async move {
            let (mut send, spki) = ra_tls_client(addr, &cfg).await;
            go.wait().await;
            let nonce = [i; 16];
            let (status, headers, body) = get(
                &mut send,
                &format!("/attestation/batch?nonce={}", hex::encode(nonce)),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(headers["cache-control"], "no-store");
            let ans = BatchedEvidence::from_json(&body).unwrap();
            assert_eq!(ans.mode, "batch");
            verify_batched(
                &ans,
                &spki,
                None,
                Some(&nonce),
                N,
                &cfg,
                OffsetDateTime::now_utc(),
            )
            .unwrap();
            // The evidence is bound to the window's root, not to a nonce
            // that was not in it.
            let e = verify_batched(
                &ans,
                &spki,
                None,
                Some(&[0xee; 16]),
                N,
                &cfg,
                OffsetDateTime::now_utc(),
            )
            .unwrap_err();
            assert!(matches!(e, VerifyError::NotInBatch { .. }), "{e}");
            // Nor to another connection's key.
            assert!(verify_batched(
                &ans,
                &[1, 2, 3],
                None,
                Some(&nonce),
                N,
                &cfg,
                OffsetDateTime::now_utc()
            )
            .is_err());
            ans.window.sequence
        }));
    }
    go.wait().await;
    let t0 = Instant::now();
    let mut windows = Vec::new();
    for t in tasks {
        windows.push(t.await.unwrap());
    }
    windows.sort_unstable();
    windows.dedup();
    // 24 quotes one at a time would take 7.2 s; windows take a few.
    assert!(windows.len() <= 4, "windows {windows:?}");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    agent.shutdown(Duration::from_secs(5)).await;
}

/// `/attestation/latest` answers from the current window at once: many
/// clients, one window, verified within N; stale evidence (older than N)
/// is refused by the verifier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_serves_many_clients_from_one_window() {
    let stub = Stub::start().await;
    let agent = Agent::start(
        test_config(stub.addr),
        IdentitySource::RaTls(slow_manager(Duration::from_millis(300))),
    )
    .await
    .unwrap();
    wait_ready(&agent).await;
    let cfg = dev_policy();
    let (mut send, spki) = ra_tls_client(agent.https_addr(), &cfg).await;
    // The first one may wait for the first window.
    let (status, _, body) = get(&mut send, "/attestation/latest").await;
    assert_eq!(status, 200, "{body}");
    let first = BatchedEvidence::from_json(&body).unwrap();
    assert_eq!(first.mode, "latest");
    assert!(first.proof.is_none());
    assert_eq!(first.max_age_secs, 10);
    verify_batched(
        &first,
        &spki,
        None,
        None,
        N,
        &cfg,
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    // Then answers come without a quote each: 20 in a row well within one
    // quote's time.
    let t0 = Instant::now();
    for _ in 0..20 {
        let (status, _, body) = get(&mut send, "/attestation/latest").await;
        assert_eq!(status, 200);
        let ans = BatchedEvidence::from_json(&body).unwrap();
        assert!(ans.window.sequence <= first.window.sequence + 1);
    }
    assert!(
        t0.elapsed() < Duration::from_millis(3000),
        "{:?}",
        t0.elapsed()
    );
    // A verifier with a tighter clock refuses old evidence.
    let later = OffsetDateTime::now_utc() + time::Duration::seconds(30);
    let e = verify_batched(&first, &spki, None, None, N, &cfg, later).unwrap_err();
    assert!(
        !matches!(
            e,
            VerifyError::FreshEvidence(_) | VerifyError::NotInBatch { .. }
        ),
        "{e}"
    );
    agent.shutdown(Duration::from_secs(5)).await;
}

/// Attestation never takes the inference permits: with the only inference
/// slot held by a stream, attestation answers; with attestation's own
/// bound reached, it is 503 + Retry-After while inference is served; the
/// per-request quotes have their own bound too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attestation_has_its_own_bounds() {
    let stub = Stub::start().await;
    let mut config = test_config(stub.addr);
    config.limits.max_concurrent_requests = 1;
    config.limits.max_attestation_requests = 2;
    config.limits.max_fresh_quotes = 1;
    config.limits.retry_after_secs = 3;
    let agent = Agent::start(
        config,
        IdentitySource::RaTls(slow_manager(Duration::from_millis(1500))),
    )
    .await
    .unwrap();
    wait_ready(&agent).await;
    let cfg = dev_policy();
    // The one inference slot, held by a gated stream.
    let (mut a, _) = ra_tls_client(agent.https_addr(), &cfg).await;
    let mut r = req(
        "POST",
        "/v1/chat/completions",
        r#"{"model":"m","stream":true,"messages":[]}"#,
    );
    r.headers_mut().insert("x-stub-gated", "1".parse().unwrap());
    r.headers_mut()
        .insert("x-stub-chunks", "1".parse().unwrap());
    a.ready().await.unwrap();
    let resp = a.send_request(r).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut stream = resp.into_body();
    // Attestation still answers.
    let (mut send, _) = ra_tls_client(agent.https_addr(), &cfg).await;
    let (status, _, body) = get(&mut send, "/attestation/latest").await;
    assert_eq!(status, 200, "{body}");
    // Connections made first, so that the requests below run at once.
    let mut c: Vec<_> = Vec::new();
    for _ in 0..3 {
        c.push(ra_tls_client(agent.https_addr(), &cfg).await.0);
    }
    let [c1, c2, c3] = &mut c[..] else {
        unreachable!()
    };
    // Two slow per-request quotes at once: one is refused (quote bound 1),
    // with Retry-After.
    let (r1, r2) = tokio::join!(
        get(c1, "/attestation?nonce=01"),
        get(c2, "/attestation?nonce=02")
    );
    let mut statuses = [r1.0, r2.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 503], "{} {}", r1.2, r2.2);
    let refused = if r1.0 == 503 { &r1 } else { &r2 };
    assert_eq!(refused.1["retry-after"], "3");
    assert_eq!(error_code(&refused.2), "attestation_overloaded");
    // Three batch requests at once, each waiting for a window: two run
    // (the attestation bound), the third is refused.
    let (r1, r2, r3) = tokio::join!(
        get(c1, "/attestation/batch?nonce=03"),
        get(c2, "/attestation/batch?nonce=04"),
        get(c3, "/attestation/batch?nonce=05")
    );
    let mut statuses = [r1.0, r2.0, r3.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 503]);
    let refused = [&r1, &r2, &r3].into_iter().find(|r| r.0 == 503).unwrap();
    assert_eq!(refused.1["retry-after"], "3");
    assert_eq!(error_code(&refused.2), "attestation_overloaded");
    // Inference is limited by its own slot only: busy with the stream.
    let (mut b, _) = ra_tls_client(agent.https_addr(), &cfg).await;
    b.ready().await.unwrap();
    let resp = b
        .send_request(req("POST", "/v1/chat/completions", "{}"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(error_code(&text(resp).await), "overloaded");
    stub.release(1);
    while let Some(c) = next_chunk(&mut stream).await {
        c.unwrap();
    }
    // Bad nonces are 400 on both nonce routes; no nonce on latest is fine.
    for p in [
        "/attestation/batch?nonce=zz",
        "/attestation/batch",
        "/attestation?nonce=",
    ] {
        let (status, _, body) = get(&mut send, p).await;
        assert_eq!(status, 400, "{p}: {body}");
        assert_eq!(error_code(&body), "invalid_nonce");
    }
    agent.shutdown(Duration::from_secs(5)).await;
}

/// Without evidence (a plain certificate) the new routes say so: 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_evidence_the_new_routes_say_so() {
    let stub = Stub::start().await;
    let agent = start_agent(stub.addr, |_| {}).await;
    wait_ready(&agent).await;
    let mut c = Client::h2(agent.https_addr()).await;
    for p in ["/attestation/latest", "/attestation/batch?nonce=00ff"] {
        let resp = c.send(req("GET", p, "")).await.unwrap();
        assert_eq!(resp.status(), 503, "{p}");
        assert_eq!(error_code(&text(resp).await), "attestation_unavailable");
    }
    agent.shutdown(Duration::from_secs(5)).await;
}
