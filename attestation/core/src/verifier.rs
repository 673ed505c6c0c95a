//! One entry point for any evidence: pick the TEE's verifier, its
//! collateral and trust anchors, and return [`VerifiedEvidence`].

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::evidence::{DecodedEvidence, Evidence};
use crate::snp::{SnpCertificates, SnpRoots};
use crate::tdx::{TdxCollateral, TdxRoots};
use crate::verified::{Tee, VerifiedEvidence};

/// Trust anchors for both TEEs. [`Anchors::production`] pins the Intel SGX
/// Root CA and the AMD ARKs of Milan, Genoa and Turin.
#[derive(Debug, Clone)]
pub struct Anchors {
    /// Roots for TDX PCK chains and collateral.
    pub tdx: TdxRoots,
    /// Roots for SNP VCEK/VLEK chains.
    pub snp: SnpRoots,
}

impl Anchors {
    /// The production vendor roots, pinned in the binary.
    pub fn production() -> Self {
        Self {
            tdx: TdxRoots::production(),
            snp: SnpRoots::production(),
        }
    }
}

/// Collateral for one piece of evidence.
#[derive(Debug, Clone)]
pub enum Collateral {
    /// TDX: PCS/PCCS collateral.
    Tdx(TdxCollateral),
    /// SNP: the VCEK/VLEK certificate and optionally its ASK/ARK chain.
    Snp(SnpCertificates),
}

impl Collateral {
    /// Loads the collateral for `tee` from the `--collateral` paths.
    ///
    /// TDX: exactly one path, a `QuoteCollateralV3` JSON file or a PCS
    /// response directory. SNP: one or more certificate files (DER or PEM):
    /// the VCEK/VLEK and optionally the ASK/ARK chain.
    pub fn load(tee: Tee, paths: &[PathBuf]) -> Result<Self> {
        match tee {
            Tee::Tdx => match paths {
                [one] => Ok(Collateral::Tdx(TdxCollateral::load(one)?)),
                [] => Err(Error::MalformedCollateral(
                    "TDX verification needs --collateral (a QuoteCollateralV3 JSON or a PCS response directory)".into(),
                )),
                _ => Err(Error::MalformedCollateral(format!(
                    "TDX verification takes one --collateral path, got {}",
                    paths.len()
                ))),
            },
            Tee::Snp => {
                if paths.is_empty() {
                    return Err(Error::MalformedCollateral(
                        "SNP verification needs --collateral with the VCEK or VLEK certificate (DER or PEM)".into(),
                    ));
                }
                let blobs = paths
                    .iter()
                    .map(|p| std::fs::read(p).map_err(|e| Error::io(p, e)))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Collateral::Snp(SnpCertificates::from_files_bytes(blobs)?))
            }
        }
    }

    /// Which TEE this collateral is for.
    pub fn tee(&self) -> Tee {
        match self {
            Collateral::Tdx(_) => Tee::Tdx,
            Collateral::Snp(_) => Tee::Snp,
        }
    }
}

/// Verifies decoded evidence with its collateral against `anchors` at `now`.
pub fn verify(
    evidence: &DecodedEvidence,
    collateral: &Collateral,
    anchors: &Anchors,
    now: OffsetDateTime,
) -> Result<VerifiedEvidence> {
    match (&evidence.evidence, collateral) {
        (Evidence::Tdx(quote), Collateral::Tdx(c)) => {
            crate::tdx::verify(quote, c, &anchors.tdx, now)
        }
        (Evidence::Snp(report), Collateral::Snp(certs)) => {
            // Like TDX's simulated root in the collateral: a chain that ends
            // at the simulator's self-named ARK may verify, but only ever as
            // TrustAnchor::Simulated, which the default policy rejects.
            match certs.ark.as_deref().filter(|ark| is_simulated_ark(ark)) {
                Some(ark) => {
                    let roots = anchors.snp.clone().and(SnpRoots::simulated(ark.to_vec()));
                    crate::snp::verify(report, certs, &roots, now)
                }
                None => crate::snp::verify(report, certs, &anchors.snp, now),
            }
        }
        (e, c) => Err(Error::MalformedCollateral(format!(
            "evidence is {} but the collateral is for {}",
            e.tee(),
            c.tee()
        ))),
    }
}

fn is_simulated_ark(der: &[u8]) -> bool {
    use x509_parser::prelude::FromDer;
    x509_parser::certificate::X509Certificate::from_der(der)
        .ok()
        .and_then(|(_, c)| {
            c.subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(|cn| cn == crate::simulated::SIM_ARK_CN)
        })
        .unwrap_or(false)
}

/// Reads an evidence file in any supported encoding.
pub fn read_evidence(path: &Path) -> Result<DecodedEvidence> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() > 4 * crate::evidence::MAX_EVIDENCE_LEN as u64 {
        return Err(Error::Encoding(format!(
            "{}: {} bytes is too large to be evidence",
            path.display(),
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    crate::evidence::decode(&bytes).map_err(|e| match e {
        Error::Encoding(m) => Error::Encoding(format!("{}: {m}", path.display())),
        other => other,
    })
}
