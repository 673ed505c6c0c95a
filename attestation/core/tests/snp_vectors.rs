//! SEV-SNP against real public vectors (go-sev-guest, virtee/sev) and the
//! simulator. The vectors live outside the repository in
//! `../shared/vectors/snp`; tests that need them skip when it is absent.

use std::path::PathBuf;

use chrysalis_attestation::snp::verify::{step, verify_chain};
use chrysalis_attestation::snp::{
    kds_vcek_url, verify, Product, ReportLayout, SnpCertificates, SnpReport, SnpRoots,
    VekCertificate, VekKind,
};
use chrysalis_attestation::{Error, ErrorCategory, Identity, TrustAnchor};
use chrysalis_sim::snp::SimSnpAuthority;
use time::macros::datetime;
use time::OffsetDateTime;

fn vectors() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/snp");
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("skipping: ../shared/vectors not found");
        None
    }
}

macro_rules! vectors_or_skip {
    () => {
        match vectors() {
            Some(d) => d,
            None => return,
        }
    };
}

fn read(dir: &std::path::Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn virtee_report(dir: &std::path::Path) -> Vec<u8> {
    let text = String::from_utf8(read(dir, "virtee_report_milan.hex")).unwrap();
    hex::decode(text.trim()).unwrap()
}

fn step_of(e: &Error) -> &'static str {
    match e {
        Error::Verification { step, .. } => step,
        other => panic!("expected a verification error, got {other:?}"),
    }
}

fn snp_identity(
    v: &chrysalis_attestation::VerifiedEvidence,
) -> &chrysalis_attestation::verified::SnpIdentity {
    match v.identity() {
        Identity::Snp(s) => s,
        other => panic!("not SNP: {other:?}"),
    }
}

#[test]
fn gosev_v2_report_verifies_at_2023_06_01() {
    let dir = vectors_or_skip!();
    let bytes = read(&dir, "gosev_attestation_milan.bin");
    let report = SnpReport::parse(&bytes).unwrap();
    assert_eq!(report.version, 2);
    assert_eq!(report.layout(), ReportLayout::V2);
    assert_eq!(report.policy.raw(), 0x0b_0000);
    assert_eq!(report.current_version.to_string(), "1.49 (build 3)");
    let now = datetime!(2023-06-01 00:00 UTC);
    let roots = SnpRoots::production();

    // With the KDS chain supplied and with the pinned ASK/ARK only.
    let with_chain = SnpCertificates::from_files_bytes(vec![
        read(&dir, "gosev_vcek_milan.der"),
        read(&dir, "gosev_ask_ark_milan.pem"),
    ])
    .unwrap();
    assert!(with_chain.ask.is_some() && with_chain.ark.is_some());
    let pinned_only = SnpCertificates::new(read(&dir, "gosev_vcek_milan.der"));
    for certs in [with_chain, pinned_only] {
        let v = verify(&report, &certs, &roots, now).unwrap();
        assert_eq!(v.anchor(), TrustAnchor::Production);
        assert_eq!(&v.report_data()[..6], &[1, 2, 3, 4, 5, 0]);
        assert!(v.debug(), "policy 0x0b0000 has the DEBUG bit");
        let id = snp_identity(&v);
        assert_eq!(id.product, Product::Milan);
        assert!(!id.vlek);
        assert_eq!(
            (
                id.reported_tcb.bootloader(),
                id.reported_tcb.tee(),
                id.reported_tcb.snp(),
                id.reported_tcb.microcode()
            ),
            (2, 0, 5, 68)
        );
        assert_eq!(
            hex::encode(id.measurement),
            "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01"
        );
        // The VCEK (notAfter 2029-09-24) expires first.
        assert_eq!(
            v.collateral_expires(),
            Some(datetime!(2029-09-24 00:55:28 UTC))
        );
    }
}

#[test]
fn virtee_report_verifies_at_2024_01_01() {
    let dir = vectors_or_skip!();
    let report = SnpReport::parse(&virtee_report(&dir)).unwrap();
    let certs =
        SnpCertificates::from_files_bytes(vec![read(&dir, "virtee_vcek_milan.der")]).unwrap();
    let v = verify(
        &report,
        &certs,
        &SnpRoots::production(),
        datetime!(2024-01-01 00:00 UTC),
    )
    .unwrap();
    assert_eq!(v.anchor(), TrustAnchor::Production);
    assert!(!v.debug());
    assert_eq!(
        hex::encode(v.report_data()),
        "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c645810b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd"
    );
    let id = snp_identity(&v);
    assert_eq!(id.reported_tcb.snp(), 8);
    assert_eq!(id.reported_tcb.microcode(), 0x73);
}

#[test]
fn real_reports_reserialise_to_identical_bytes() {
    let dir = vectors_or_skip!();
    for bytes in [
        read(&dir, "gosev_attestation_milan.bin"),
        virtee_report(&dir),
        read(&dir, "virtee_report_milan_TAMPERED_byte21.bin"),
    ] {
        let report = SnpReport::parse(&bytes).unwrap();
        assert_eq!(report.to_bytes(), bytes);
        assert_eq!(report.signed_bytes(), bytes[..0x2A0]);
    }
}

#[test]
fn tampered_report_fails_the_signature() {
    let dir = vectors_or_skip!();
    let report = SnpReport::parse(&read(&dir, "virtee_report_milan_TAMPERED_byte21.bin")).unwrap();
    let certs = SnpCertificates::new(read(&dir, "virtee_vcek_milan.der"));
    let e = verify(
        &report,
        &certs,
        &SnpRoots::production(),
        datetime!(2024-01-01 00:00 UTC),
    )
    .unwrap_err();
    assert_eq!(step_of(&e), step::REPORT_SIGNATURE, "{e}");
    assert_eq!(e.category(), ErrorCategory::Verification);
}

#[test]
fn vcek_with_flipped_byte_40_fails_the_chain() {
    let dir = vectors_or_skip!();
    let report = SnpReport::parse(&virtee_report(&dir)).unwrap();
    let mut vcek = read(&dir, "virtee_vcek_milan.der");
    vcek[40] ^= 0xff;
    // The chain as KDS serves it, so that only the VCEK is wrong.
    let certs =
        SnpCertificates::from_files_bytes(vec![vcek, read(&dir, "gosev_ask_ark_milan.pem")])
            .unwrap();
    let e = verify(
        &report,
        &certs,
        &SnpRoots::production(),
        datetime!(2024-01-01 00:00 UTC),
    )
    .unwrap_err();
    assert_eq!(step_of(&e), step::CHAIN, "{e}");
    assert!(e.to_string().contains("VCEK is not signed by ASK"), "{e}");
}

#[test]
fn certificate_files_sort_by_role() {
    let dir = vectors_or_skip!();
    let vcek = read(&dir, "gosev_vcek_milan.der");
    let chain = read(&dir, "gosev_ask_ark_milan.pem");
    // Order does not matter; the same certificate twice counts once.
    let a = SnpCertificates::from_files_bytes(vec![chain.clone(), vcek.clone(), chain.clone()])
        .unwrap();
    assert_eq!(a.vek, vcek);
    assert!(a.ask.is_some() && a.ark.is_some());
    // Two different chains, or no VCEK at all, are refused.
    let e = SnpCertificates::from_files_bytes(vec![
        vcek.clone(),
        chain.clone(),
        read(&dir, "gosev_ask_ark_genoa.pem"),
    ])
    .unwrap_err();
    assert!(e.to_string().contains("two different ASK/ASVK"), "{e}");
    let e = SnpCertificates::from_files_bytes(vec![chain]).unwrap_err();
    assert_eq!(e.category(), ErrorCategory::Malformed);
}

#[test]
fn vcek_of_the_other_report_is_a_tcb_mismatch() {
    let dir = vectors_or_skip!();
    let gosev = SnpReport::parse(&read(&dir, "gosev_attestation_milan.bin")).unwrap();
    let virtee = SnpReport::parse(&virtee_report(&dir)).unwrap();
    let gosev_vcek = SnpCertificates::new(read(&dir, "gosev_vcek_milan.der"));
    let virtee_vcek = SnpCertificates::new(read(&dir, "virtee_vcek_milan.der"));
    let now = datetime!(2024-01-01 00:00 UTC);
    let roots = SnpRoots::production();

    let e = verify(&gosev, &virtee_vcek, &roots, now).unwrap_err();
    assert_eq!(step_of(&e), step::TCB, "{e}");
    assert!(e.to_string().contains("blSPL differs"), "{e}");

    // Same TCB, other chip: copy the TCB over so that only the chip differs.
    let mut other_chip = virtee.clone();
    other_chip.chip_id = gosev.chip_id;
    let e = verify(&other_chip, &virtee_vcek, &roots, now).unwrap_err();
    assert_eq!(step_of(&e), step::CHIP_ID, "{e}");

    let mut wrong_tcb = gosev.clone();
    wrong_tcb.reported_tcb = virtee.reported_tcb;
    let e = verify(&wrong_tcb, &gosev_vcek, &roots, now).unwrap_err();
    assert_eq!(step_of(&e), step::TCB, "{e}");
}

#[test]
fn verification_in_2031_is_stale() {
    let dir = vectors_or_skip!();
    let report = SnpReport::parse(&virtee_report(&dir)).unwrap();
    let certs = SnpCertificates::new(read(&dir, "virtee_vcek_milan.der"));
    let e = verify(
        &report,
        &certs,
        &SnpRoots::production(),
        datetime!(2031-01-01 00:00 UTC),
    )
    .unwrap_err();
    match &e {
        // VCEK notAfter 2030-04-03T19:23:43Z: 272 whole days before.
        Error::StaleCollateral(msg) => {
            assert!(msg.starts_with("VCEK certificate"), "{msg}");
            assert!(msg.contains("expired 272 days ago"), "{msg}");
            assert!(msg.contains("2030-04-03T19:23:43Z"), "{msg}");
        }
        other => panic!("expected stale collateral, got {other:?}"),
    }
    // Before the VCEK existed.
    let e = verify(
        &report,
        &certs,
        &SnpRoots::production(),
        datetime!(2023-01-01 00:00 UTC),
    )
    .unwrap_err();
    assert!(
        matches!(&e, Error::StaleCollateral(m) if m.contains("not valid yet")),
        "{e}"
    );
}

#[test]
fn turin_vcek_parses_and_chains_to_the_pinned_turin_root() {
    let dir = vectors_or_skip!();
    let der = read(&dir, "virtee_vcek_turin.der");
    let vcek = VekCertificate::parse(&der).unwrap();
    assert_eq!(vcek.kind(), VekKind::Vcek);
    assert_eq!(vcek.product(), Some(Product::Turin));
    assert_eq!(vcek.product_name(), Some("Turin"));
    assert_eq!(
        vcek.hw_id().map(hex::encode).as_deref(),
        Some("1e550a8ee5cf9f4d")
    );
    let tcb = vcek.tcb();
    assert_eq!(
        (tcb.fmc, tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode),
        (Some(0), Some(0), Some(0), Some(0), Some(9))
    );
    let now = datetime!(2025-06-01 00:00 UTC);
    let roots = SnpRoots::production();
    let with_chain = SnpCertificates::from_files_bytes(vec![
        der.clone(),
        read(&dir, "gosev_ask_ark_turin_vcek.pem"),
    ])
    .unwrap();
    for certs in [with_chain.clone(), SnpCertificates::new(der.clone())] {
        let chain = verify_chain(&certs, None, &roots, now).unwrap();
        assert_eq!(chain.product, Product::Turin);
        assert_eq!(chain.anchor, TrustAnchor::Production);
    }
    // The Milan chain is not Turin's.
    let milan = SnpCertificates::from_files_bytes(vec![der, read(&dir, "gosev_ask_ark_milan.pem")])
        .unwrap();
    let e = verify_chain(&milan, None, &roots, now).unwrap_err();
    assert_eq!(step_of(&e), step::ROOT, "{e}");
    assert!(
        e.to_string()
            .contains("ARK is not the pinned AMD root for Turin"),
        "{e}"
    );
}

#[test]
fn milan_vcek_with_the_genoa_chain_names_the_root() {
    let dir = vectors_or_skip!();
    let report = SnpReport::parse(&read(&dir, "gosev_attestation_milan.bin")).unwrap();
    let certs = SnpCertificates::from_files_bytes(vec![
        read(&dir, "gosev_vcek_milan.der"),
        read(&dir, "gosev_ask_ark_genoa.pem"),
    ])
    .unwrap();
    let e = verify(
        &report,
        &certs,
        &SnpRoots::production(),
        datetime!(2023-06-01 00:00 UTC),
    )
    .unwrap_err();
    assert_eq!(step_of(&e), step::ROOT, "{e}");
    assert!(
        e.to_string()
            .contains("ARK is not the pinned AMD root for Milan"),
        "{e}"
    );
}

#[test]
fn vlek_chains_sort_and_pin() {
    let dir = vectors_or_skip!();
    // No VLEK report exists in the vectors; the ASVK chain must still be
    // recognised, and a VCEK under an ASVK rejected by role.
    let certs = SnpCertificates::from_files_bytes(vec![
        read(&dir, "gosev_vcek_milan.der"),
        read(&dir, "gosev_ask_ark_milan_vlek.pem"),
    ])
    .unwrap();
    let e = verify_chain(
        &certs,
        None,
        &SnpRoots::production(),
        datetime!(2023-06-01 00:00 UTC),
    )
    .unwrap_err();
    assert_eq!(step_of(&e), step::CHAIN, "{e}");
    assert!(e.to_string().contains("SEV-VLEK-Milan"), "{e}");
}

#[test]
fn kds_url_for_the_gosev_report() {
    let dir = vectors_or_skip!();
    let report = SnpReport::parse(&read(&dir, "gosev_attestation_milan.bin")).unwrap();
    assert_eq!(
        kds_vcek_url(Product::Milan, &report.chip_id, &report.reported_tcb),
        "https://kdsintf.amd.com/vcek/v1/Milan/3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e53786184ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d?blSPL=2&teeSPL=0&snpSPL=5&ucodeSPL=68"
    );
}

// ---- simulator: no vectors needed ----

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

#[test]
fn sim_report_verifies_as_simulated() {
    let sim = SimSnpAuthority::generate().unwrap();
    let bytes = sim.report([0x11; 64], [0x22; 48], [0x33; 32]);
    assert_eq!(bytes.len(), 1184);
    let report = SnpReport::parse(&bytes).unwrap();
    assert_eq!(report.version, 3);
    assert!(report.chip_id.starts_with(b"CHRYSALIS-SIMULATED"));
    assert!(!report.policy.debug());
    let certs = SnpCertificates::from_files_bytes(vec![sim.chain_pem().into_bytes()]).unwrap();
    let v = verify(&report, &certs, &sim.roots(), now()).unwrap();
    assert_eq!(v.anchor(), TrustAnchor::Simulated);
    assert!(v.is_simulated());
    assert_eq!(v.report_data(), &[0x11; 64]);
    let id = snp_identity(&v);
    assert_eq!(id.measurement, [0x22; 48]);
    assert_eq!(id.host_data, [0x33; 32]);
    assert_eq!(id.product, Product::Milan);

    // With only the VCEK: the simulated root supplies ARK, but not the ASK.
    let e = verify(
        &report,
        &SnpCertificates::new(sim.vcek_der().to_vec()),
        &sim.roots(),
        now(),
    )
    .unwrap_err();
    assert_eq!(step_of(&e), step::ROOT, "{e}");
}

#[test]
fn sim_report_with_one_bit_flipped_fails() {
    let sim = SimSnpAuthority::generate().unwrap();
    let good = sim.report([1; 64], [2; 48], [3; 32]);
    // A bit in report_data, one in the measurement, one in the signature.
    for bit in [0x50 * 8 + 3, 0x90 * 8, 0x2A0 * 8 + 5] {
        let mut bytes = good.clone();
        bytes[bit / 8] ^= 1 << (bit % 8);
        let report = SnpReport::parse(&bytes).unwrap();
        let e = verify(&report, &sim.certificates(), &sim.roots(), now()).unwrap_err();
        assert_eq!(step_of(&e), step::REPORT_SIGNATURE, "bit {bit}: {e}");
    }
}

#[test]
fn sim_evidence_is_never_production() {
    let sim = SimSnpAuthority::generate().unwrap();
    let report = SnpReport::parse(&sim.report([0; 64], [0; 48], [0; 32])).unwrap();
    let production = SnpRoots::production();

    // Production roots alone: the simulated ARK is not pinned.
    let e = verify(&report, &sim.certificates(), &production, now()).unwrap_err();
    assert_eq!(step_of(&e), step::ROOT, "{e}");
    assert!(
        e.to_string()
            .contains("ARK is not the pinned AMD root for Milan"),
        "{e}"
    );
    assert!(e.to_string().contains("ARK-Chrysalis-SIMULATED"), "{e}");

    // Production roots and no ARK supplied: the pinned Milan ARK/ASK are
    // used, and the simulated VCEK does not chain to them.
    let e = verify(
        &report,
        &SnpCertificates::new(sim.vcek_der().to_vec()),
        &production,
        now(),
    )
    .unwrap_err();
    assert_eq!(step_of(&e), step::CHAIN, "{e}");

    // Production and simulated roots together: Simulated.
    let both = SnpRoots::production().and(sim.roots());
    let v = verify(&report, &sim.certificates(), &both, now()).unwrap();
    assert_eq!(v.anchor(), TrustAnchor::Simulated);

    // A caller claiming the simulated ARK is a production root: still Simulated.
    let claimed = SnpRoots::with_ark(
        Product::Milan,
        sim.ark_der().to_vec(),
        TrustAnchor::Production,
    );
    let v = verify(&report, &sim.certificates(), &claimed, now()).unwrap();
    assert_eq!(v.anchor(), TrustAnchor::Simulated);
}

#[test]
fn sim_roots_do_not_accept_another_authority() {
    let a = SimSnpAuthority::generate().unwrap();
    let b = SimSnpAuthority::generate().unwrap();
    let report = SnpReport::parse(&a.report([0; 64], [0; 48], [0; 32])).unwrap();
    // b's certificates against a's roots: b's ARK is not trusted.
    let e = verify(&report, &b.certificates(), &a.roots(), now()).unwrap_err();
    assert_eq!(step_of(&e), step::ROOT, "{e}");
    // b's chain with b's roots: same TCB, other chip.
    let e = verify(&report, &b.certificates(), &b.roots(), now()).unwrap_err();
    assert_eq!(step_of(&e), step::CHIP_ID, "{e}");
    // a's VCEK under b's ASK: the chain breaks.
    let mixed = SnpCertificates::new(a.vcek_der().to_vec())
        .with_chain(b.ask_der().to_vec(), b.ark_der().to_vec());
    let e = verify(&report, &mixed, &b.roots(), now()).unwrap_err();
    assert_eq!(step_of(&e), step::CHAIN, "{e}");
}

#[test]
fn sim_v5_report_round_trips_and_verifies() {
    let sim = SimSnpAuthority::generate().unwrap();
    let mut report = sim.unsigned_report([5; 64], [6; 48], [7; 32]);
    report.version = 5;
    report.launch_mit_vector = Some(0x1);
    report.current_mit_vector = Some(0x3);
    sim.sign(&mut report);
    let bytes = report.to_bytes();
    assert_eq!(&bytes[0x1F8..0x200], &1u64.to_le_bytes());
    assert_eq!(&bytes[0x200..0x208], &3u64.to_le_bytes());
    let parsed = SnpReport::parse(&bytes).unwrap();
    assert_eq!(parsed, report);
    assert_eq!(parsed.layout(), ReportLayout::V5);
    let v = verify(&parsed, &sim.certificates(), &sim.roots(), now()).unwrap();
    assert_eq!(v.anchor(), TrustAnchor::Simulated);
}

#[test]
fn sim_debug_policy_and_signing_key_are_reported() {
    let sim = SimSnpAuthority::generate().unwrap();
    let mut report = sim.unsigned_report([0; 64], [0; 48], [0; 32]);
    report.policy.0 |= 1 << 19;
    sim.sign(&mut report);
    let v = verify(&report, &sim.certificates(), &sim.roots(), now()).unwrap();
    assert!(v.debug());

    // The report claims a VLEK signed it, but a VCEK is presented.
    let mut vlek_claim = sim.unsigned_report([0; 64], [0; 48], [0; 32]);
    vlek_claim.key_info.0 = 1 << 2;
    sim.sign(&mut vlek_claim);
    let e = verify(&vlek_claim, &sim.certificates(), &sim.roots(), now()).unwrap_err();
    assert_eq!(step_of(&e), step::SIGNING_KEY, "{e}");

    // An unknown signature algorithm.
    let mut algo = sim.unsigned_report([0; 64], [0; 48], [0; 32]);
    algo.sig_algo = 2;
    sim.sign(&mut algo);
    let e = verify(&algo, &sim.certificates(), &sim.roots(), now()).unwrap_err();
    assert_eq!(step_of(&e), step::REPORT_SIGNATURE, "{e}");
}

#[test]
fn sim_expired_hierarchy_is_stale() {
    let not_after = now() - time::Duration::days(3) - time::Duration::hours(1);
    let sim =
        SimSnpAuthority::generate_with_validity(not_after - time::Duration::days(30), not_after)
            .unwrap();
    let report = SnpReport::parse(&sim.report([0; 64], [0; 48], [0; 32])).unwrap();
    let e = verify(&report, &sim.certificates(), &sim.roots(), now()).unwrap_err();
    assert!(
        matches!(&e, Error::StaleCollateral(m) if m.contains("ARK certificate") && m.contains("expired 3 days ago")),
        "{e}"
    );
}
