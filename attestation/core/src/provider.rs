//! Guest-side evidence providers.
//!
//! A provider asks the TEE this process runs in for fresh evidence bound to
//! 64 bytes of caller-chosen `report_data` (typically a hash of a nonce and a
//! public key). It returns the bytes exactly as the kernel handed them over:
//! parsing and verification are the job of [`crate::tdx`] and [`crate::snp`],
//! so a provider never has to be trusted to interpret anything.
//!
//! Only the *interface* lives here, so that code that takes a provider (the
//! RA-TLS identity, the Python extension) does not link guest code. The
//! implementations live elsewhere:
//!
//! * crate `chrysalis-provider`: configfs-tsm, the `/dev/sev-guest` and
//!   `/dev/tdx_guest` ioctls, the RTMR3 extend, and `detect()`;
//! * crate `chrysalis-sim`: the simulated TEE, which `detect()` never picks,
//!   because evidence from it proves nothing and must be asked for by name.

use crate::error::{Error, Result};
use crate::verified::Tee;

/// Evidence as a provider returns it, before any parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvidence {
    /// The TEE that produced it, as the kernel interface reported it.
    pub tee: Tee,
    /// The evidence itself: a TDX quote (v4/v5, as produced by the quoting
    /// enclave), or an SNP attestation report (1184 bytes, little-endian
    /// fields, as defined by the SEV-SNP firmware ABI).
    pub bytes: Vec<u8>,
    /// SNP certificate table / auxblob when the interface returns one
    /// (GUID table of VCEK/ASK/ARK certificates as published by the host);
    /// `None` when the interface returned nothing or an empty table.
    pub aux: Option<Vec<u8>>,
    /// Name of the provider that produced it ("tsm", "ioctl", "sim")
    pub provider: &'static str,
}

/// A source of fresh TEE evidence inside a guest.
///
/// Implementations must be cheap to share between threads: each call to
/// [`EvidenceProvider::evidence`] is an independent request to the kernel.
pub trait EvidenceProvider: Send + Sync {
    /// Short name of the interface ("tsm", "ioctl", "sim"); copied into
    /// [`RawEvidence::provider`].
    fn name(&self) -> &'static str;

    /// The TEE this provider produces evidence for.
    fn tee(&self) -> Tee;

    /// Fresh evidence whose report data field holds exactly `report_data`
    /// (64 bytes, copied verbatim into TDX `REPORTDATA` / SNP `REPORT_DATA`).
    fn evidence(&self, report_data: &[u8; 64]) -> Result<RawEvidence>;

    /// Extends the runtime measurement register RTMR3 (TDX) with a SHA-384
    /// digest: `RTMR3 := SHA-384(RTMR3 ‖ digest)`; later evidence shows it.
    ///
    /// The default (and every SEV-SNP provider) answers
    /// [`Error::Unsupported`]: SNP has no runtime registers (see
    /// `chrysalis_provider::rtmr` for what it uses instead).
    fn extend_rtmr3(&self, digest: &[u8; 48]) -> Result<()> {
        let _ = digest;
        Err(Error::Unsupported(format!(
            "the {} provider for {:?} cannot extend a runtime measurement register",
            self.name(),
            self.tee()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_evidence_is_plain_data() {
        let e = RawEvidence {
            tee: Tee::Snp,
            bytes: vec![1, 2, 3],
            aux: None,
            provider: "ioctl",
        };
        assert_eq!(e.clone(), e);
    }

    // The trait must stay object safe: detect() returns it boxed.
    #[allow(dead_code)]
    fn assert_object_safe(_: &dyn EvidenceProvider) {}
}
