//! Guest-side evidence providers.
//!
//! A provider asks the TEE this process runs in for fresh evidence bound to
//! 64 bytes of caller-chosen `report_data` (typically a hash of a nonce and a
//! public key). It returns the bytes exactly as the kernel handed them over:
//! parsing and verification are the job of [`crate::tdx`] and [`crate::snp`],
//! so a provider never has to be trusted to interpret anything.
//!
//! Two kernel interfaces are supported:
//!
//! * [`tsm::TsmProvider`]: the configfs-tsm report interface
//!   (`/sys/kernel/config/tsm/report`, Linux ≥ 6.7). It gives a complete
//!   TDX quote, or an SNP report plus the host's certificate table, through
//!   one file protocol for both TEEs. Preferred.
//! * [`ioctl::SevGuestProvider`] and [`ioctl::TdxGuestProvider`]: the older
//!   `/dev/sev-guest` and `/dev/tdx_guest` device ioctls, for kernels before
//!   6.7.
//!
//! The simulated provider lives in [`crate::sim`]; [`detect`] never picks it,
//! because evidence from it proves nothing and must be asked for by name.

pub mod ioctl;
pub mod rtmr;
pub mod tsm;

use std::path::Path;

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
    /// [`rtmr`] for what it uses instead).
    fn extend_rtmr3(&self, digest: &[u8; 48]) -> Result<()> {
        let _ = digest;
        Err(Error::Unsupported(format!(
            "the {} provider for {:?} cannot extend a runtime measurement register",
            self.name(),
            self.tee()
        )))
    }
}

/// Finds the evidence interface of the TEE this process runs in.
///
/// Probes, in order: configfs-tsm at [`tsm::DEFAULT_ROOT`], then
/// [`ioctl::SEV_GUEST_DEVICE`], then [`ioctl::TDX_GUEST_DEVICE`]. configfs-tsm
/// comes first because it is the only interface that yields a TDX quote on
/// an upstream kernel and the only one the kernel will keep maintaining.
///
/// Returns [`Error::Unsupported`] listing every probed path and why it was
/// unusable when none works. An interface that exists but fails (permission
/// denied, kernel error) is returned as that error at once instead of being
/// skipped: falling through to an older interface would hide the real
/// problem behind a misleading "nothing found".
pub fn detect() -> Result<Box<dyn EvidenceProvider>> {
    detect_at(
        Path::new(tsm::DEFAULT_ROOT),
        Path::new(ioctl::SEV_GUEST_DEVICE),
        Path::new(ioctl::TDX_GUEST_DEVICE),
    )
}

/// [`detect`] with explicit paths, for containers that mount the interfaces
/// elsewhere and for tests.
pub fn detect_at(
    tsm_root: &Path,
    sev_guest: &Path,
    tdx_guest: &Path,
) -> Result<Box<dyn EvidenceProvider>> {
    let mut probed = Vec::new();

    match tsm::TsmProvider::new(tsm_root.to_path_buf()) {
        Ok(p) => return Ok(Box::new(p)),
        Err(Error::Unsupported(why)) => probed.push(why),
        Err(e) => return Err(e),
    }

    let sev = ioctl::SevGuestProvider::new(sev_guest.to_path_buf());
    match sev.probe() {
        Ok(()) => return Ok(Box::new(sev)),
        Err(Error::Unsupported(why)) => probed.push(why),
        Err(e) => return Err(e),
    }

    // Picked even though it may only give a TDREPORT: its evidence() then
    // explains that configfs-tsm is needed, which is more useful to an
    // operator than "no TEE found" inside a TDX guest.
    let tdx = ioctl::TdxGuestProvider::new(tdx_guest.to_path_buf());
    match tdx.probe() {
        Ok(()) => return Ok(Box::new(tdx)),
        Err(Error::Unsupported(why)) => probed.push(why),
        Err(e) => return Err(e),
    }

    Err(Error::Unsupported(format!(
        "no TEE evidence interface found (the simulator is never auto-detected; \
         choose it explicitly). Probed: {}",
        probed.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_with_nothing_present_lists_every_probe() {
        let dir = tempfile::tempdir().unwrap();
        let tsm = dir.path().join("tsm/report");
        let sev = dir.path().join("sev-guest");
        let tdx = dir.path().join("tdx_guest");
        let err = match detect_at(&tsm, &sev, &tdx) {
            Ok(p) => panic!("detected {} in an empty directory", p.name()),
            Err(e) => e,
        };
        assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
        let msg = err.to_string();
        for p in [&tsm, &sev, &tdx] {
            assert!(msg.contains(&p.display().to_string()), "{msg}");
        }
        assert!(msg.contains("6.7"), "{msg}");
    }

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
