//! Where GPU evidence comes from: the [`GpuEvidenceSource`] trait, with
//! the NVML implementation ([`crate::nvml::NvmlSource`]) for a real guest
//! and [`RecordedSource`] (files) for tests and offline checks.

use std::path::Path;

use crate::bundle::{CcState, GpuEvidence, GpuEvidenceBundle};
use crate::error::{Error, Result};
use crate::evidence::NONCE_LEN;
use crate::verify::VerifiedGpuSet;

/// A source of GPU evidence for a caller-chosen nonce.
pub trait GpuEvidenceSource {
    /// A short description for logs (`NVML (2 GPUs)`, `recorded file X`).
    fn describe(&self) -> String;
    /// Collect the evidence of every GPU for `nonce`, serialized as the
    /// bundle JSON that will be verified, served and digested.
    fn collect(&mut self, nonce: &[u8; NONCE_LEN]) -> Result<Vec<u8>>;
    /// Let the GPUs accept work. Takes the verification result as proof:
    /// ready state can only be set after successful verification.
    fn set_ready(&mut self, proof: &VerifiedGpuSet) -> Result<()>;
}

/// Recorded evidence from files: a bundle JSON, or NVIDIA SDK sample files
/// (hex report + PEM chain, optionally a CC state).
#[derive(Debug, Clone)]
pub struct RecordedSource {
    label: String,
    bundle: Option<Vec<u8>>,
    single: Option<GpuEvidence>,
    ready_set: bool,
}

impl RecordedSource {
    /// From a bundle JSON file (served as is, whatever nonce is asked: a
    /// wrong nonce then fails verification, as it must).
    pub fn from_bundle_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path.display().to_string(), e))?;
        GpuEvidenceBundle::from_json(&bytes)?;
        Ok(RecordedSource {
            label: format!("recorded bundle {}", path.display()),
            bundle: Some(bytes),
            single: None,
            ready_set: false,
        })
    }

    /// From SDK-format files: hex attestation report and PEM chain. The
    /// bundle is built for whichever nonce is asked (its report still
    /// carries its own nonce).
    pub fn from_sdk_files(report: &Path, chain: &Path, cc: Option<CcState>) -> Result<Self> {
        let r = std::fs::read_to_string(report)
            .map_err(|e| Error::io(report.display().to_string(), e))?;
        let c = std::fs::read_to_string(chain)
            .map_err(|e| Error::io(chain.display().to_string(), e))?;
        let ev = GpuEvidence {
            index: 0,
            name: None,
            report: r.split_whitespace().collect(),
            cert_chain: c,
            cc,
        };
        ev.parsed_report()?;
        ev.parsed_chain()?;
        Ok(RecordedSource {
            label: format!("recorded report {}", report.display()),
            bundle: None,
            single: Some(ev),
            ready_set: false,
        })
    }

    /// Whether [`GpuEvidenceSource::set_ready`] was called.
    pub fn ready_set(&self) -> bool {
        self.ready_set
    }
}

impl GpuEvidenceSource for RecordedSource {
    fn describe(&self) -> String {
        self.label.clone()
    }
    fn collect(&mut self, nonce: &[u8; NONCE_LEN]) -> Result<Vec<u8>> {
        if let Some(b) = &self.bundle {
            return Ok(b.clone());
        }
        let gpus = self.single.iter().cloned().collect();
        Ok(GpuEvidenceBundle::new(nonce, gpus).to_json())
    }
    fn set_ready(&mut self, _proof: &VerifiedGpuSet) -> Result<()> {
        self.ready_set = true;
        Ok(())
    }
}
