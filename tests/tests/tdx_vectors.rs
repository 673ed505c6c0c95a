//! Every TDX vector in ../shared/vectors/tdx parses, re-serialises to the
//! same bytes, and verifies (or fails) exactly as MANIFEST.md says.

use chrysalis_attestation as att;
use chrysalis_e2e_tests::{at, vectors};

use att::evidence::{decode, Evidence};
use att::tdx::{TdxCollateral, TdxRoots};
use att::verifier::{Anchors, Collateral};
use att::{CheckContext, Error, Policy, TcbStatus};

fn load(dir: &std::path::Path, name: &str) -> att::DecodedEvidence {
    let bytes = std::fs::read(dir.join("tdx").join(name)).unwrap();
    decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn collateral(dir: &std::path::Path, name: &str) -> TdxCollateral {
    TdxCollateral::load(&dir.join("tdx").join(name)).unwrap()
}

#[test]
fn every_tdx_quote_parses_and_round_trips() {
    let Some(dir) = vectors() else { return };
    // (file, expected version, expected MRTD prefix, trailing bytes). Many real
    // quote buffers carry bytes past the signature data length; the quote's
    // own lengths decide where it ends.
    let cases = [
        ("dcapqvl_tdx_quote", 4, "91eb2b44d141d4ec", 70),
        ("dcapqvl_tdx_quote_outdated", 5, "273828c46252fcbd", 0),
        ("dcapqvl_quote-from-tappd.hex", 4, "c68518a0ebb42136", 70),
        ("dcapqvl_tdx-quote.hex", 4, "7ba9e262ce697908", 70),
        ("dcapqvl_near_quote_hex.txt", 4, "f06dfda6dce1cf90", 70),
        ("gotdx_tdx_prod_quote_SPR_E4.dat", 4, "6363b8043668a3ad", 39),
        ("dstack_ratls_tdx_quote", 4, "91eb2b44d141d4ec", 70),
        ("cocoon_tee_test_quote.dat", 4, "7357a10d2e2724df", 70),
    ];
    for (name, version, mrtd, trailing) in cases {
        let d = load(&dir, name);
        let Evidence::Tdx(q) = &d.evidence else {
            panic!("{name}: not TDX")
        };
        assert_eq!(q.header.version, version, "{name}");
        assert!(hex::encode(q.td_report().mrtd).starts_with(mrtd), "{name}");
        assert_eq!(d.trailing, trailing, "{name}");
        assert_eq!(q.to_bytes(), d.bytes, "{name}: re-serialisation differs");
        assert!(q.pck_chain_pem().is_some(), "{name}: no PCK chain");
    }
    // Zero-padded to 8000 bytes: the quote's own lengths decide its end.
    let d = load(&dir, "gotdx_cos-113-tdx-quote.dat");
    assert!(d.trailing > 0 && d.bytes.len() + d.trailing == 8000);
    let Evidence::Tdx(q) = &d.evidence else {
        panic!()
    };
    assert_eq!(q.td_report().report_data, [0u8; 64]);
    assert_eq!(q.to_bytes(), d.bytes);
    // v5 sample from go-tdx-guest.
    let d = load(&dir, "gotdx_quote_v5_sample.dat");
    let Evidence::Tdx(q) = &d.evidence else {
        panic!()
    };
    assert_eq!(q.header.version, 5);
    assert_eq!(q.to_bytes(), d.bytes);
    // The quote inside dstack's JSON.
    let d = load(&dir, "dstack_verifier_quote-report.json");
    let Evidence::Tdx(q) = &d.evidence else {
        panic!()
    };
    assert!(hex::encode(q.td_report().mrtd).starts_with("b24d3b24e9e3c160"));
}

#[test]
fn pck_chains_end_at_the_pinned_intel_root() {
    let Some(dir) = vectors() else { return };
    let d = load(&dir, "dcapqvl_tdx_quote");
    let Evidence::Tdx(q) = &d.evidence else {
        panic!()
    };
    let pem = String::from_utf8_lossy(q.pck_chain_pem().unwrap()).to_string();
    let root_b64: String = pem
        .split("-----BEGIN CERTIFICATE-----")
        .last()
        .unwrap()
        .split("-----END CERTIFICATE-----")
        .next()
        .unwrap()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let pinned = att::tdx::intel_sgx_root_ca();
    use base64_check::encode;
    assert_eq!(root_b64, encode(pinned));
}

/// Tiny base64 encoder for one comparison (keeps the test free of new deps).
mod base64_check {
    pub fn encode(b: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for c in b.chunks(3) {
            let n = (c[0] as u32) << 16
                | (*c.get(1).unwrap_or(&0) as u32) << 8
                | *c.get(2).unwrap_or(&0) as u32;
            for i in 0..4 {
                if i <= c.len() {
                    s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        s
    }
}

#[test]
fn dcapqvl_quote_verifies_up_to_date_inside_its_window() {
    let Some(dir) = vectors() else { return };
    let d = load(&dir, "dcapqvl_tdx_quote");
    let c = collateral(&dir, "dcapqvl_tdx_quote_collateral.json");
    let ev = att::tdx::verify(
        &att::tdx::TdxQuote::parse(&d.bytes).unwrap(),
        &c,
        &TdxRoots::production(),
        at("2025-07-19T10:00:34Z"),
    )
    .unwrap();
    assert_eq!(ev.tcb_status(), TcbStatus::UpToDate);
    assert!(ev.advisory_ids().is_empty());
    assert_eq!(ev.anchor(), att::TrustAnchor::Production);
    assert!(!ev.debug());
    let decision = Policy::default().check(&ev, &CheckContext::default());
    assert!(decision.accepted, "{:?}", decision.reasons);
}

#[test]
fn near_quote_verifies_at_its_manifest_time() {
    let Some(dir) = vectors() else { return };
    let d = load(&dir, "dcapqvl_near_quote_hex.txt");
    let c = collateral(&dir, "dcapqvl_near_quote_collateral.json");
    let ev = att::tdx::verify(
        &att::tdx::TdxQuote::parse(&d.bytes).unwrap(),
        &c,
        &TdxRoots::production(),
        at("2025-09-10T00:00:00Z"),
    )
    .unwrap();
    assert_eq!(hex::encode(&ev.report_data()[..4]), "0001d579");
}

#[test]
fn outdated_quote_verifies_but_is_rejected_with_components_named() {
    let Some(dir) = vectors() else { return };
    let d = load(&dir, "dcapqvl_tdx_quote_outdated");
    let c = collateral(&dir, "dcapqvl_tdx_quote_outdated_collateral.json");
    // The platform is older than every TCB level of this collateral: the
    // quote is authentic but its TCB is unsupported, a TCB rejection (exit 4)
    // that names the components that are behind.
    let err = att::tdx::verify(
        &att::tdx::TdxQuote::parse(&d.bytes).unwrap(),
        &c,
        &TdxRoots::production(),
        at("2026-03-01T00:00:00Z"),
    )
    .unwrap_err();
    assert_eq!(err.category(), att::ErrorCategory::Rejected, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("older than every level"), "{msg}");
    assert!(msg.contains("but the latest level"), "{msg}");
}

#[test]
fn expired_and_not_yet_valid_collateral_fail_closed_saying_how_stale() {
    let Some(dir) = vectors() else { return };
    let d = load(&dir, "dcapqvl_tdx_quote");
    let c = collateral(&dir, "dcapqvl_tdx_quote_collateral.json");
    let err = att::tdx::verify(
        &att::tdx::TdxQuote::parse(&d.bytes).unwrap(),
        &c,
        &TdxRoots::production(),
        at("2025-07-31T10:16:03Z"),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::StaleCollateral(_)), "{err:?}");
    assert!(msg.contains("expired 12 days ago"), "{msg}");
    assert!(msg.contains("fetch fresh collateral"), "{msg}");
    let err = att::tdx::verify(
        &att::tdx::TdxQuote::parse(&d.bytes).unwrap(),
        &c,
        &TdxRoots::production(),
        at("2025-06-01T00:00:00Z"),
    )
    .unwrap_err();
    assert!(matches!(err, Error::StaleCollateral(_)), "{err:?}");
    assert!(err.to_string().contains("not valid until"), "{err}");
}

#[test]
fn tampered_quotes_fail_each_with_its_own_error() {
    let Some(dir) = vectors() else { return };
    let d = load(&dir, "dcapqvl_tdx_quote");
    let c = collateral(&dir, "dcapqvl_tdx_quote_collateral.json");
    let now = at("2025-07-19T10:00:34Z");
    let verify = |bytes: &[u8]| {
        att::tdx::verify(
            &att::tdx::TdxQuote::parse(bytes).unwrap(),
            &c,
            &TdxRoots::production(),
            now,
        )
    };

    // A bit in the body (MRTD) → the quote signature no longer matches.
    let mut body = d.bytes.clone();
    body[48 + 16 + 48 + 48 + 8 + 8 + 8] ^= 1;
    let e = verify(&body).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Verification {
                step: "quote signature",
                ..
            }
        ),
        "{e}"
    );

    // A bit in the quote signature itself.
    let mut sig = d.bytes.clone();
    sig[632 + 4 + 10] ^= 0x80;
    let e = verify(&sig).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Verification {
                step: "quote signature",
                ..
            }
        ),
        "{e}"
    );

    // A bit in the QE report (its ISV SVN) → PCK signature over it fails.
    let mut qe = d.bytes.clone();
    let qe_report_at = 632 + 4 + 64 + 64 + 6;
    qe[qe_report_at + 257] ^= 1;
    let e = verify(&qe).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Verification {
                step: "QE report",
                ..
            }
        ),
        "{e}"
    );

    // The same quote against a root that is not Intel's.
    let other = TdxRoots::empty().with_root(att::TrustAnchor::Custom, vec![0x30, 0x00]);
    let e = att::tdx::verify(
        &att::tdx::TdxQuote::parse(&d.bytes).unwrap(),
        &c,
        &other,
        now,
    )
    .unwrap_err();
    assert!(e.to_string().contains("not a trusted root"), "{e}");
}

#[test]
fn verifier_front_door_reads_files_and_matches_tee_to_collateral() {
    let Some(dir) = vectors() else { return };
    let d = att::verifier::read_evidence(&dir.join("tdx/dcapqvl_tdx-quote.hex")).unwrap();
    assert_eq!(d.encoding, att::evidence::InputEncoding::Hex);
    let c = Collateral::load(
        att::Tee::Tdx,
        &[dir.join("tdx/dcapqvl_tdx_quote_collateral.json")],
    )
    .unwrap();
    // Collateral for another platform (FMSPC) → verification fails, not a panic.
    let e = att::verifier::verify(&d, &c, &Anchors::production(), at("2025-07-19T10:00:34Z"))
        .unwrap_err();
    assert!(
        matches!(
            e.category(),
            att::ErrorCategory::Verification | att::ErrorCategory::Rejected
        ),
        "{e}"
    );
}
