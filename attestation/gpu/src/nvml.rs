//! The NVIDIA driver through NVML (`nvml-wrapper`, which loads
//! `libnvidia-ml.so.1` at run time: this builds and runs without a GPU, and
//! reports "no NVIDIA driver" cleanly when the library is absent).
//!
//! Reads the system CC state (CC feature, dev-tools mode), each GPU's name,
//! the attestation report for a nonce and the attestation certificate
//! chain; sets the system "GPUs ready" state only through
//! [`GpuEvidenceSource::set_ready`], which requires a verification result.

use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;
use serde::Serialize;

use crate::bundle::{CcState, GpuEvidence, GpuEvidenceBundle};
use crate::certs::CertChain;
use crate::error::{Error, Result};
use crate::evidence::NONCE_LEN;
use crate::source::GpuEvidenceSource;
use crate::verify::VerifiedGpuSet;

/// The message used when the driver library cannot be loaded.
pub const NO_DRIVER: &str = "no NVIDIA driver: libnvidia-ml.so.1 could not be loaded";

fn nerr(what: &str, e: NvmlError) -> Error {
    match e {
        NvmlError::LibloadingError(_) | NvmlError::DriverNotLoaded | NvmlError::LibraryNotFound => {
            Error::Nvml(NO_DRIVER.to_string())
        }
        other => Error::Nvml(format!("{what}: {other}")),
    }
}

/// One GPU as `chrysalis gpu status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GpuStatus {
    /// NVML index.
    pub index: u32,
    /// Product name.
    pub name: Option<String>,
    /// VBIOS version as the driver reports it.
    pub vbios_version: Option<String>,
    /// Whether the GPUs currently accept work (CC ready state).
    pub ready: Option<bool>,
}

/// The node's GPU confidential-computing status.
#[derive(Debug, Clone, Serialize)]
pub struct NodeGpuStatus {
    /// Driver version.
    pub driver_version: Option<String>,
    /// CC system state, if readable.
    pub cc: Option<CcState>,
    /// The GPUs.
    pub gpus: Vec<GpuStatus>,
}

/// Evidence from the local driver.
pub struct NvmlSource {
    nvml: Nvml,
}

impl std::fmt::Debug for NvmlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NvmlSource")
    }
}

impl NvmlSource {
    /// Load and initialize NVML. Without a driver this is
    /// `Err(Error::Nvml(NO_DRIVER))`.
    pub fn open() -> Result<Self> {
        let nvml = Nvml::init().map_err(|e| nerr("nvmlInit", e))?;
        Ok(NvmlSource { nvml })
    }

    fn cc_state(&self) -> Result<Option<CcState>> {
        let count = self
            .nvml
            .device_count()
            .map_err(|e| nerr("device count", e))?;
        if count == 0 {
            return Ok(None);
        }
        let d = self
            .nvml
            .device_by_index(0)
            .map_err(|e| nerr("device 0", e))?;
        let on = d.is_cc_enabled().map_err(|e| nerr("CC settings", e))?;
        let dev = d
            .is_cc_dev_mode_enabled()
            .map_err(|e| nerr("CC dev-tools mode", e))?;
        Ok(Some(CcState {
            system_cc_enabled: on,
            devtools_mode: dev,
        }))
    }

    /// The status `chrysalis gpu status` prints.
    pub fn status(&self) -> Result<NodeGpuStatus> {
        let count = self
            .nvml
            .device_count()
            .map_err(|e| nerr("device count", e))?;
        let mut gpus = Vec::new();
        for i in 0..count {
            let d = self
                .nvml
                .device_by_index(i)
                .map_err(|e| nerr("device", e))?;
            gpus.push(GpuStatus {
                index: i,
                name: d.name().ok(),
                vbios_version: d.vbios_version().ok(),
                ready: d.get_confidential_compute_state().ok(),
            });
        }
        Ok(NodeGpuStatus {
            driver_version: self.nvml.sys_driver_version().ok(),
            cc: self.cc_state().ok().flatten(),
            gpus,
        })
    }
}

fn chain_from_nvml(bytes: &[u8]) -> Result<CertChain> {
    let text_end = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    let bytes = &bytes[..text_end];
    if bytes.starts_with(b"-----BEGIN") {
        return CertChain::from_pem(bytes);
    }
    // Concatenated DER certificates.
    let mut ders = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() && ders.len() < crate::certs::MAX_CHAIN_LEN {
        use x509_parser::prelude::FromDer;
        let (r, _) = x509_parser::certificate::X509Certificate::from_der(rest)
            .map_err(|e| Error::MalformedCertificate(format!("NVML chain: {e}")))?;
        let used = rest.len() - r.len();
        ders.push(rest[..used].to_vec());
        rest = r;
    }
    CertChain::from_ders(ders)
}

impl GpuEvidenceSource for NvmlSource {
    fn describe(&self) -> String {
        let n = self.nvml.device_count().unwrap_or(0);
        format!("NVML ({n} GPU(s))")
    }

    fn collect(&mut self, nonce: &[u8; NONCE_LEN]) -> Result<Vec<u8>> {
        let cc = self.cc_state()?;
        let count = self
            .nvml
            .device_count()
            .map_err(|e| nerr("device count", e))?;
        let mut gpus = Vec::new();
        for i in 0..count {
            let d = self
                .nvml
                .device_by_index(i)
                .map_err(|e| nerr("device", e))?;
            let report = d
                .confidential_compute_gpu_attestation_report(*nonce)
                .map_err(|e| nerr("attestation report", e))?;
            let cert = d
                .confidential_compute_gpu_certificate()
                .map_err(|e| nerr("attestation certificate chain", e))?;
            let chain = chain_from_nvml(&cert.attestation_cert_chain)?;
            gpus.push(GpuEvidence {
                index: i,
                name: d.name().ok(),
                report: hex::encode(&report.attestation_report),
                cert_chain: chain.to_pem(),
                cc,
            });
        }
        Ok(GpuEvidenceBundle::new(nonce, gpus).to_json())
    }

    fn set_ready(&mut self, _proof: &VerifiedGpuSet) -> Result<()> {
        let d = self
            .nvml
            .device_by_index(0)
            .map_err(|e| nerr("device 0", e))?;
        d.set_confidential_compute_state(true)
            .map_err(|e| nerr("set CC GPUs ready state", e))
    }
}
