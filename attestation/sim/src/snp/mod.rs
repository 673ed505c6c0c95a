//! Simulated SEV-SNP evidence: an AMD-shaped certificate hierarchy generated
//! at run time, and reports signed by its VCEK.
//!
//! The hierarchy mirrors AMD's so that [`chrysalis_attestation::snp::verify()`] checks it with
//! exactly the code that checks real evidence (the `sev` crate's RSASSA-PSS
//! chain verification, the ECDSA report signature, the TCB and chip-id
//! binding):
//!
//! * ARK `CN=ARK-Chrysalis-SIMULATED`, self-signed, RSA-2048, RSASSA-PSS
//!   SHA-384 (AMD's are RSA-4096; 2048 keeps generation fast);
//! * ASK `CN=SEV-Chrysalis-SIMULATED`, signed by the ARK the same way;
//! * VCEK `CN=SEV-VCEK`, a P-384 key with AMD's TCB and `hwID` extensions,
//!   signed by the ASK.
//!
//! Both CA subjects carry `O=Chrysalis SIMULATED (not AMD)`. Nothing here is
//! pinned anywhere: evidence verifies only against
//! [`SnpRoots::simulated`](chrysalis_attestation::snp::SnpRoots::simulated),
//! and then with [`chrysalis_attestation::TrustAnchor::Simulated`].
//!
//! Rooms: `pki` generates the hierarchy ([`SimSnpAuthority`] and its
//! certificates), `report` assembles and signs reports with it.

mod pki;
mod report;

pub use self::pki::{
    SimSnpAuthority, SIM_ARK_CN, SIM_ASK_CN, SIM_CHIP_ID_PREFIX, SIM_ORG, SIM_TCB,
};

#[cfg(test)]
mod tests {
    use super::*;
    use chrysalis_attestation::snp::report::SnpReport;
    use chrysalis_attestation::snp::{verify, CertRole, SnpCertificates};
    use chrysalis_attestation::TrustAnchor;
    use time::OffsetDateTime;

    #[test]
    fn simulated_evidence_verifies_as_simulated() {
        let sim = SimSnpAuthority::generate().unwrap();
        let bytes = sim.report([7; 64], [8; 48], [9; 32]);
        let report = SnpReport::parse(&bytes).unwrap();
        assert!(report.chip_id.starts_with(super::super::SIM_MARKER));
        let now = OffsetDateTime::now_utc();
        let v = verify(&report, &sim.certificates(), &sim.roots(), now).unwrap();
        assert_eq!(v.anchor(), TrustAnchor::Simulated);
        assert_eq!(v.report_data(), &[7; 64]);
        assert!(!v.debug());

        // The PEM chain sorts back into the same certificates.
        let certs = SnpCertificates::from_files_bytes(vec![sim.chain_pem().into_bytes()]).unwrap();
        assert_eq!(certs, sim.certificates());
        assert_eq!(
            chrysalis_attestation::snp::certs::cert_role(sim.ask_der()).unwrap(),
            CertRole::Ask
        );
    }
}
