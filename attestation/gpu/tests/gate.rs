//! The agent's readiness gate, driven by recorded evidence behind the same
//! trait as NVML; and NVML without a driver.

mod common;

use chrysalis_gpu::nvml::{NvmlSource, NO_DRIVER};
use chrysalis_gpu::policy::{GpuPolicy, OcspRequirement};
use chrysalis_gpu::{
    gate, CcState, Collateral, Error, GpuEvidenceSource, Readiness, RecordedSource,
};
use common::*;
use sha2::{Digest, Sha384};

const CC_ON: CcState = CcState {
    system_cc_enabled: true,
    devtools_mode: false,
};

fn policy() -> GpuPolicy {
    // Strict defaults, except: no OCSP responses exist offline for the
    // vectors, and their RIMs do not match the sample report (see vectors.rs).
    GpuPolicy {
        ocsp: OcspRequirement::Off,
        require_rims: false,
        ..GpuPolicy::default()
    }
}

fn source(cc: Option<CcState>) -> Option<RecordedSource> {
    let d = vectors()?;
    Some(RecordedSource::from_sdk_files(&d.join(REPORT), &d.join(CHAIN), cc).unwrap())
}

#[test]
fn ready_only_after_verification_and_policy() {
    let Some(mut src) = source(Some(CC_ON)) else {
        return;
    };
    let r = gate(
        &mut src,
        &policy(),
        &Collateral::new(vec![]),
        &nonce(),
        at(),
    );
    match &r {
        Readiness::Ready { verified, bundle } => {
            assert_eq!(verified.gpus().len(), 1);
            assert_eq!(verified.gpus()[0].model(), "GH100");
            let d: [u8; 48] = Sha384::digest(bundle).into();
            assert_eq!(verified.bundle_digest(), &d);
        }
        Readiness::NotReady(why) => panic!("not ready: {why}"),
    }
    assert!(src.ready_set(), "ready state set after verification");
}

/// CC state, policy, nonce override, expected reason.
type Case = (Option<CcState>, GpuPolicy, Option<[u8; 32]>, &'static str);

#[test]
fn not_ready_reasons_are_exact_and_ready_state_untouched() {
    let cases: [Case; 5] = [
        (None, policy(), None, "carries no CC state"),
        (
            Some(CcState {
                system_cc_enabled: false,
                devtools_mode: false,
            }),
            policy(),
            None,
            "confidential computing is off",
        ),
        (
            Some(CcState {
                system_cc_enabled: true,
                devtools_mode: true,
            }),
            policy(),
            None,
            "dev-tools mode is on",
        ),
        (Some(CC_ON), policy(), Some([7u8; 32]), "nonce mismatch"),
        (
            Some(CC_ON),
            GpuPolicy {
                min_driver_version: Some("555.0".into()),
                ..policy()
            },
            None,
            "below the required 555.0",
        ),
    ];
    for (cc, p, n, want) in cases {
        let Some(mut src) = source(cc) else { return };
        let r = gate(
            &mut src,
            &p,
            &Collateral::new(vec![]),
            &n.unwrap_or_else(nonce),
            at(),
        );
        match r {
            Readiness::NotReady(why) => assert!(why.contains(want), "{why:?} lacks {want:?}"),
            Readiness::Ready { .. } => panic!("ready, expected: {want}"),
        }
        assert!(
            !src.ready_set(),
            "ready state must not be set when not ready ({want})"
        );
    }
}

#[test]
fn strict_default_with_the_sample_rims_is_not_ready() {
    let Some(d) = vectors() else { return };
    let Some(mut src) = source(Some(CC_ON)) else {
        return;
    };
    let p = GpuPolicy {
        ocsp: OcspRequirement::Off,
        ..GpuPolicy::default()
    };
    let r = gate(&mut src, &p, &Collateral::new(rims(&d)), &nonce(), at());
    let Readiness::NotReady(why) = r else {
        panic!("expected not ready")
    };
    assert!(why.contains("do not match the RIMs"), "{why}");
    // Default OCSP policy (required) without a cache: not ready, says why.
    let r = gate(
        &mut src,
        &GpuPolicy {
            require_rims: false,
            ..GpuPolicy::default()
        },
        &Collateral::new(vec![]),
        &nonce(),
        at(),
    );
    let Readiness::NotReady(why) = r else {
        panic!("expected not ready")
    };
    assert!(why.contains("policy requires OCSP"), "{why}");
}

#[test]
fn recorded_bundle_round_trips() {
    let Some(mut src) = source(Some(CC_ON)) else {
        return;
    };
    let bytes = src.collect(&nonce()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("bundle.json");
    std::fs::write(&f, &bytes).unwrap();
    let mut rec = RecordedSource::from_bundle_file(&f).unwrap();
    assert_eq!(
        rec.collect(&[0u8; 32]).unwrap(),
        bytes,
        "a recorded bundle is served as recorded"
    );
    assert!(gate(
        &mut rec,
        &policy(),
        &Collateral::new(vec![]),
        &nonce(),
        at()
    )
    .is_ready());
    // A corrupted bundle file is refused up front.
    std::fs::write(&f, b"{\"format\":\"x\"}").unwrap();
    let e = RecordedSource::from_bundle_file(&f).unwrap_err();
    assert_eq!(e.category(), chrysalis_gpu::ErrorCategory::Malformed, "{e}");
}

#[test]
fn nvml_without_driver_is_reported_cleanly() {
    match NvmlSource::open() {
        Err(Error::Nvml(m)) => assert_eq!(m, NO_DRIVER),
        Err(other) => panic!("unexpected error kind: {other}"),
        Ok(_) => eprintln!("SKIP: an NVIDIA driver is present here; run ci/gpu-real.sh instead"),
    }
}

#[test]
fn client_verifies_a_bound_bundle() {
    let Some(mut src) = source(Some(CC_ON)) else {
        return;
    };
    let bundle = src.collect(&nonce()).unwrap();
    let bound: [u8; 48] = Sha384::digest(&bundle).into();
    let c = Collateral::new(vec![]);
    let v = chrysalis_gpu::verify_bound_bundle(&bundle, &bound, &c, &policy(), at()).unwrap();
    assert_eq!(v.bundle_digest(), &bound);
    // One byte different from what the TEE evidence binds: refused.
    let mut other = bound;
    other[0] ^= 1;
    let e = chrysalis_gpu::verify_bound_bundle(&bundle, &other, &c, &policy(), at()).unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    assert_eq!(e.category(), chrysalis_gpu::ErrorCategory::Verification);
}
