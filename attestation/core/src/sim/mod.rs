//! Simulated TEE: evidence signed by roots generated at run time.
//!
//! The simulator exists so that the *real* verification code can run end to
//! end on machines without a TEE. Its roots are generated fresh each time and
//! are never pinned: evidence that chains to them verifies with
//! [`crate::TrustAnchor::Simulated`], which the default policy rejects.

/// Marker placed at the start of simulated evidence's free-form fields
/// (TDX header user data, SNP chip id) so humans can spot it. Trust never
/// depends on it: the verifier's anchor decides.
pub const SIM_MARKER: &[u8] = b"CHRYSALIS-SIM";

pub mod snp;

pub mod tdx;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha384};
use time::OffsetDateTime;

use crate::error::Result;
use crate::provider::{EvidenceProvider, RawEvidence};
use crate::snp::SnpCertificates;
use crate::tdx::TdxCollateral;
use crate::verified::Tee;

/// The `sim` evidence provider: a simulated TDX platform or SNP chip with
/// roots generated when it is created.
///
/// Its measurements are fixed, recognisable values
/// (`SHA-384("CHRYSALIS-SIM <register>")`), so a policy can pin them in
/// development exactly as it pins real ones in production.
#[derive(Clone)]
pub struct SimProvider {
    inner: Arc<Inner>,
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
        })
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
        crate::fsutil::write_atomic(&p, &bytes)?;
        Ok(p)
    }
}

impl EvidenceProvider for SimProvider {
    fn name(&self) -> &'static str {
        "sim"
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
                        sim_measurement("RTMR3"),
                    ],
                    report_data: *report_data,
                    ..Default::default()
                }),
            ),
            Inner::Snp(s) => {
                let mut host_data = [0u8; 32];
                host_data.copy_from_slice(&sim_measurement("HOST_DATA")[..32]);
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
