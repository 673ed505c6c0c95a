//! A published configuration whose `measurements.json` leaves a register
//! `null` is *not verifiable*: the default client leaves it out of its
//! policy (never "any value passes"), refuses a node of it, and names the
//! configuration and the missing register so the user knows why.
//!
//! The release is a test catalogue built from the simulated node's own
//! registers (every published release predicts all of them); the node is a
//! real RA-TLS server on loopback serving nonce-fresh evidence, and the
//! client is the real `verify_node`.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use chrysalis_attestation::provider::EvidenceProvider;
use chrysalis_attestation::runtime_events::rtmr3_boot_events;
use chrysalis_attestation::verifier::Collateral;
use chrysalis_attestation::{ErrorCategory, Tee};
use chrysalis_client::{ImagePin, NodeConfig, NodeIdentity};
use chrysalis_ratls::{EmbeddedCollateral, IdentityOptions, RaTlsIdentity};
use chrysalis_releases::{Catalogue, NotVerifiable, Release};
use chrysalis_sim::SimProvider;

const RELEASE: &str = "test-0.0.0-cpu";
const TDX_LABEL: &str = "test-0.0.0-cpu / tdx-2cpu-2048m-0gpu";

/// An honest simulated TDX node of a cpu image (RTMR3: the boot events of
/// the default host configuration) on loopback for at most 60 s. Returns
/// its address, its MRTD and RTMR0-2 (hex), and the runtime serving it.
fn start() -> (SocketAddr, [String; 4], tokio::runtime::Runtime) {
    let sim = SimProvider::new(Tee::Tdx).unwrap();
    for e in rtmr3_boot_events(Some(b"{}"), None) {
        sim.extend_rtmr3(&e.digest).unwrap();
    }
    let collateral = Collateral::Tdx(sim.tdx_collateral().unwrap());
    let opts = IdentityOptions {
        collateral: Some(EmbeddedCollateral::from_collateral(&collateral)),
        ..Default::default()
    };
    let identity = Arc::new(RaTlsIdentity::generate(&sim, &opts).unwrap());
    let decoded = chrysalis_attestation::evidence::decode(identity.evidence()).unwrap();
    let chrysalis_attestation::Evidence::Tdx(q) = &decoded.evidence else {
        unreachable!("a TDX simulator")
    };
    let td = q.td_report();
    let registers = [
        hex::encode(td.mrtd),
        hex::encode(td.rtmr[0]),
        hex::encode(td.rtmr[1]),
        hex::encode(td.rtmr[2]),
    ];
    let (addr, rt) = common::serve(sim, identity, |_| {});
    (addr, registers, rt)
}

/// A cpu release with this TDX configuration (RTMR0 `rtmr0`, `None`:
/// null) and an SNP configuration.
fn release(registers: &[String; 4], rtmr0: Option<&str>) -> Release {
    let manifest = serde_json::json!({
        "schema": 1, "tool": "test", "image": RELEASE,
        "configurations": [
            {
                "name": "tdx-2cpu-2048m-0gpu",
                "vm": {"vcpus": 2, "memory_mib": 2048, "gpus": 0, "vmm": "qemu"},
                "tdx": {"mrtd": registers[0], "rtmr0": rtmr0, "rtmr1": registers[2],
                        "rtmr2": registers[3], "rtmr3": null}
            },
            {
                "name": "snp-2cpu-EPYC-v4",
                "vm": {"vcpus": 2, "memory_mib": 2048, "gpus": 0, "vmm": "qemu"},
                "snp": {"measurement": "42".repeat(48), "vcpu_type": "EPYC-v4", "guest_features": "0x1"}
            }
        ]
    })
    .to_string();
    Release::parse(RELEASE, &manifest).unwrap()
}

/// The default client for a catalogue holding only `release`, simulated
/// evidence allowed.
fn config(release: Release) -> NodeConfig {
    NodeConfig::new(ImagePin::Releases(Catalogue::from_releases(vec![release])))
        .allow_simulated(true)
}

fn verify(
    addr: SocketAddr,
    cfg: &NodeConfig,
) -> chrysalis_client::Result<chrysalis_client::VerifiedNode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(chrysalis_client::verify_node(
            &format!("https://{addr}"),
            cfg,
        ))
}

#[test]
fn a_null_register_leaves_the_configuration_out_and_says_why() {
    let (addr, registers, _rt) = start();

    // RTMR0 null: the TDX configuration is not in the policy, the honest
    // node of it is refused, and the client names what it left out.
    let cfg = config(release(&registers, None));
    assert_eq!(
        cfg.not_verifiable(),
        &[(
            TDX_LABEL.to_owned(),
            NotVerifiable::MissingRegister("rtmr0")
        )]
    );
    let why = cfg.not_verifiable()[0].1.to_string();
    assert!(
        why.contains("does not predict RTMR0 (null)") && why.contains("no client can pin it"),
        "{why}"
    );
    assert!(cfg.verifier().policy().tdx.measurements.is_empty());
    assert_eq!(cfg.verifier().policy().snp.measurements.len(), 1);
    let e = verify(addr, &cfg).expect_err("a node of a not-verifiable configuration");
    assert_eq!(e.category(), ErrorCategory::Rejected, "{e}");
    let (reasons, _) = e.rejected_node().expect("a rejection with reasons");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("policy lists only SNP measurements but the evidence is TDX")),
        "{reasons:?}"
    );

    // The same release with RTMR0 predicted: every register pinned, the
    // same node accepted and named.
    let cfg = config(release(&registers, Some(&registers[1])));
    assert!(cfg.not_verifiable().is_empty());
    let node = verify(addr, &cfg).expect("the honest node of a verifiable configuration");
    match node.identity() {
        NodeIdentity::Release { label, .. } => assert_eq!(label, TDX_LABEL),
        other => panic!("{other:?}"),
    }

    // Pinned means pinned: another RTMR0 is refused.
    let cfg = config(release(&registers, Some(&"42".repeat(48))));
    let e = verify(addr, &cfg).expect_err("another RTMR0");
    assert_eq!(e.category(), ErrorCategory::Rejected, "{e}");
    let (reasons, _) = e.rejected_node().unwrap();
    assert!(
        reasons.iter().any(|r| r.contains("RTMR0 is")),
        "{reasons:?}"
    );
}
