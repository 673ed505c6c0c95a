//! The malicious-host suite: a hostile host against the simulated TEE and
//! the real verifiers.
//!
//! Each case starts the real `chrysalis-agent --provider sim` playing the
//! published cpu release (`--sim-release chrysalis-0.2.0-cpu
//! --sim-configuration …`) with exactly one deviation (`--sim-set FIELD=VALUE`
//! or a host-chosen runtime configuration), or a hostile RA-TLS server
//! where the agent cannot play the attack, and runs the real
//! `chrysalis verify https://127.0.0.1:PORT --allow-sim` against
//! it (the default client: the published releases, fresh evidence for a
//! nonce). Every attack must be refused, with its own reason and exit code; the
//! honest node must be accepted. The README's "Malicious-host suite" table
//! lists the cases.
//!
//! The client accepts what the published releases pin, by default (no
//! policy flag). The release predicts every register of its TDX
//! configurations (MRTD, RTMR0–3) and its SNP ones (MEASUREMENT,
//! HOST_DATA), so every case, SNP and TDX, runs against that default
//! client. (A release leaving a register `null` makes its configuration
//! *not verifiable*: left out of the default policy and named on
//! rejection; `chrysalis-releases` and `chrysalis-client` test that with a
//! synthetic release.)
//!
//! Binaries: `$CHRYSALIS_AGENT_BIN`, `$CHRYSALIS_BIN`,
//! `$CHRYSALIS_STUB_ENGINE_BIN`, else built by cargo on first use.

#[path = "malicious_host/hostile.rs"]
mod hostile;
#[path = "malicious_host/node.rs"]
mod node;

use chrysalis_attestation::runtime_events::{
    chrysalis_event_digest, replay_rtmr3, rtmr3_boot_events,
};
use node::{plays, verify, Node, Started, SNP_CONFIGURATION, TDX_CONFIGURATION};

/// Exit code of an authentic node refused by policy or TCB.
const REJECTED: i32 = 4;
/// Exit code of evidence that does not verify (signature, binding, nonce).
const VERIFICATION: i32 = 3;

const SNP_LABEL: &str = "chrysalis-0.2.0-cpu / snp-2cpu-EPYC-v4";
const TDX_LABEL: &str = "chrysalis-0.2.0-cpu / tdx-2cpu-2048m-0gpu";

fn hex48(b: u8) -> String {
    hex::encode([b; 48])
}

/// An SNP node of the published configuration with `sets`, verified by
/// the default client.
fn snp(sets: &[&str]) -> node::Verdict {
    let n = Node::start(&plays(SNP_CONFIGURATION, sets));
    verify(&n.url)
}

/// A TDX node of the published configuration with `sets`, verified by
/// the default client.
fn tdx(sets: &[&str]) -> node::Verdict {
    tdx_args(&plays(TDX_CONFIGURATION, sets))
}

fn tdx_args(args: &[String]) -> node::Verdict {
    let n = Node::start(args);
    verify(&n.url)
}

// ---------------------------------------------------------------- honest

#[test]
fn honest_snp_node_of_the_published_release_is_accepted() {
    let n = Node::start(&plays(SNP_CONFIGURATION, &[]));
    let v = verify(&n.url);
    assert_eq!(v.code, Some(0), "{}", v.json);
    assert_eq!(v.json["accepted"], true);
    assert_eq!(v.json["simulated"], true, "the banner stays");
    assert_eq!(v.node(), SNP_LABEL, "named");
    let id = &v.json["peer"]["evidence"]["identity"];
    let c = chrysalis_releases::Catalogue::builtin()
        .find(SNP_LABEL)
        .expect("published configuration");
    assert_eq!(
        id["measurement"],
        c.configuration.snp.as_ref().unwrap().measurement
    );
    assert_eq!(
        id["host_data"],
        hex::encode(chrysalis_sim::SimRelease::default_host_data())
    );
    assert!(
        n.log.contains(SNP_LABEL),
        "the agent says what it plays:\n{}",
        n.log
    );
}

#[test]
fn honest_tdx_node_of_the_published_release_is_accepted() {
    let n = Node::start(&plays(TDX_CONFIGURATION, &[]));
    assert!(
        !n.log.contains("cannot be verified"),
        "every register is published:\n{}",
        n.log
    );
    assert!(
        n.log.contains(TDX_LABEL),
        "the agent says what it plays:\n{}",
        n.log
    );
    let v = verify(&n.url);
    assert_eq!(v.code, Some(0), "{}", v.json);
    assert_eq!(v.json["accepted"], true);
    assert_eq!(v.json["simulated"], true, "the banner stays");
    assert_eq!(v.node(), TDX_LABEL, "named");
    let id = &v.json["peer"]["evidence"]["identity"];
    let t = chrysalis_releases::Catalogue::builtin()
        .find(TDX_LABEL)
        .expect("published configuration")
        .configuration
        .tdx
        .clone()
        .unwrap();
    assert_eq!(id["mrtd"], t.mrtd);
    assert_eq!(id["rtmr"][0], t.rtmr0.unwrap(), "RTMR0 pinned");
    assert_eq!(id["rtmr"][1], t.rtmr1.unwrap());
    assert_eq!(id["rtmr"][2], t.rtmr2.unwrap());
    assert_eq!(
        id["rtmr"][3],
        hex::encode(chrysalis_attestation::runtime_events::rtmr3_expected(b"{}")),
        "RTMR3: the boot events of the default host configuration"
    );
    assert_eq!(id["rtmr"][3], t.rtmr3.unwrap(), "as published");
}

// ------------------------------------------------------------ SNP attacks

#[test]
fn unknown_image_snp() {
    // The simulator's own registers: not any published configuration.
    let n = Node::start(&["--sim-tee".into(), "snp".into()]);
    let v = verify(&n.url);
    v.refused(REJECTED, "SNP measurements match none of the");
    assert!(v.message().contains("MEASUREMENT is"), "{}", v.message());
    assert_eq!(v.node(), "", "not named as a release");
}

#[test]
fn other_launch_measurement() {
    snp(&[&format!("measurement={}", hex48(0x42))]).refused(REJECTED, "MEASUREMENT is 4242");
}

#[test]
fn runtime_configuration_not_allowed_snp_host_data() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("runtime.json");
    std::fs::write(&cfg, br#"{"model":"attacker-chosen","log_prompts":true}"#).unwrap();
    let mut args = plays(SNP_CONFIGURATION, &[]);
    args.extend(["--runtime-config".into(), cfg.to_str().unwrap().into()]);
    let n = Node::start(&args);
    verify(&n.url).refused(REJECTED, "HOST_DATA is");
}

#[test]
fn host_data_that_is_not_the_runtime_configuration_stops_the_agent() {
    // The host launches the guest with one HOST_DATA and hands it another
    // configuration: the image refuses to start, nothing is served.
    let args = plays(
        SNP_CONFIGURATION,
        &[&format!("host_data={}", "77".repeat(32))],
    );
    match Node::try_start(&args) {
        Started::Serving(n) => panic!("agent served at {}", n.url),
        Started::Refused { code, output } => {
            assert_eq!(code, Some(1), "{output}");
            assert!(output.contains("launched with HOST_DATA 7777"), "{output}");
        }
    }
}

#[test]
fn snp_debug_policy() {
    snp(&["policy=0xb0000"]).refused(REJECTED, "SNP policy DEBUG bit 19 set");
}

#[test]
fn snp_migrate_ma() {
    snp(&["policy=0x70000"]).refused(REJECTED, "sets MIGRATE_MA (bit 18)");
}

#[test]
fn snp_vmpl_1() {
    snp(&["vmpl=1"]).refused(REJECTED, "report requested at VMPL 1");
}

#[test]
fn snp_tcb_below_the_product_floor() {
    // Milan with SNP firmware SPL 21, one below the AMD-SB-3019 floor (22):
    // the simulated VCEK is issued for that TCB, so only the floor refuses it.
    let low = u64::from_le_bytes([4, 0, 0, 0, 0, 0, 21, 219]);
    snp(&[&format!("reported_tcb={low:#x}")])
        .refused(REJECTED, "TCB status OutOfDate is not accepted");
}

// ------------------------------------------------------------ TDX attacks

#[test]
fn unknown_image_tdx() {
    let n = Node::start(&["--sim-tee".into(), "tdx".into()]);
    let v = verify(&n.url);
    v.refused(REJECTED, "TDX measurements match none of the");
    assert!(v.message().contains("MRTD is"), "{}", v.message());
    assert_eq!(v.node(), "", "not named as a release");
}

#[test]
fn tdx_register_deviations() {
    for field in ["mrtd", "rtmr0", "rtmr1", "rtmr2"] {
        let v = tdx(&[&format!("{field}={}", hex48(0x42))]);
        v.refused(REJECTED, &format!("{} is 4242", field.to_uppercase()));
    }
}

#[test]
fn tdx_debug_td() {
    tdx(&["td_attributes=0x10000001"])
        .refused(REJECTED, "TD is a debug TD: TD attributes TUD byte 0x01");
}

#[test]
fn tdx_under_debug_profiling_bits() {
    for bit in 4..=6 {
        let tud = 1u64 << bit;
        tdx(&[&format!("td_attributes={:#x}", 0x1000_0000 | tud)])
            .refused(REJECTED, &format!("TUD byte {tud:#04x}"));
    }
}

#[test]
fn tdx_sept_ve_disable_clear() {
    tdx(&["td_attributes=0"]).refused(REJECTED, "SEPT_VE_DISABLE (bit 28) is clear");
}

#[test]
fn tdx_migratable() {
    tdx(&["td_attributes=0x30000000"]).refused(REJECTED, "MIGRATABLE (bit 29) is set");
}

#[test]
fn tdx_module_older_than_every_tcb_level() {
    // The TDX module's SVNs below every level of the (authentic) TCB info.
    tdx(&[&format!("tee_tcb_svn={}", "00".repeat(16))]).refused(
        REJECTED,
        "platform TCB is older than every level in the TCB info",
    );
}

#[test]
fn tdx_host_chosen_identities_must_be_zero() {
    for field in ["mrconfigid", "mrowner", "mrownerconfig"] {
        tdx(&[&format!("{field}={}", hex48(0x01))])
            .refused(REJECTED, &format!("{} is 0101", field.to_uppercase()));
    }
}

/// RTMR3 after these events (names and payloads), from zero.
fn rtmr3_of(events: &[(&str, &[u8])]) -> String {
    let digests: Vec<[u8; 48]> = events
        .iter()
        .map(|(name, payload)| chrysalis_event_digest(name, payload))
        .collect();
    hex::encode(replay_rtmr3(digests.iter()))
}

#[test]
fn tdx_rtmr3_logs_that_are_not_the_image_boot() {
    let boot = rtmr3_boot_events(Some(b"{}"), None);
    let cfg = boot[0].digest;
    let done = boot[1].digest;
    let replay = |d: &[[u8; 48]]| hex::encode(replay_rtmr3(d.iter()));
    assert_eq!(
        replay(&[cfg, done]),
        hex::encode(chrysalis_attestation::runtime_events::rtmr3_expected(b"{}")),
        "the honest log, for reference"
    );
    let extra = chrysalis_event_digest("debug-shell", b"on");
    for (case, rtmr3) in [
        ("extra event", replay(&[cfg, extra, done])),
        ("missing config event", replay(&[done])),
        ("missing boot-done", replay(&[cfg])),
        ("reordered", replay(&[done, cfg])),
        (
            "agent restarted after boot-done",
            replay(&[cfg, done, cfg, done]),
        ),
        ("unknown event only", rtmr3_of(&[("config", b"x")])),
    ] {
        let v = tdx(&[&format!("rtmr3={rtmr3}")]);
        assert_eq!(v.code, Some(REJECTED), "{case}: {}", v.json);
        v.refused(REJECTED, &format!("RTMR3 is {}", &rtmr3[..16]));
    }
}

#[test]
fn runtime_configuration_not_allowed_tdx_rtmr3() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("runtime.json");
    std::fs::write(&cfg, br#"{"model":"attacker-chosen"}"#).unwrap();
    let mut args = plays(TDX_CONFIGURATION, &[]);
    args.extend(["--runtime-config".into(), cfg.to_str().unwrap().into()]);
    tdx_args(&args).refused(REJECTED, "RTMR3 is");
}

// ----------------------------------------------------- hostile servers

#[test]
fn genuine_evidence_on_a_certificate_for_another_key() {
    let url = hostile::serve(hostile::Attack::CopiedEvidence);
    verify(&url).refused(VERIFICATION, "key not bound in evidence: the claims name");
}

#[test]
fn replayed_attestation_nonce() {
    let url = hostile::serve(hostile::Attack::ReplayedNonce);
    verify(&url).refused(VERIFICATION, "nonce mismatch: asked for");
}
