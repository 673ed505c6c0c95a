//! The GPU evidence bundle: what a node collects from its GPUs for one
//! nonce, serves at `GET /attestation`, and binds into RA-TLS and RTMR3 by
//! its SHA-384 ([`evidence_digest`]).
//!
//! JSON, `format = "chrysalis-gpu-evidence/1"`:
//!
//! ```json
//! { "format": "chrysalis-gpu-evidence/1",
//!   "nonce": "<64 hex>",
//!   "gpus": [ { "index": 0, "name": "NVIDIA H100 80GB HBM3",
//!               "report": "<hex SPDM request+response>",
//!               "cert_chain": "<PEM, leaf first>",
//!               "cc": { "system_cc_enabled": true, "devtools_mode": false } } ] }
//! ```
//!
//! `report` and `cert_chain` are signed / verifiable; `name` and `cc` are
//! reported by the driver (NVML) inside the guest TEE and are only as
//! trustworthy as the guest that produced the bundle (which the CPU
//! attestation covers).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha384};

use crate::certs::CertChain;
use crate::error::{Error, Result};
use crate::evidence::{AttestationReport, NONCE_LEN};

/// The format tag of [`GpuEvidenceBundle`].
pub const BUNDLE_FORMAT: &str = "chrysalis-gpu-evidence/1";
/// Upper bound on an accepted bundle (bytes).
pub const MAX_BUNDLE_LEN: usize = 4 * 1024 * 1024;
/// Upper bound on GPUs in one bundle.
pub const MAX_GPUS: usize = 64;

/// Driver-reported confidential-computing state (NVML), not signed by the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CcState {
    /// System CC feature on (`nvmlSystemGetConfComputeSettings.ccFeature`).
    pub system_cc_enabled: bool,
    /// CC dev-tools mode on (must be off in production).
    pub devtools_mode: bool,
}

/// The evidence of one GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuEvidence {
    /// NVML device index.
    pub index: u32,
    /// NVML product name, if known (driver-reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Hex of the SPDM GET_MEASUREMENTS request + response.
    pub report: String,
    /// PEM device certificate chain, leaf first.
    pub cert_chain: String,
    /// Driver-reported CC state, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cc: Option<CcState>,
}

impl GpuEvidence {
    /// Decode the report.
    pub fn parsed_report(&self) -> Result<AttestationReport> {
        AttestationReport::parse_hex(&self.report)
    }
    /// Decode the certificate chain.
    pub fn parsed_chain(&self) -> Result<CertChain> {
        CertChain::from_pem(self.cert_chain.as_bytes())
    }
}

/// The evidence of all GPUs of a node for one nonce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuEvidenceBundle {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// Hex of the 32-byte nonce the reports were requested for.
    pub nonce: String,
    /// One entry per GPU.
    pub gpus: Vec<GpuEvidence>,
}

impl GpuEvidenceBundle {
    /// A bundle for `nonce`.
    pub fn new(nonce: &[u8; NONCE_LEN], gpus: Vec<GpuEvidence>) -> Self {
        GpuEvidenceBundle {
            format: BUNDLE_FORMAT.to_string(),
            nonce: hex::encode(nonce),
            gpus,
        }
    }

    /// Parse JSON bytes; checks the format tag, size bounds, the nonce, and
    /// that every report and chain decodes.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let bad = |r: String| Error::Malformed {
            what: "GPU evidence bundle",
            reason: r,
        };
        if bytes.len() > MAX_BUNDLE_LEN {
            return Err(bad(format!("{} bytes, over the limit", bytes.len())));
        }
        let b: GpuEvidenceBundle = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if b.format != BUNDLE_FORMAT {
            return Err(bad(format!(
                "format {:?}, expected {BUNDLE_FORMAT:?}",
                b.format
            )));
        }
        if b.gpus.len() > MAX_GPUS {
            return Err(bad(format!("{} GPUs, more than {MAX_GPUS}", b.gpus.len())));
        }
        b.nonce_bytes()?;
        for g in &b.gpus {
            g.parsed_report()?;
            g.parsed_chain()?;
        }
        Ok(b)
    }

    /// The nonce as bytes.
    pub fn nonce_bytes(&self) -> Result<[u8; NONCE_LEN]> {
        let v = hex::decode(&self.nonce).map_err(|e| Error::Malformed {
            what: "GPU evidence bundle nonce",
            reason: e.to_string(),
        })?;
        v.try_into().map_err(|_| Error::Malformed {
            what: "GPU evidence bundle nonce",
            reason: "not 32 bytes".into(),
        })
    }

    /// The serialized form that is served and digested (compact JSON, field
    /// order as declared).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// SHA-384 of the exact bundle bytes served: the value for the RA-TLS
/// `gpuEvidenceDigest` claim (48 bytes) and the RTMR3 extension.
pub fn evidence_digest(bundle_json: &[u8]) -> [u8; 48] {
    Sha384::digest(bundle_json).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn from_json_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1000)) {
            let _ = GpuEvidenceBundle::from_json(&bytes);
        }
    }

    #[test]
    fn wrong_format_and_nonce_are_named() {
        let e =
            GpuEvidenceBundle::from_json(br#"{"format":"v0","nonce":"00","gpus":[]}"#).unwrap_err();
        assert!(e.to_string().contains("format"), "{e}");
        let e = GpuEvidenceBundle::from_json(
            br#"{"format":"chrysalis-gpu-evidence/1","nonce":"00","gpus":[]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("32 bytes"), "{e}");
    }
}
