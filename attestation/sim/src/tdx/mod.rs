//! Simulated Intel TDX: an Intel-shaped PKI, collateral and quotes generated
//! at run time.
//!
//! Chrysalis verifies TDX quotes with `dcap-qvl`, the same code path for real
//! and simulated evidence. To run that path on a machine without a TEE, this
//! module builds everything Intel's PCS would serve, but rooted in a fresh
//! P-256 key instead of Intel's SGX Root CA:
//!
//! ```text
//! Chrysalis SIMULATED SGX Root CA (self-signed, pathlen 1)
//! ├── Chrysalis SIMULATED SGX PCK Platform CA (pathlen 0)
//! │   └── PCK certificate (Intel SGX extension: PPID, TCB, PCE-ID, FMSPC, ...)
//! └── Chrysalis SIMULATED SGX TCB Signing (signs TCB info and QE identity)
//! ```
//!
//! plus a root CA CRL, a PCK CRL, TCB info and TD_QE identity JSON with their
//! signatures, assembled as a [`dcap_qvl::QuoteCollateralV3`]. [`SimTdx`]
//! turns a [`SimTdInput`] into a complete v4 or v5 quote whose QE report is
//! signed by the PCK key and whose body is signed by an attestation key.
//!
//! Nothing here is secret or trustworthy: every key is generated per
//! instance and lives in memory. A verifier that pins Intel's production
//! root rejects all of it; a verifier given [`SimTdxPki::root_ca_der`] accepts
//! it, which is why such evidence is reported as
//! [`chrysalis_attestation::TrustAnchor::Simulated`].
//!
//! All signatures are ECDSA-P256-SHA256. Raw signatures are `r ‖ s`, each 32
//! bytes big-endian; raw public keys are `x ‖ y`, each 32 bytes big-endian,
//! without the SEC1 `0x04` prefix — the encodings of the DCAP quote format.
//!
//! Rooms, along those seams:
//!
//! * `pki`: the certificate hierarchy above, the CRLs and [`SimTdxPki`];
//! * `collateral`: the TCB info and QE identity JSON, assembled in Intel's
//!   field order and signed by the TCB signing key;
//! * `quote`: [`SimTdx`], assembling header, TD report body, QE report and
//!   signatures for a [`SimTdInput`];
//! * `platform`: the simulated platform's fixed values (FMSPC, TCB, QE
//!   identity) that all three must agree on;
//! * `options`: [`SimTdxOptions`], the collateral knobs;
//! * `key`: the P-256 key type signing both DCAP data and X.509.
//!
//! Everything public is re-exported here: `chrysalis_sim::tdx::*`.

mod collateral;
mod key;
mod options;
mod pki;
mod platform;
mod quote;

pub use self::options::{SimTcbStatus, SimTdxOptions};
pub use self::pki::{
    SimTdxPki, SIM_PCK_CN, SIM_PCK_PLATFORM_CA_CN, SIM_ROOT_CA_CN, SIM_TCB_SIGNING_CN,
};
pub use self::platform::{SimQeIdentityValues, SimTcbValues, SIM_FMSPC};
pub use self::quote::{
    SimQuoteVersion, SimTdInput, SimTdx, SIM_TD_ATTRIBUTES, SIM_USER_DATA_PREFIX, SIM_XFAM,
};

#[cfg(test)]
mod tests {
    use super::*;
    use chrysalis_attestation::tdx::quote::{CertificationData, TdxQuote};
    use dcap_qvl::verify::QuoteVerifier;
    use time::{Duration, OffsetDateTime};

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn secs(t: OffsetDateTime) -> u64 {
        t.unix_timestamp() as u64
    }

    fn td() -> SimTdInput {
        SimTdInput {
            mrtd: [0x11; 48],
            rtmr: [[0x21; 48], [0x22; 48], [0x23; 48], [0x24; 48]],
            report_data: [0x5a; 64],
            ..SimTdInput::default()
        }
    }

    /// dcap-qvl's error with its whole context chain.
    fn verify_err(sim: &SimTdx, quote: &[u8], at: OffsetDateTime) -> String {
        let err = QuoteVerifier::new(sim.root_ca_der().to_vec())
            .verify(quote, &sim.collateral(), secs(at))
            .expect_err("verification should fail");
        format!("{err:#}")
    }

    #[test]
    fn generation_is_fast() {
        let start = std::time::Instant::now();
        let sim = SimTdx::new(now(), &SimTdxOptions::default()).unwrap();
        let _ = sim.quote(&td());
        let took = start.elapsed();
        // Generous bound for debug builds on slow CI; typically a few ms.
        assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
    }

    #[test]
    fn quote_round_trips_and_is_marked() {
        let sim = SimTdx::new(now(), &SimTdxOptions::default()).unwrap();
        for version in [SimQuoteVersion::V4, SimQuoteVersion::V5] {
            let bytes = sim.quote(&SimTdInput { version, ..td() });
            let parsed = TdxQuote::parse(&bytes).unwrap();
            assert_eq!(parsed.to_bytes(), bytes);
            assert!(parsed.header.user_data.starts_with(SIM_USER_DATA_PREFIX));
            assert!(parsed.claims_simulated());
            assert_eq!(parsed.td_report().report_data, [0x5a; 64]);
            let dq = dcap_qvl::quote::Quote::parse(&bytes).unwrap();
            assert_eq!(dq.header.version, parsed.header.version);
        }
    }

    #[test]
    fn up_to_date_quote_verifies() {
        let t = now();
        let sim = SimTdx::new(t, &SimTdxOptions::default()).unwrap();
        for version in [SimQuoteVersion::V4, SimQuoteVersion::V5] {
            let quote = sim.quote(&SimTdInput { version, ..td() });
            let report = QuoteVerifier::new(sim.root_ca_der().to_vec())
                .verify(&quote, &sim.collateral(), secs(t))
                .unwrap();
            assert_eq!(report.status, "UpToDate");
            assert!(report.advisory_ids.is_empty());
            assert_eq!(report.ppid, sim.pki().ppid());
            let td10 = report.report.as_td10().unwrap();
            assert_eq!(td10.report_data, [0x5a; 64]);
            assert_eq!(td10.rt_mr3, [0x24; 48]);
        }
    }

    #[test]
    fn strict_policy_accepts_up_to_date_quote() {
        let t = now();
        let sim = SimTdx::new(t, &SimTdxOptions::default()).unwrap();
        let quote = sim.quote(&td());
        let policy = dcap_qvl::QuotePolicy::strict(secs(t));
        let claims = QuoteVerifier::new(sim.root_ca_der().to_vec())
            .verify_with_policy(&quote, sim.collateral(), secs(t), &policy)
            .unwrap();
        assert_eq!(claims.tcb.status, dcap_qvl::TcbStatus::UpToDate);
    }

    #[test]
    fn out_of_date_quote_reports_advisories() {
        let t = now();
        let opts = SimTdxOptions::default().out_of_date(&["INTEL-SA-00837", "INTEL-SA-01036"]);
        let sim = SimTdx::new(t, &opts).unwrap();
        let report = QuoteVerifier::new(sim.root_ca_der().to_vec())
            .verify(&sim.quote(&td()), &sim.collateral(), secs(t))
            .unwrap();
        assert_eq!(report.status, "OutOfDate");
        assert_eq!(report.advisory_ids, ["INTEL-SA-00837", "INTEL-SA-01036"]);
    }

    #[test]
    fn expired_collateral_fails() {
        let t = now();
        let sim = SimTdx::new(t, &SimTdxOptions::default()).unwrap();
        let err = verify_err(&sim, &sim.quote(&td()), t + Duration::days(31));
        // The CRLs are checked first (root CA revocation check).
        assert!(err.contains("CrlExpired"), "{err}");
    }

    #[test]
    fn expired_tcb_info_fails() {
        let t = now();
        let opts = SimTdxOptions {
            tcb_info_next_update: Some(Duration::minutes(-30)),
            ..SimTdxOptions::default()
        };
        let sim = SimTdx::new(t, &opts).unwrap();
        let err = verify_err(&sim, &sim.quote(&td()), t);
        assert_eq!(err, "TCBInfo expired");
    }

    #[test]
    fn expired_qe_identity_fails() {
        let t = now();
        let opts = SimTdxOptions {
            qe_identity_next_update: Some(Duration::minutes(-30)),
            ..SimTdxOptions::default()
        };
        let sim = SimTdx::new(t, &opts).unwrap();
        let err = verify_err(&sim, &sim.quote(&td()), t);
        assert_eq!(err, "QE Identity expired");
    }

    #[test]
    fn revoked_pck_fails() {
        let t = now();
        let sim = SimTdx::new(t, &SimTdxOptions::default().revoke_pck(true)).unwrap();
        let err = verify_err(&sim, &sim.quote(&td()), t);
        assert!(err.contains("CertRevoked"), "{err}");

        // The same through the explicit CRL helper on otherwise good collateral.
        let sim = SimTdx::new(t, &SimTdxOptions::default()).unwrap();
        let mut collateral = sim.collateral();
        collateral.pck_crl = sim.pki().pck_crl_revoking_pck().unwrap();
        let err = QuoteVerifier::new(sim.root_ca_der().to_vec())
            .verify(&sim.quote(&td()), &collateral, secs(t))
            .unwrap_err();
        assert!(format!("{err:#}").contains("CertRevoked"), "{err:#}");
    }

    #[test]
    fn production_root_rejects_sim_quote() {
        let t = now();
        let sim = SimTdx::new(t, &SimTdxOptions::default()).unwrap();
        let err = QuoteVerifier::new_prod()
            .verify(&sim.quote(&td()), &sim.collateral(), secs(t))
            .unwrap_err();
        assert!(format!("{err:#}").contains("root CA CRL"), "{err:#}");
    }

    #[test]
    fn debug_td_fails() {
        let t = now();
        let sim = SimTdx::new(t, &SimTdxOptions::default()).unwrap();
        let quote = sim.quote(&SimTdInput {
            debug: true,
            ..td()
        });
        assert!(TdxQuote::parse(&quote).unwrap().td_report().is_debug());
        assert_eq!(verify_err(&sim, &quote, t), "Debug mode is enabled");
    }

    #[test]
    fn tampered_signatures_fail() {
        let t = now();
        let sim = SimTdx::new(t, &SimTdxOptions::default()).unwrap();

        let mut q = sim.quote_struct(&td());
        q.signature.signature[40] ^= 1;
        assert_eq!(
            verify_err(&sim, &q.to_bytes(), t),
            "ISV enclave report signature is invalid"
        );

        let mut q = sim.quote_struct(&td());
        q.body.td10_mut().report_data[0] ^= 1;
        assert_eq!(
            verify_err(&sim, &q.to_bytes(), t),
            "ISV enclave report signature is invalid"
        );

        let mut q = sim.quote_struct(&td());
        match &mut q.signature.certification {
            CertificationData::QeReport(qe) => qe.qe_report_signature[40] ^= 1,
            _ => unreachable!(),
        }
        assert_eq!(
            verify_err(&sim, &q.to_bytes(), t),
            "Signature is invalid for qe_report in quote"
        );
    }

    #[test]
    fn tampered_collateral_signatures_fail() {
        let t = now();
        let sim = SimTdx::new(t, &SimTdxOptions::default()).unwrap();
        let quote = sim.quote(&td());
        let verifier = QuoteVerifier::new(sim.root_ca_der().to_vec());

        let mut c = sim.collateral();
        c.tcb_info_signature[40] ^= 1;
        let err = verifier.verify(&quote, &c, secs(t)).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "Signature is invalid for tcb_info in quote_collateral"
        );

        let mut c = sim.collateral();
        c.qe_identity_signature[40] ^= 1;
        let err = verifier.verify(&quote, &c, secs(t)).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "Signature is invalid for qe_identity in quote_collateral"
        );
    }
}
