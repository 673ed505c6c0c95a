//! NVIDIA's public H100 sample evidence (nvtrust local_gpu_verifier
//! samples, see ../shared/vectors/MANIFEST.md) verified offline, and the
//! negative cases the issue asks for.

mod common;

use chrysalis_gpu::certs::{self, CertChain};
use chrysalis_gpu::ocsp::OcspClient;
use chrysalis_gpu::policy::{GpuPolicy, OcspRequirement};
use chrysalis_gpu::{
    verify_gpu, AttestationReport, Collateral, Error, ErrorCategory, GpuEvidence, Rim,
};
use common::*;

fn offline_policy() -> GpuPolicy {
    GpuPolicy {
        ocsp: OcspRequirement::Off,
        ..GpuPolicy::authenticity_only()
    }
}

fn sample(d: &std::path::Path) -> GpuEvidence {
    GpuEvidence {
        index: 0,
        name: None,
        report: String::from_utf8(read(d, REPORT))
            .unwrap()
            .trim()
            .to_string(),
        cert_chain: String::from_utf8(read(d, CHAIN)).unwrap(),
        cc: None,
    }
}

#[test]
fn pinned_roots_have_the_published_fingerprints() {
    assert_eq!(
        certs::fingerprint_sha256(certs::NVIDIA_DEVICE_ROOT_DER),
        certs::NVIDIA_DEVICE_ROOT_SHA256
    );
    assert_eq!(
        certs::fingerprint_sha256(certs::NVIDIA_RIM_ROOT_DER),
        certs::NVIDIA_RIM_ROOT_SHA256
    );
    // The sample chain ends with exactly the pinned device root.
    let Some(d) = vectors() else { return };
    let chain = CertChain::from_pem(&read(&d, CHAIN)).unwrap();
    assert_eq!(chain.ders().len(), 5);
    assert_eq!(chain.ders()[4], certs::NVIDIA_DEVICE_ROOT_DER);
}

#[test]
fn sample_report_decodes() {
    let Some(d) = vectors() else { return };
    let r = AttestationReport::parse_hex(std::str::from_utf8(&read(&d, REPORT)).unwrap()).unwrap();
    assert_eq!(r.raw().len(), 4117);
    assert_eq!(r.request.spdm_version, 0x11);
    assert_eq!(r.request.param1, 0x01);
    assert_eq!(r.request.param2, 0xff);
    assert_eq!(hex::encode(r.nonce()), SAMPLE_NONCE);
    assert_eq!(r.response.blocks.len(), 64);
    assert!(r.response.blocks.iter().all(|b| b.value.len() == 48));
    assert_eq!(r.driver_version().as_deref(), Some("550.90.07"));
    assert_eq!(r.vbios_version().as_deref(), Some("96.00.9F.00.01"));
    assert_eq!(
        r.project_ids(),
        Some(("1010".to_string(), "0200".to_string(), "882".to_string()))
    );
}

/// The indexes at which NVIDIA's sample report (driver 550.90.07, VBIOS
/// 96.00.9F.00.01) differs from the test_no_gpu RIMs shipped beside it
/// (driver 545.00, VBIOS 96.00.5E.00.01): the sample was regenerated
/// without its RIMs. Found by this verifier; pinned so a change is noticed.
const SAMPLE_VS_TEST_RIMS_MISMATCH: [u16; 20] = [
    1, 2, 3, 7, 9, 11, 21, 22, 25, 26, 27, 29, 30, 31, 32, 34, 36, 37, 39, 40,
];

#[test]
fn sample_verifies_offline_authenticity() {
    let Some(d) = vectors() else { return };
    // Chain to the pinned root, signature, nonce; no RIMs given.
    let v = verify_gpu(
        &sample(&d),
        &Collateral::new(vec![]),
        &offline_policy(),
        &nonce(),
        at(),
    )
    .unwrap();
    assert_eq!(v.model(), "GH100");
    assert_eq!(v.driver_version(), Some("550.90.07"));
    assert_eq!(v.vbios_version(), Some("96.00.9F.00.01"));
    assert_eq!(v.device_chain().len(), 5);
    assert!(v.rim().is_none());
    assert!(v
        .ocsp()
        .not_checked
        .as_deref()
        .unwrap()
        .contains("off by policy"));
}

#[test]
fn sample_report_does_not_match_the_sample_rims() {
    let Some(d) = vectors() else { return };
    let e = verify_gpu(
        &sample(&d),
        &Collateral::new(rims(&d)),
        &offline_policy(),
        &nonce(),
        at(),
    )
    .unwrap_err();
    match e {
        Error::MeasurementMismatch { indexes, .. } => {
            assert_eq!(indexes, SAMPLE_VS_TEST_RIMS_MISMATCH)
        }
        other => panic!("expected a measurement mismatch, got {other}"),
    }
}

/// The sample report with its measurements set to the RIMs' golden values,
/// re-signed by a generated chain (the only way to get a matching report
/// for these RIMs without NVIDIA's key).
fn conforming(d: &std::path::Path, pki: &TestPki) -> GpuEvidence {
    let raw = hex::decode(sample(d).report).unwrap();
    let mut ev = sample(d);
    ev.report = hex::encode(pki.sign_report(&conform_to_rims(&raw, &rims(d))));
    ev.cert_chain = pki.chain_pem();
    ev
}

#[test]
fn conforming_report_matches_the_real_rims() {
    let Some(d) = vectors() else { return };
    let pki = TestPki::new("GH100 test leaf");
    let c = Collateral::new(rims(&d)).with_device_root(pki.root_der.clone());
    let v = verify_gpu(&conforming(&d, &pki), &c, &offline_policy(), &nonce(), at()).unwrap();
    let rim = v.rim().expect("RIMs compared");
    assert!(rim.mismatched.is_empty(), "{rim:?}");
    // 21 driver + 12 VBIOS active measurements, less index 35: the report
    // says NVDEC0 is disabled (opaque field 11 = 0x55), so 35 is not compared.
    assert_eq!(rim.compared, 32);
    assert!(
        !rim.versions_match,
        "test RIMs carry other versions than the report"
    );
    assert_eq!(rim.driver_rim.as_ref().unwrap().version, "545.00");
    assert_eq!(rim.vbios_rim.as_ref().unwrap().version, "96.00.5E.00.01");
    // A policy that requires matching RIM versions rejects it (exit 4).
    let strict = GpuPolicy {
        require_rim_version_match: true,
        ..offline_policy()
    };
    let e = chrysalis_gpu::check_policy(&v, &strict).unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Rejected);
}

#[test]
fn rim_signatures_verify_and_expire() {
    let Some(d) = vectors() else { return };
    for r in rims(&d) {
        let v = chrysalis_gpu::rim::verify_rim(&r, certs::NVIDIA_RIM_ROOT_DER, at()).unwrap();
        assert_eq!(
            v.signer().subjects().len(),
            4,
            "{:?}",
            v.signer().subjects()
        );
        // Outside the signer certificates' validity (2025-06-22) the signature is rejected.
        let late = time::macros::datetime!(2025-07-01 00:00 UTC);
        let e = chrysalis_gpu::rim::verify_rim(&r, certs::NVIDIA_RIM_ROOT_DER, late).unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
    }
}

#[test]
fn tampered_rim_is_rejected() {
    let Some(d) = vectors() else { return };
    let xml = String::from_utf8(read(&d, DRIVER_RIM)).unwrap();
    // Change one golden value (Measurement_7) by one hex digit.
    let tampered = xml.replacen("0e0ee161b59bf124", "1e0ee161b59bf124", 1);
    assert_ne!(tampered, xml);
    let r = Rim::parse("tampered", tampered.as_bytes()).unwrap();
    let e = chrysalis_gpu::rim::verify_rim(&r, certs::NVIDIA_RIM_ROOT_DER, at()).unwrap_err();
    assert!(matches!(e, Error::RimSignature { .. }), "{e}");
    assert!(e.to_string().contains("DigestValue"), "{e}");
    // A RIM with its SignedInfo changed: digest still fine, signature not.
    let si = xml.replacen("<ds:DigestValue>Dc2C", "<ds:DigestValue>Dc2D", 1);
    let r = Rim::parse("si", si.as_bytes()).unwrap();
    assert!(chrysalis_gpu::rim::verify_rim(&r, certs::NVIDIA_RIM_ROOT_DER, at()).is_err());
}

#[test]
fn flipped_bit_in_report_fails_signature() {
    let Some(d) = vectors() else { return };
    let mut ev = sample(&d);
    let mut raw = hex::decode(&ev.report).unwrap();
    for offset in [0x30usize, 200, 2000, 4000] {
        raw[offset] ^= 0x01;
        ev.report = hex::encode(&raw);
        let e = verify_gpu(
            &ev,
            &Collateral::new(rims(&d)),
            &offline_policy(),
            &nonce(),
            at(),
        )
        .unwrap_err();
        assert!(
            matches!(e, Error::ReportSignature | Error::MalformedReport(_)),
            "offset {offset}: {e}"
        );
        assert_ne!(e.category(), ErrorCategory::Rejected);
        raw[offset] ^= 0x01;
    }
}

#[test]
fn wrong_nonce_fails() {
    let Some(d) = vectors() else { return };
    let mut other = nonce();
    other[0] ^= 0xff;
    let e = verify_gpu(
        &sample(&d),
        &Collateral::new(rims(&d)),
        &offline_policy(),
        &other,
        at(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::NonceMismatch { .. }), "{e}");
    assert_eq!(e.category(), chrysalis_gpu::ErrorCategory::Verification);
}

#[test]
fn chain_to_another_root_fails() {
    let Some(d) = vectors() else { return };
    // 1. The real evidence against a generated root.
    let pki = TestPki::new("GH100 test leaf");
    let c = Collateral::new(rims(&d)).with_device_root(pki.root_der.clone());
    let e = verify_gpu(&sample(&d), &c, &offline_policy(), &nonce(), at()).unwrap_err();
    assert!(matches!(e, Error::Chain(_)), "{e}");
    // 2. A report re-signed by a generated chain, against the pinned NVIDIA root.
    let mut ev = sample(&d);
    ev.report = hex::encode(pki.sign_report(&hex::decode(&ev.report).unwrap()));
    ev.cert_chain = pki.chain_pem();
    let e = verify_gpu(
        &ev,
        &Collateral::new(rims(&d)),
        &offline_policy(),
        &nonce(),
        at(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Chain(_)), "{e}");
    // ...which does verify to its own root: the failure above is the root.
    let c = Collateral::new(vec![]).with_device_root(pki.root_der.clone());
    verify_gpu(&ev, &c, &offline_policy(), &nonce(), at()).unwrap();
}

#[test]
fn measurement_mismatch_against_rim() {
    let Some(d) = vectors() else { return };
    let pki = TestPki::new("GH100 test leaf");
    let ok = conforming(&d, &pki);
    let mut raw = hex::decode(&ok.report).unwrap();
    // Change measurement block 8 (RIM index 7, active in the driver RIM).
    let r = AttestationReport::parse(&raw).unwrap();
    let want = r.measurement(7).unwrap().to_vec();
    let pos = raw.windows(48).position(|w| w == want.as_slice()).unwrap();
    raw[pos] ^= 0x80;
    let mut ev = ok.clone();
    ev.report = hex::encode(pki.sign_report(&raw));
    let c = Collateral::new(rims(&d)).with_device_root(pki.root_der.clone());
    let e = verify_gpu(&ev, &c, &offline_policy(), &nonce(), at()).unwrap_err();
    match &e {
        Error::MeasurementMismatch { indexes, tolerated } => {
            assert_eq!(indexes, &vec![7]);
            assert_eq!(*tolerated, 0);
        }
        other => panic!("expected a measurement mismatch, got {other}"),
    }
    assert_eq!(e.category(), chrysalis_gpu::ErrorCategory::Verification);
    // A policy tolerating one mismatch accepts it and reports the index.
    let lenient = GpuPolicy {
        max_measurement_mismatches: 1,
        ..offline_policy()
    };
    let v = verify_gpu(&ev, &c, &lenient, &nonce(), at()).unwrap();
    assert_eq!(v.rim().unwrap().mismatched, vec![7]);
}

#[test]
fn rims_required_by_default_policy() {
    let Some(d) = vectors() else { return };
    let strict = GpuPolicy {
        ocsp: OcspRequirement::Off,
        ..GpuPolicy::default()
    };
    let e = verify_gpu(
        &sample(&d),
        &Collateral::new(vec![]),
        &strict,
        &nonce(),
        at(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::RimMismatch(_)), "{e}");
    // authenticity-only: no RIMs is allowed and reported as not compared.
    let v = verify_gpu(
        &sample(&d),
        &Collateral::new(vec![]),
        &offline_policy(),
        &nonce(),
        at(),
    )
    .unwrap();
    assert!(v.rim().is_none());
}

#[test]
fn ocsp_required_fails_offline_without_cache() {
    let Some(d) = vectors() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let required = GpuPolicy {
        ocsp: OcspRequirement::Required,
        ..GpuPolicy::authenticity_only()
    };
    let c = Collateral::new(vec![]).with_ocsp(OcspClient::new(Some(tmp.path().into()), true));
    let e = verify_gpu(&sample(&d), &c, &required, &nonce(), at()).unwrap_err();
    assert!(e.to_string().contains("no cached OCSP response"), "{e}");
    // if-available: the same situation verifies and says what was not checked.
    let v = verify_gpu(
        &sample(&d),
        &c,
        &GpuPolicy::authenticity_only(),
        &nonce(),
        at(),
    )
    .unwrap();
    assert!(v.ocsp().checks.is_empty());
    assert!(v.ocsp().not_checked.as_deref().unwrap().contains("offline"));
}
