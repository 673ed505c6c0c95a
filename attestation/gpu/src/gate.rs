//! The readiness gate the agent calls at boot: evidence source + policy +
//! collateral + nonce → [`Readiness`]. Ready state is set on the GPUs only
//! after verification and policy both pass.

use ::time::OffsetDateTime;

use crate::evidence::NONCE_LEN;
use crate::policy::GpuPolicy;
use crate::source::GpuEvidenceSource;
use crate::verify::{verify_bundle, Collateral, VerifiedGpuSet};

/// The outcome of the gate.
#[derive(Debug)]
pub enum Readiness {
    /// Verified and accepted; the GPUs were set ready. Carries the result
    /// and the exact bundle bytes (to serve at `GET /attestation`).
    Ready {
        /// The verification result (digest for RA-TLS claims and RTMR3).
        verified: VerifiedGpuSet,
        /// The bundle JSON that was verified.
        bundle: Vec<u8>,
    },
    /// Not ready; the text says exactly why (for the log and `/readyz`).
    NotReady(String),
}

impl Readiness {
    /// Whether the node may serve.
    pub fn is_ready(&self) -> bool {
        matches!(self, Readiness::Ready { .. })
    }
}

/// Collect evidence for `nonce`, verify it against `collateral` and
/// `policy` at `at`, and only then set the GPUs ready.
pub fn gate(
    source: &mut dyn GpuEvidenceSource,
    policy: &GpuPolicy,
    collateral: &Collateral,
    nonce: &[u8; NONCE_LEN],
    at: OffsetDateTime,
) -> Readiness {
    let what = source.describe();
    let bundle = match source.collect(nonce) {
        Ok(b) => b,
        Err(e) => return Readiness::NotReady(format!("GPU evidence from {what} unavailable: {e}")),
    };
    let verified = match verify_bundle(&bundle, collateral, policy, nonce, at) {
        Ok(v) => v,
        Err(e) => {
            return Readiness::NotReady(format!("GPU evidence from {what} not accepted: {e}"))
        }
    };
    if let Err(e) = source.set_ready(&verified) {
        return Readiness::NotReady(format!(
            "GPU evidence verified but setting the GPUs ready failed: {e}"
        ));
    }
    Readiness::Ready { verified, bundle }
}
