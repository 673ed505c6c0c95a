//! A gpu release's node, played by the simulated TEE with NVIDIA's real
//! sample H100 evidence, against `verify_node` with the default rules for a
//! gpu release: GPU evidence required, bound to the certificate, CC on, dev
//! tools off, RTMR3 pinned to the release's prediction (the `gpu` event of
//! `GpuEventState::expected`) or, for a manifest that leaves it null,
//! judged by the node's event log; either way the `gpu` event must be the
//! state of the GPU evidence the client verified itself.
//!
//! The release is a test catalogue built from the simulator's registers
//! (no gpu release is published yet); everything else is the real client.
//! Skipped with a message when `../shared/vectors/nvidia` is absent.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use chrysalis_attestation::runtime_events::{rtmr3_boot_events, LoggedEvent};
use chrysalis_attestation::verifier::Collateral;
use chrysalis_attestation::{Identity, Tee};
use chrysalis_client::{Error, ImagePin, NodeConfig, NodeIdentity};
use chrysalis_gpu::{CcState, GpuEvidence, GpuEvidenceBundle};
use chrysalis_ratls::{EmbeddedCollateral, IdentityOptions, RaTlsIdentity};
use chrysalis_releases::{Catalogue, Release};
use chrysalis_sim::SimProvider;

/// NVIDIA's sample H100 evidence as a bundle, with this driver-reported CC
/// state (None: the sample's own, which carries none).
fn sample_bundle(cc: Option<CcState>) -> Option<String> {
    let d =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/nvidia");
    let Ok(report) = std::fs::read_to_string(d.join("nvtrust_hopperAttestationReport.txt")) else {
        eprintln!(
            "skipping: {} is absent (shared NVIDIA vectors)",
            d.display()
        );
        return None;
    };
    let chain = std::fs::read_to_string(d.join("nvtrust_hopperCertChain.txt")).unwrap();
    let nonce: [u8; 32] =
        hex::decode("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
            .unwrap()
            .try_into()
            .unwrap();
    let ev = GpuEvidence {
        index: 0,
        name: None,
        report: report.split_whitespace().collect(),
        cert_chain: chain,
        cc,
    };
    Some(String::from_utf8(GpuEvidenceBundle::new(&nonce, vec![ev]).to_json()).unwrap())
}

const CC_ON: Option<CcState> = Some(CcState {
    system_cc_enabled: true,
    devtools_mode: false,
});

/// What the hostile (or honest) node does.
struct Node {
    /// GPU bundle its certificate commits to.
    committed: Option<String>,
    /// GPU bundle it serves with fresh evidence.
    served: Option<String>,
    /// The `gpu` event payload it extends (None: no gpu event).
    gpu_event: Option<[u8; 48]>,
    /// Serve the event log with fresh evidence.
    serve_log: bool,
    /// The release's RTMR3 (None: `null`, left to the event log).
    release_rtmr3: Option<[u8; 48]>,
}

/// Starts the node on loopback (for at most 60 s); returns its address, its
/// registers as a gpu release's measurements.json, and the runtime.
fn start(node: Node) -> (SocketAddr, String, tokio::runtime::Runtime) {
    let sim = SimProvider::new(Tee::Tdx).unwrap();
    let events = rtmr3_boot_events(Some(b"{}"), node.gpu_event.as_ref());
    for e in &events {
        use chrysalis_attestation::provider::EvidenceProvider;
        sim.extend_rtmr3(&e.digest).unwrap();
    }
    let log: Vec<LoggedEvent> = events.iter().map(Into::into).collect();
    let collateral = Collateral::Tdx(sim.tdx_collateral().unwrap());
    let opts = IdentityOptions {
        collateral: Some(EmbeddedCollateral::from_collateral(&collateral)),
        gpu_evidence_digest: node
            .committed
            .as_ref()
            .map(|b| chrysalis_gpu::evidence_digest(b.as_bytes())),
        ..Default::default()
    };
    let identity = Arc::new(RaTlsIdentity::generate(&sim, &opts).unwrap());
    // The release: this node's MRTD and RTMR0-2, RTMR3 left to the log.
    let decoded = chrysalis_attestation::evidence::decode(identity.evidence()).unwrap();
    let chrysalis_attestation::Evidence::Tdx(q) = &decoded.evidence else {
        unreachable!()
    };
    let td = q.td_report();
    let manifest = serde_json::json!({
        "schema": 1, "tool": "test", "image": "test-0.0.0-gpu",
        "configurations": [{
            "name": "tdx-2cpu-2048m-1gpu",
            "vm": {"vcpus": 2, "memory_mib": 2048, "gpus": 1, "vmm": "qemu"},
            "tdx": {"mrtd": hex::encode(td.mrtd), "rtmr0": hex::encode(td.rtmr[0]),
                    "rtmr1": hex::encode(td.rtmr[1]), "rtmr2": hex::encode(td.rtmr[2]), "rtmr3": null}
        }]
    })
    .to_string();
    let manifest = match node.release_rtmr3 {
        Some(r) => manifest.replace(
            "\"rtmr3\":null",
            &format!("\"rtmr3\":\"{}\"", hex::encode(r)),
        ),
        None => manifest,
    };
    let (served, log) = (node.served, node.serve_log.then_some(log));
    let (addr, rt) = common::serve(sim, identity, move |f| {
        f.gpu_evidence = served.clone();
        f.runtime_events = log.clone();
    });
    (addr, manifest, rt)
}

/// The default client for a catalogue holding only this gpu release.
fn verify(
    addr: SocketAddr,
    manifest: &str,
) -> chrysalis_client::Result<chrysalis_client::VerifiedNode> {
    let release = Release::parse("test-0.0.0-gpu", manifest).unwrap();
    let cfg = NodeConfig::new(ImagePin::Releases(Catalogue::from_releases(vec![release])))
        .allow_simulated(true);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(chrysalis_client::verify_node(
        &format!("https://{addr}"),
        &cfg,
    ))
}

/// The `gpu` event payload of a bundle's GPUs, as the client computes it.
fn state_of(bundle: &str) -> [u8; 48] {
    chrysalis_gpu::verify::verify_bound_bundle(
        bundle.as_bytes(),
        &chrysalis_gpu::evidence_digest(bundle.as_bytes()),
        &chrysalis_gpu::verify::Collateral::new(Vec::new()),
        &chrysalis_gpu::GpuPolicy::authenticity_only(),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap()
    .event_state()
    .payload()
}

#[test]
fn a_gpu_release_node_is_accepted_only_with_its_own_verified_gpus() {
    let Some(good) = sample_bundle(CC_ON) else {
        return;
    };
    let state = state_of(&good);

    // Honest: bundle committed and served, CC on, the gpu event is its state.
    let (addr, m, _rt) = start(Node {
        committed: Some(good.clone()),
        served: Some(good.clone()),
        gpu_event: Some(state),
        serve_log: true,
        release_rtmr3: None,
    });
    let node = verify(addr, &m).expect("the honest gpu node is accepted");
    match node.identity() {
        NodeIdentity::Release {
            label,
            requires_gpu,
            rtmr3_by_event_log,
            ..
        } => {
            assert_eq!(label, "test-0.0.0-gpu / tdx-2cpu-2048m-1gpu");
            assert!(*requires_gpu && *rtmr3_by_event_log);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(node.gpus().map(|s| s.gpus().len()), Some(1));
    assert!(matches!(
        node.peer().evidence().identity(),
        Identity::Tdx(_)
    ));

    // A gpu release without GPU evidence: refused (4).
    let (addr, m, _rt2) = start(Node {
        committed: None,
        served: None,
        gpu_event: None,
        serve_log: true,
        release_rtmr3: None,
    });
    let e = verify(addr, &m).unwrap_err();
    assert!(matches!(e, Error::GpuEvidenceMissing(_)), "{e}");
    assert!(e.to_string().contains("commits to none"), "{e}");
    assert_eq!(e.category(), chrysalis_attestation::ErrorCategory::Rejected);

    // CC state not reported as on (NVIDIA's sample as recorded), and dev
    // tools on: refused by the gpu release's rules.
    for cc in [
        None,
        Some(CcState {
            system_cc_enabled: false,
            devtools_mode: false,
        }),
        Some(CcState {
            system_cc_enabled: true,
            devtools_mode: true,
        }),
    ] {
        let bundle = sample_bundle(cc).unwrap();
        let (addr, m, _rt3) = start(Node {
            committed: Some(bundle.clone()),
            served: Some(bundle.clone()),
            gpu_event: Some(state_of(&bundle)),
            serve_log: true,
            release_rtmr3: None,
        });
        let e = verify(addr, &m).unwrap_err();
        assert!(matches!(e, Error::Gpu(_)), "{cc:?}: {e}");
        assert_eq!(
            e.category(),
            chrysalis_attestation::ErrorCategory::Rejected,
            "{e}"
        );
    }

    // A bundle from another machine or boot served instead of the committed
    // one: the certificate's digest does not match (3).
    let other = good.replacen("\"index\":0", "\"index\":1", 1);
    let (addr, m, _rt4) = start(Node {
        committed: Some(good.clone()),
        served: Some(other),
        gpu_event: Some(state),
        serve_log: true,
        release_rtmr3: None,
    });
    let e = verify(addr, &m).unwrap_err();
    assert_eq!(
        e.category(),
        chrysalis_attestation::ErrorCategory::Verification,
        "{e}"
    );

    // The gpu event measures another GPU state than the bundle it serves
    // (GPU evidence of another machine in RTMR3): refused by the log.
    let (addr, m, _rt5) = start(Node {
        committed: Some(good.clone()),
        served: Some(good.clone()),
        gpu_event: Some([9; 48]),
        serve_log: true,
        release_rtmr3: None,
    });
    let e = verify(addr, &m).unwrap_err();
    assert!(matches!(e, Error::RuntimeLog(_)), "{e}");
    assert!(
        e.to_string()
            .contains("the GPUs changed since boot, or the boot gate saw others"),
        "{e}"
    );

    // No gpu event at all (a node that skipped the GPU gate).
    let (addr, m, _rt6) = start(Node {
        committed: Some(good.clone()),
        served: Some(good.clone()),
        gpu_event: None,
        serve_log: true,
        release_rtmr3: None,
    });
    let e = verify(addr, &m).unwrap_err();
    assert!(e.to_string().contains("no gpu event"), "{e}");

    // RTMR3 left to the log, but no log served: refused.
    let (addr, m, _rt7) = start(Node {
        committed: Some(good.clone()),
        served: Some(good),
        gpu_event: Some(state),
        serve_log: false,
        release_rtmr3: None,
    });
    let e = verify(addr, &m).unwrap_err();
    assert!(e.to_string().contains("served none"), "{e}");
}

/// The published form: the release pins RTMR3 to the prediction for its
/// driver and GPU count (`measure image`), so any node whose boot gate saw
/// another state is refused by the register itself, log or no log.
#[test]
fn a_gpu_release_that_pins_rtmr3_accepts_exactly_the_predicted_gpu_state() {
    use chrysalis_attestation::runtime_events::{rtmr3_expected_with_gpu, GpuEventState};
    let Some(good) = sample_bundle(CC_ON) else {
        return;
    };
    // NVIDIA's sample report is from driver 550.90.07, one GPU.
    let predicted = GpuEventState::expected(1, "550.90.07");
    assert_eq!(state_of(&good), predicted.payload());
    let rtmr3 = rtmr3_expected_with_gpu(b"{}", Some(&predicted));

    let (addr, m, _rt) = start(Node {
        committed: Some(good.clone()),
        served: Some(good.clone()),
        gpu_event: Some(predicted.payload()),
        serve_log: true,
        release_rtmr3: Some(rtmr3),
    });
    let node = verify(addr, &m).expect("the honest gpu node is accepted");
    match node.identity() {
        NodeIdentity::Release {
            requires_gpu,
            rtmr3_by_event_log,
            ..
        } => assert!(*requires_gpu && !*rtmr3_by_event_log),
        other => panic!("{other:?}"),
    }

    // The boot gate saw another driver, or two GPUs, or none at all: RTMR3
    // is not the release's, refused (4) whether the log is served or not.
    for (event, serve_log) in [
        (
            Some(GpuEventState::expected(1, "550.163.01").payload()),
            true,
        ),
        (
            Some(GpuEventState::expected(2, "550.90.07").payload()),
            false,
        ),
        (None, true),
    ] {
        let (addr, m, _rt2) = start(Node {
            committed: Some(good.clone()),
            served: Some(good.clone()),
            gpu_event: event,
            serve_log,
            release_rtmr3: Some(rtmr3),
        });
        let e = verify(addr, &m).unwrap_err();
        assert_eq!(
            e.category(),
            chrysalis_attestation::ErrorCategory::Rejected,
            "{e}"
        );
    }

    // RTMR3 as predicted, but the GPU served now has dev tools on: the
    // client's own GPU check refuses it.
    let devtools = sample_bundle(Some(CcState {
        system_cc_enabled: true,
        devtools_mode: true,
    }))
    .unwrap();
    let (addr, m, _rt3) = start(Node {
        committed: Some(devtools.clone()),
        served: Some(devtools),
        gpu_event: Some(predicted.payload()),
        serve_log: true,
        release_rtmr3: Some(rtmr3),
    });
    let e = verify(addr, &m).unwrap_err();
    assert!(matches!(e, Error::Gpu(_)), "{e}");
}
