//! The simulated TEE runs the real verification path end to end, and the
//! negative cases of the attestation core each fail with their own error.

use chrysalis_attestation as att;

use att::provider::EvidenceProvider;
use att::tdx::{TdxCollateral, TdxRoots};
use att::verifier::{Anchors, Collateral};
use att::{CheckContext, Error, Policy, Tee, TrustAnchor};
use chrysalis_sim::tdx::{SimTdInput, SimTdx, SimTdxOptions};
use chrysalis_sim::SimProvider;
use time::OffsetDateTime;

fn collateral_of(sim: &SimTdx) -> TdxCollateral {
    TdxCollateral {
        v3: sim.collateral(),
        simulated_root_ca: Some(sim.pki().root_ca_der().to_vec()),
    }
}

#[test]
fn sim_tdx_and_snp_verify_as_simulated_and_the_default_policy_rejects_them() {
    for tee in [Tee::Tdx, Tee::Snp] {
        let sim = SimProvider::new(tee).unwrap();
        let rd = [7u8; 64];
        let raw = sim.evidence(&rd).unwrap();
        let decoded = att::evidence::decode(&raw.bytes).unwrap();
        let collateral = match tee {
            Tee::Tdx => Collateral::Tdx(sim.tdx_collateral().unwrap()),
            Tee::Snp => Collateral::Snp(sim.snp_certificates().unwrap()),
        };
        let now = OffsetDateTime::now_utc();
        let ev = att::verifier::verify(&decoded, &collateral, &Anchors::production(), now).unwrap();
        assert_eq!(ev.anchor(), TrustAnchor::Simulated, "{tee}");
        assert_eq!(ev.report_data(), &rd);
        let d = Policy::default().check(&ev, &CheckContext::default());
        assert!(!d.accepted && d.simulated);
        assert!(d.reasons[0].contains("SIMULATED"));
        let d = Policy::default()
            .allow_simulated(true)
            .check(&ev, &CheckContext::default());
        assert!(d.accepted, "{tee}: {:?}", d.reasons);
        assert!(d.warnings.iter().any(|w| w.contains("SIMULATED")));
    }
}

#[test]
fn sim_quote_against_production_roots_only_is_a_chain_to_another_root() {
    let sim = SimTdx::new(OffsetDateTime::now_utc(), &SimTdxOptions::default()).unwrap();
    let quote = sim.quote(&SimTdInput::default());
    let mut c = collateral_of(&sim);
    c.simulated_root_ca = None; // no simulated anchor offered
    let e = att::tdx::verify(
        &att::tdx::TdxQuote::parse(&quote).unwrap(),
        &c,
        &TdxRoots::production(),
        OffsetDateTime::now_utc(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Verification {
                step: "PCK chain",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("SIMULATED"), "{e}");
}

#[test]
fn debug_td_is_authentic_but_rejected_by_policy() {
    let sim = SimTdx::new(OffsetDateTime::now_utc(), &SimTdxOptions::default()).unwrap();
    let quote = sim.quote(&SimTdInput {
        debug: true,
        ..Default::default()
    });
    let ev = att::tdx::verify(
        &att::tdx::TdxQuote::parse(&quote).unwrap(),
        &collateral_of(&sim),
        &TdxRoots::empty(),
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    assert!(ev.debug());
    let d = Policy::default()
        .allow_simulated(true)
        .check(&ev, &CheckContext::default());
    assert!(!d.accepted);
    assert_eq!(d.reasons.len(), 1, "{:?}", d.reasons);
    assert!(d.reasons[0].contains("debug TD"), "{:?}", d.reasons);
}

#[test]
fn revoked_pck_fails_with_a_revocation_error() {
    let sim = SimTdx::new(
        OffsetDateTime::now_utc(),
        &SimTdxOptions::default().revoke_pck(true),
    )
    .unwrap();
    let quote = sim.quote(&SimTdInput::default());
    let e = att::tdx::verify(
        &att::tdx::TdxQuote::parse(&quote).unwrap(),
        &collateral_of(&sim),
        &TdxRoots::empty(),
        OffsetDateTime::now_utc(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::Revoked(_)), "{e:?}");
}

#[test]
fn out_of_date_tcb_names_advisories_and_is_rejected_unless_accepted() {
    let sim = SimTdx::new(
        OffsetDateTime::now_utc(),
        &SimTdxOptions::default().out_of_date(&["INTEL-SA-00837"]),
    )
    .unwrap();
    let quote = sim.quote(&SimTdInput::default());
    let ev = att::tdx::verify(
        &att::tdx::TdxQuote::parse(&quote).unwrap(),
        &collateral_of(&sim),
        &TdxRoots::empty(),
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    assert_eq!(ev.tcb_status(), att::TcbStatus::OutOfDate);
    assert_eq!(ev.advisory_ids(), ["INTEL-SA-00837".to_string()]);
    let policy = Policy::default().allow_simulated(true);
    let d = policy.check(&ev, &CheckContext::default());
    assert!(!d.accepted);
    assert!(
        d.reasons[0].contains("OutOfDate") && d.reasons[0].contains("INTEL-SA-00837"),
        "{:?}",
        d.reasons
    );
    let d = policy
        .clone()
        .accept_tcb([att::TcbStatus::OutOfDate])
        .check(&ev, &CheckContext::default());
    assert!(d.accepted, "{:?}", d.reasons);
}

#[test]
fn report_data_mismatch_and_unlisted_measurement_are_both_reported() {
    let sim = SimTdx::new(OffsetDateTime::now_utc(), &SimTdxOptions::default()).unwrap();
    let quote = sim.quote(&SimTdInput {
        mrtd: [0x11; 48],
        report_data: [1; 64],
        ..Default::default()
    });
    let ev = att::tdx::verify(
        &att::tdx::TdxQuote::parse(&quote).unwrap(),
        &collateral_of(&sim),
        &TdxRoots::empty(),
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    let policy = Policy::from_toml(&format!(
        "allow_simulated = true\n[[tdx.measurements]]\nname = \"v1\"\nmrtd = \"{}\"\n",
        "22".repeat(48)
    ))
    .unwrap();
    let d = policy.check(
        &ev,
        &CheckContext {
            expected_report_data: Some([2; 64]),
            ..Default::default()
        },
    );
    assert!(!d.accepted);
    assert_eq!(d.reasons.len(), 2, "{:?}", d.reasons);
    assert!(d.reasons.iter().any(|r| r.contains("report_data")));
    assert!(d
        .reasons
        .iter()
        .any(|r| r.starts_with("MRTD") && r.contains("v1")));
}

#[test]
fn expired_sim_collateral_fails_closed() {
    let sim = SimTdx::new(OffsetDateTime::now_utc(), &SimTdxOptions::default()).unwrap();
    let quote = sim.quote(&SimTdInput::default());
    let later = OffsetDateTime::now_utc() + time::Duration::days(45);
    let e = att::tdx::verify(
        &att::tdx::TdxQuote::parse(&quote).unwrap(),
        &collateral_of(&sim),
        &TdxRoots::empty(),
        later,
    )
    .unwrap_err();
    assert!(matches!(e, Error::StaleCollateral(_)), "{e:?}");
    assert!(e.to_string().contains("days ago"), "{e}");
}

#[test]
fn collateral_round_trips_through_a_pcs_directory_and_json() {
    let sim = SimTdx::new(OffsetDateTime::now_utc(), &SimTdxOptions::default()).unwrap();
    let quote = sim.quote(&SimTdInput::default());
    let c = collateral_of(&sim);
    let dir = tempfile::tempdir().unwrap();
    c.write_dir(dir.path()).unwrap();
    let from_dir = TdxCollateral::load(dir.path()).unwrap();
    let from_json = TdxCollateral::from_json(&c.to_json()).unwrap();
    for c2 in [from_dir, from_json] {
        assert_eq!(c2.fingerprint(), c.fingerprint());
        att::tdx::verify(
            &att::tdx::TdxQuote::parse(&quote).unwrap(),
            &c2,
            &TdxRoots::empty(),
            OffsetDateTime::now_utc(),
        )
        .unwrap();
    }
    // Tampered TCB info in the cache: the signature check catches it.
    let mut bad = c.clone();
    bad.v3.tcb_info = bad.v3.tcb_info.replace("UpToDate", "UpToDatf");
    assert!(att::tdx::verify(
        &att::tdx::TdxQuote::parse(&quote).unwrap(),
        &bad,
        &TdxRoots::empty(),
        OffsetDateTime::now_utc()
    )
    .is_err());
}

#[test]
fn verification_cache_returns_the_same_result_and_is_bounded() {
    let sim = SimTdx::new(OffsetDateTime::now_utc(), &SimTdxOptions::default()).unwrap();
    let c = collateral_of(&sim);
    let cache = att::cache::VerificationCache::new(2, std::time::Duration::from_secs(60));
    let now = OffsetDateTime::now_utc();
    let fp = c.fingerprint();
    let mut calls = 0;
    for i in 0..3u8 {
        let q = sim.quote(&SimTdInput {
            report_data: [i; 64],
            ..Default::default()
        });
        for _ in 0..2 {
            let ev = cache
                .get_or_verify(att::cache::VerificationCache::key(&q, &fp), now, || {
                    calls += 1;
                    att::tdx::verify(
                        &att::tdx::TdxQuote::parse(&q).unwrap(),
                        &c,
                        &TdxRoots::empty(),
                        now,
                    )
                })
                .unwrap();
            assert_eq!(ev.report_data(), &[i; 64]);
        }
    }
    assert_eq!(calls, 3, "each quote verified once");
    assert_eq!(cache.len(), 2, "bounded");
    // Past the TTL the entry is not served.
    let q0 = sim.quote(&SimTdInput::default());
    let key = att::cache::VerificationCache::key(&q0, &fp);
    cache
        .get_or_verify(key, now, || {
            att::tdx::verify(
                &att::tdx::TdxQuote::parse(&q0).unwrap(),
                &c,
                &TdxRoots::empty(),
                now,
            )
        })
        .unwrap();
    assert!(cache
        .lookup(&key, now + time::Duration::seconds(61))
        .is_none());
}
