//! GPU gating: the agent is ready and forwards only when the GPU evidence
//! verified and met the policy, and then serves that evidence, committed
//! to by its certificate. Real NVML without a driver, and NVIDIA's recorded
//! sample evidence (../shared/vectors/nvidia; skipped when absent) behind
//! the same source trait.

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrysalis_agent::config::{ProviderKind, TlsSettings};
use chrysalis_agent::gpu::{GpuSettings, GpuSourceKind};
use chrysalis_agent::identity::{open_provider, RaTlsManager};
use chrysalis_agent::readiness::InputState;
use chrysalis_agent::{Agent, IdentitySource};
use chrysalis_attestation::Tee;
use chrysalis_ratls::{FreshEvidence, RaTlsServerVerifier, VerifierConfig};
use common::*;

fn sim_manager() -> RaTlsManager {
    let (provider, collateral) = open_provider(ProviderKind::Sim, Tee::Tdx, None).unwrap();
    RaTlsManager::new(provider, collateral, &TlsSettings::default())
}

fn dev_policy() -> Arc<VerifierConfig> {
    Arc::new(VerifierConfig::new(
        chrysalis_attestation::Policy::default().allow_simulated(true),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_nvidia_driver_the_agent_is_never_ready_and_forwards_nothing() {
    let settings = GpuSettings {
        source: GpuSourceKind::Nvml,
        policy: None,
        rims: vec![],
        ocsp_cache: None,
        offline: true,
    };
    let why = settings
        .check(time::OffsetDateTime::now_utc())
        .expect("configuration is fine")
        .expect_err("no GPU here: the check must fail");
    assert!(why.to_lowercase().contains("nvidia"), "{why}");

    let stub = Stub::start().await;
    let manager = Arc::new(sim_manager().with_gpu(Err(why.clone())));
    let agent = Agent::start(test_config(stub.addr), IdentitySource::RaTls(manager))
        .await
        .unwrap();
    // The engine is up, evidence is up: only the GPU holds readiness back.
    within("engine probed", async {
        while agent.readiness().report().inputs.engine.state != InputState::Ready {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let report = agent.readiness().report();
    assert!(!report.ready);
    assert_eq!(report.inputs.gpu.state, InputState::Failed);
    assert_eq!(report.inputs.gpu.detail, why);
    let (status, body) = metrics_get(agent.metrics_addr(), "/readyz").await;
    assert_eq!(status, 503);
    assert!(
        body.contains("failed") && body.contains(&why[..20]),
        "{body}"
    );

    // A chat request is refused before the engine sees it.
    let (mut c, _) = ra_tls_client(agent.https_addr(), &dev_policy()).await;
    c.ready().await.unwrap();
    let resp = c
        .send_request(req("POST", "/v1/chat/completions", r#"{"messages":[]}"#))
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body = text(resp).await;
    assert_eq!(error_code(&body), "gpu_not_attested", "{body}");
    assert_eq!(stub.requests_seen(), 0);
}

fn vectors() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/nvidia");
    if d.join("nvtrust_hopperAttestationReport.txt").exists() {
        Some(d)
    } else {
        eprintln!(
            "skipping: {} is absent (shared NVIDIA vectors)",
            d.display()
        );
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_gpu_evidence_is_committed_in_the_certificate_and_served() {
    let Some(v) = vectors() else { return };
    let dir = tempfile::tempdir().unwrap();
    // NVIDIA's sample has no CC state, no OCSP responses offline, and its
    // measurements do not match the sample RIMs (nvtrust's own samples): a
    // policy checking authenticity (device chain, signature) and the nonce.
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[gpu]\nrequire_cc_mode = false\nrequire_devtools_off = false\nocsp = \"off\"\n\
         require_rims = false\n",
    )
    .unwrap();
    let settings = GpuSettings {
        source: GpuSourceKind::RecordedSdk {
            report: v.join("nvtrust_hopperAttestationReport.txt"),
            cert_chain: v.join("nvtrust_hopperCertChain.txt"),
        },
        policy: Some(policy),
        rims: vec![],
        ocsp_cache: None,
        offline: true,
    };
    // The sample was made for this nonce, at a time its RIM signers were valid.
    let nonce: [u8; 32] =
        hex::decode("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
            .unwrap()
            .try_into()
            .unwrap();
    let at = time::macros::datetime!(2024-06-01 00:00 UTC);
    let attested = settings
        .check_with_nonce(at, &nonce)
        .unwrap()
        .expect("sample verifies");
    // The gpu RTMR3 event's payload is the state a release fixes. NVIDIA's
    // sample reports no CC state, so neither "CC on" nor "dev tools off" is
    // claimed: no release prediction (CC on, dev tools off) can match it.
    let sample_state = chrysalis_attestation::runtime_events::GpuEventState {
        cc: false,
        devtools: true,
        driver: "550.90.07".into(),
        gpus: 1,
    };
    assert_eq!(attested.state_digest, sample_state.payload());
    // Another nonce: the report does not answer it, so no readiness.
    let why = settings
        .check_with_nonce(at, &[7; 32])
        .unwrap()
        .unwrap_err();
    assert!(why.to_lowercase().contains("nonce"), "{why}");
    // With the RIMs, the measurements are compared and the gate says which
    // differ.
    let mut with_rims = settings.clone();
    with_rims.rims = vec![
        v.join("nvtrust_Driver_RIM_test_no_gpu.swidtag"),
        v.join("nvtrust_1010_0200_882_96005E0001_test_no_gpu.swidtag"),
    ];
    let why = with_rims.check_with_nonce(at, &nonce).unwrap().unwrap_err();
    assert!(why.contains("do not match the RIMs"), "{why}");

    let stub = Stub::start().await;
    let digest = attested.digest;
    let manager = Arc::new(sim_manager().with_gpu(Ok(attested)));
    let agent = Agent::start(test_config(stub.addr), IdentitySource::RaTls(manager))
        .await
        .unwrap();
    wait_ready(&agent).await;
    assert_eq!(
        agent.readiness().report().inputs.gpu.state,
        InputState::Ready
    );

    // The certificate commits to the bundle ...
    let verifier = Arc::new(RaTlsServerVerifier::new(dev_policy()));
    let tls = chrysalis_ratls::client_config(verifier.clone()).unwrap();
    let s = tls_with(agent.https_addr(), Arc::new(tls)).await.unwrap();
    let peer = verifier.peer().unwrap();
    assert_eq!(peer.gpu_evidence_digest(), Some(&digest));
    // ... and /attestation serves exactly it.
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(s),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    send.ready().await.unwrap();
    let resp = send
        .send_request(req("GET", "/attestation?nonce=0102030405060708", ""))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let fresh = FreshEvidence::from_json(&text(resp).await).unwrap();
    fresh
        .check_gpu_evidence(peer.gpu_evidence_digest())
        .unwrap();
    let bundle = fresh.gpu_evidence.clone().unwrap();
    assert!(chrysalis_gpu::GpuEvidenceBundle::from_json(bundle.as_bytes()).is_ok());
    // A tampered bundle no longer matches the commitment.
    let mut tampered = fresh;
    tampered.gpu_evidence = Some(bundle.replacen('0', "1", 1));
    assert!(tampered
        .check_gpu_evidence(peer.gpu_evidence_digest())
        .is_err());
}
