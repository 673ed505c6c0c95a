//! Simulated TEE: evidence signed by roots generated at run time.
//!
//! The simulator exists so that the *real* verification code can run end to
//! end on machines without a TEE. Its roots are generated fresh each time and
//! are never pinned: evidence that chains to them verifies with
//! [`chrysalis_attestation::TrustAnchor::Simulated`], which the default policy rejects.
//!
//! Rooms:
//!
//! * [`tdx`]: a simulated Intel TDX platform, split along the seams of what
//!   Intel provides: `tdx::pki` (root CA, PCK Platform CA and PCK leaf with
//!   the SGX extension, TCB signing certificate, CRLs), `tdx::collateral`
//!   (TCB info and QE identity JSON, assembled and signed) and `tdx::quote`
//!   (header, TD report body, QE report, signatures), with the platform's
//!   fixed values and the collateral options beside them. Its public types
//!   are re-exported at `chrysalis_sim::tdx::*`.
//! * [`snp`]: a simulated AMD SEV-SNP chip, split the same way: `snp::pki`
//!   (the ARK/ASK/VCEK hierarchy with AMD's VCEK extensions) and
//!   `snp::report` (version 3 reports, signed by the VCEK). Re-exported at
//!   `chrysalis_sim::snp::*`.
//! * [`SimProvider`] (this file): the `sim` [`EvidenceProvider`] over either,
//!   with fixed, recognisable measurements ([`sim_measurement`]) and the
//!   run-time state a real TEE keeps (RTMR3, SNP `HOST_DATA`).

/// Marker placed at the start of simulated evidence's free-form fields
/// (TDX header user data, SNP chip id) so humans can spot it. Trust never
/// depends on it: the verifier's anchor decides.
pub const SIM_MARKER: &[u8] = chrysalis_attestation::simulated::SIM_MARKER;

pub mod snp;

pub mod tdx;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha384};
use time::OffsetDateTime;

use chrysalis_attestation::error::Result;
use chrysalis_attestation::provider::{EvidenceProvider, RawEvidence};
use chrysalis_attestation::snp::SnpCertificates;
use chrysalis_attestation::tdx::TdxCollateral;
use chrysalis_attestation::verified::Tee;

/// The `sim` evidence provider: a simulated TDX platform or SNP chip with
/// roots generated when it is created.
///
/// Its measurements are fixed, recognisable values
/// (`SHA-384("CHRYSALIS-SIM <register>")`), so a policy can pin them in
/// development exactly as it pins real ones in production.
///
/// Like real hardware, it keeps run-time state shared by its clones: RTMR3
/// once extended ([`EvidenceProvider::extend_rtmr3`]: from then on RTMR3 is
/// the replay of the extended digests from zero, as on a real TD, so
/// `chrysalis measure --config` predicts it) and the SNP `HOST_DATA` the
/// "host" launched it with ([`SimProvider::with_host_data`]).
#[derive(Clone)]
pub struct SimProvider {
    inner: Arc<Inner>,
    rtmr3: Arc<Mutex<Option<[u8; 48]>>>,
    host_data: Option<[u8; 32]>,
}

// Created once per piece of evidence and never stored in bulk: boxing the
// larger variant would only add an allocation and awkward matching.
#[allow(clippy::large_enum_variant)]
enum Inner {
    Tdx(tdx::SimTdx),
    Snp(snp::SimSnpAuthority),
}

/// The fixed value the simulator uses for a named register.
pub fn sim_measurement(register: &str) -> [u8; 48] {
    Sha384::digest(format!("CHRYSALIS-SIM {register}")).into()
}

impl SimProvider {
    /// A simulated TEE of the given kind, with fresh roots valid from now.
    pub fn new(tee: Tee) -> Result<Self> {
        Self::new_at(tee, OffsetDateTime::now_utc())
    }

    /// Like [`SimProvider::new`], with collateral valid around `now`.
    pub fn new_at(tee: Tee, now: OffsetDateTime) -> Result<Self> {
        let inner = match tee {
            Tee::Tdx => Inner::Tdx(tdx::SimTdx::new(now, &tdx::SimTdxOptions::default())?),
            Tee::Snp => Inner::Snp(snp::SimSnpAuthority::generate()?),
        };
        Ok(Self {
            inner: Arc::new(inner),
            rtmr3: Arc::new(Mutex::new(None)),
            host_data: None,
        })
    }

    /// The same simulated TEE launched with this SNP `HOST_DATA` (what a
    /// host sets when it starts a real SNP guest). Ignored for TDX.
    pub fn with_host_data(mut self, host_data: [u8; 32]) -> Self {
        self.host_data = Some(host_data);
        self
    }

    fn current_rtmr3(&self) -> [u8; 48] {
        let r = self.rtmr3.lock().unwrap_or_else(|p| p.into_inner());
        r.unwrap_or_else(|| sim_measurement("RTMR3"))
    }

    /// The TDX collateral (with the simulated root) for TDX simulators.
    pub fn tdx_collateral(&self) -> Option<TdxCollateral> {
        match &*self.inner {
            Inner::Tdx(t) => Some(TdxCollateral {
                v3: t.collateral(),
                simulated_root_ca: Some(t.pki().root_ca_der().to_vec()),
            }),
            Inner::Snp(_) => None,
        }
    }

    /// The VCEK and its simulated ASK/ARK chain, for SNP simulators.
    pub fn snp_certificates(&self) -> Option<SnpCertificates> {
        match &*self.inner {
            Inner::Snp(s) => Some(s.certificates()),
            Inner::Tdx(_) => None,
        }
    }

    /// Writes the collateral needed to verify this simulator's evidence next
    /// to `evidence_path` and returns its path: `FILE.collateral.json`
    /// (TDX, QuoteCollateralV3 plus the simulated root) or `FILE.certs.pem`
    /// (SNP: VCEK, ASK, ARK).
    pub fn write_collateral(&self, evidence_path: &Path) -> Result<PathBuf> {
        let (suffix, bytes) = match &*self.inner {
            Inner::Tdx(_) => (
                "collateral.json",
                self.tdx_collateral()
                    .map(|c| c.to_json())
                    .unwrap_or_default()
                    .into_bytes(),
            ),
            Inner::Snp(s) => ("certs.pem", s.chain_pem().into_bytes()),
        };
        let mut p = evidence_path.as_os_str().to_owned();
        p.push(".");
        p.push(suffix);
        let p = PathBuf::from(p);
        chrysalis_attestation::fsutil::write_atomic(&p, &bytes)?;
        Ok(p)
    }
}

impl EvidenceProvider for SimProvider {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn extend_rtmr3(&self, digest: &[u8; 48]) -> Result<()> {
        if matches!(&*self.inner, Inner::Snp(_)) {
            return Err(chrysalis_attestation::error::Error::Unsupported(
                "SEV-SNP has no runtime measurement register (HOST_DATA carries the host's configuration digest)".into(),
            ));
        }
        let mut r = self.rtmr3.lock().unwrap_or_else(|p| p.into_inner());
        let mut h = Sha384::new();
        h.update(r.unwrap_or([0; 48]));
        h.update(digest);
        *r = Some(h.finalize().into());
        Ok(())
    }

    fn tee(&self) -> Tee {
        match &*self.inner {
            Inner::Tdx(_) => Tee::Tdx,
            Inner::Snp(_) => Tee::Snp,
        }
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<RawEvidence> {
        let (tee, bytes) = match &*self.inner {
            Inner::Tdx(t) => (
                Tee::Tdx,
                t.quote(&tdx::SimTdInput {
                    mrtd: sim_measurement("MRTD"),
                    rtmr: [
                        sim_measurement("RTMR0"),
                        sim_measurement("RTMR1"),
                        sim_measurement("RTMR2"),
                        self.current_rtmr3(),
                    ],
                    report_data: *report_data,
                    ..Default::default()
                }),
            ),
            Inner::Snp(s) => {
                let host_data = self.host_data.unwrap_or_else(|| {
                    let mut h = [0u8; 32];
                    h.copy_from_slice(&sim_measurement("HOST_DATA")[..32]);
                    h
                });
                (
                    Tee::Snp,
                    s.report(*report_data, sim_measurement("MEASUREMENT"), host_data),
                )
            }
        };
        Ok(RawEvidence {
            tee,
            bytes,
            aux: None,
            provider: "sim",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrysalis_attestation::snp::SnpReport;
    use chrysalis_attestation::tdx::TdxQuote;

    fn sha384_extend(reg: [u8; 48], d: &[u8; 48]) -> [u8; 48] {
        let mut h = Sha384::new();
        h.update(reg);
        h.update(d);
        h.finalize().into()
    }

    #[test]
    fn rtmr3_extensions_replay_from_zero_and_are_shared_by_clones() {
        let p = SimProvider::new(Tee::Tdx).unwrap();
        let rtmr3 = |p: &SimProvider| {
            let e = p.evidence(&[0; 64]).unwrap();
            TdxQuote::parse(&e.bytes).unwrap().body.td10().rtmr[3]
        };
        assert_eq!(
            rtmr3(&p),
            sim_measurement("RTMR3"),
            "unextended: the fixed value"
        );
        let (a, b) = ([1u8; 48], [2u8; 48]);
        p.extend_rtmr3(&a).unwrap();
        p.clone().extend_rtmr3(&b).unwrap();
        let want = sha384_extend(sha384_extend([0; 48], &a), &b);
        assert_eq!(rtmr3(&p), want);
    }

    #[test]
    fn snp_has_no_rtmr_but_takes_host_data() {
        let p = SimProvider::new(Tee::Snp).unwrap();
        let e = p.extend_rtmr3(&[0; 48]).unwrap_err();
        assert!(e.to_string().contains("HOST_DATA"), "{e}");
        let p = p.with_host_data([9; 32]);
        let r = SnpReport::parse(&p.evidence(&[0; 64]).unwrap().bytes).unwrap();
        assert_eq!(r.host_data, [9; 32]);
    }
}
