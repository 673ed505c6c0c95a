//! The simulated TDX platform, seen from outside the crate: its quotes and
//! collateral go through the real `dcap-qvl` verifier unchanged.

use chrysalis_attestation::tdx::TdxQuote;
use chrysalis_sim::tdx::{
    SimQuoteVersion, SimTdInput, SimTdx, SimTdxOptions, SimTdxPki, SIM_USER_DATA_PREFIX,
};
use dcap_qvl::verify::QuoteVerifier;
use time::{Duration, OffsetDateTime};

fn secs(t: OffsetDateTime) -> u64 {
    t.unix_timestamp() as u64
}

fn input(version: SimQuoteVersion) -> SimTdInput {
    SimTdInput {
        mrtd: [0xa1; 48],
        rtmr: [[0xb0; 48], [0xb1; 48], [0xb2; 48], [0xb3; 48]],
        report_data: [0xcd; 64],
        version,
        ..SimTdInput::default()
    }
}

#[test]
fn sim_quotes_verify_against_the_sim_root_only() {
    let now = OffsetDateTime::now_utc();
    let sim = SimTdx::new(now, &SimTdxOptions::default()).unwrap();
    let verifier = QuoteVerifier::new(sim.root_ca_der().to_vec());

    for version in [SimQuoteVersion::V4, SimQuoteVersion::V5] {
        let quote = sim.quote(&input(version));

        let parsed = TdxQuote::parse(&quote).unwrap();
        assert!(parsed.header.user_data.starts_with(SIM_USER_DATA_PREFIX));
        assert_eq!(parsed.td_report().mrtd, [0xa1; 48]);
        assert_eq!(
            parsed.pck_chain_pem().unwrap(),
            sim.pki().pck_chain_pem().as_bytes()
        );

        let report = verifier
            .verify(&quote, &sim.collateral(), secs(now))
            .unwrap();
        assert_eq!(report.status, "UpToDate");
        assert_eq!(report.report.as_td10().unwrap().report_data, [0xcd; 64]);

        // Intel's production root must never accept simulated evidence.
        assert!(QuoteVerifier::new_prod()
            .verify(&quote, &sim.collateral(), secs(now))
            .is_err());
    }
}

#[test]
fn collateral_survives_json_round_trip() {
    // What `sim` writes next to evidence files is QuoteCollateralV3 as JSON
    // (byte fields as hex); it must verify the same after reading it back.
    let now = OffsetDateTime::now_utc();
    let sim = SimTdx::new(now, &SimTdxOptions::default()).unwrap();
    let json = serde_json::to_string(&sim.collateral()).unwrap();
    let back: dcap_qvl::QuoteCollateralV3 = serde_json::from_str(&json).unwrap();
    assert_eq!(back, sim.collateral());
    QuoteVerifier::new(sim.root_ca_der().to_vec())
        .verify(&sim.quote(&input(SimQuoteVersion::V4)), &back, secs(now))
        .unwrap();
}

#[test]
fn out_of_date_platform_reports_advisories() {
    let now = OffsetDateTime::now_utc();
    let sim = SimTdx::new(
        now,
        &SimTdxOptions::default().out_of_date(&["INTEL-SA-00837"]),
    )
    .unwrap();
    let report = QuoteVerifier::new(sim.root_ca_der().to_vec())
        .verify(
            &sim.quote(&input(SimQuoteVersion::V5)),
            &sim.collateral(),
            secs(now),
        )
        .unwrap();
    assert_eq!(report.status, "OutOfDate");
    assert_eq!(report.advisory_ids, ["INTEL-SA-00837"]);
}

#[test]
fn stale_revoked_and_debug_evidence_fail() {
    let now = OffsetDateTime::now_utc();
    let sim = SimTdx::new(now, &SimTdxOptions::default()).unwrap();
    let verifier = QuoteVerifier::new(sim.root_ca_der().to_vec());
    let quote = sim.quote(&input(SimQuoteVersion::V4));

    let expired = verifier
        .verify(&quote, &sim.collateral(), secs(now + Duration::days(31)))
        .unwrap_err();
    assert!(format!("{expired:#}").contains("CrlExpired"), "{expired:#}");

    let revoked = SimTdx::new(now, &SimTdxOptions::default().revoke_pck(true)).unwrap();
    let err = QuoteVerifier::new(revoked.root_ca_der().to_vec())
        .verify(
            &revoked.quote(&input(SimQuoteVersion::V4)),
            &revoked.collateral(),
            secs(now),
        )
        .unwrap_err();
    assert!(format!("{err:#}").contains("CertRevoked"), "{err:#}");

    let debug = sim.quote(&SimTdInput {
        debug: true,
        ..input(SimQuoteVersion::V4)
    });
    let err = verifier
        .verify(&debug, &sim.collateral(), secs(now))
        .unwrap_err();
    assert_eq!(err.to_string(), "Debug mode is enabled");
}

#[test]
fn pki_values_match_the_quote() {
    let now = OffsetDateTime::now_utc();
    let pki = SimTdxPki::generate(now).unwrap();
    let tcb = pki.tcb_values();
    let qe = pki.qe_identity_values();
    let ext = dcap_qvl::intel::parse_pck_extension(pki.pck_cert_der()).unwrap();
    assert_eq!(ext.cpu_svn, tcb.cpu_svn);
    assert_eq!(ext.pce_svn, tcb.pce_svn);
    assert_eq!(ext.fmspc, pki.fmspc());

    let tcb_info: dcap_qvl::TcbInfo = serde_json::from_str(pki.tcb_info_json()).unwrap();
    assert_eq!(tcb_info.id, "TDX");
    assert_eq!(tcb_info.fmspc, hex::encode_upper(pki.fmspc()));
    let qe_id: dcap_qvl::QeIdentity = serde_json::from_str(pki.qe_identity_json()).unwrap();
    assert_eq!(qe_id.id, "TD_QE");
    assert_eq!(qe_id.mrsigner, qe.mr_signer);
    assert_eq!(qe_id.isvprodid, qe.isv_prod_id);
}
