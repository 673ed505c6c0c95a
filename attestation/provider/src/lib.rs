//! # chrysalis-provider
//!
//! Guest-side TEE evidence providers: the code that runs inside a TDX or
//! SEV-SNP guest and asks the kernel for fresh evidence. Each implements
//! [`EvidenceProvider`] (defined in `chrysalis-attestation`, so verifiers and
//! RA-TLS code never link this crate):
//!
//! * [`tsm::TsmProvider`]: the configfs-tsm report interface
//!   (`/sys/kernel/config/tsm/report`, Linux ≥ 6.7). It gives a complete
//!   TDX quote, or an SNP report plus the host's certificate table, through
//!   one file protocol for both TEEs. Preferred.
//! * [`ioctl::SevGuestProvider`] and [`ioctl::TdxGuestProvider`]: the older
//!   `/dev/sev-guest` and `/dev/tdx_guest` device ioctls, for kernels before
//!   6.7. Inside [`ioctl`], one room per interface: `snp` (reports and the
//!   host's certificate table), `tdx` (TDREPORT and the GetQuote round trip
//!   with its QGS framing) and `sys`, the kernel uapi `#[repr(C)]` layouts
//!   with the ioctl calls that pass them. `sys` holds every `unsafe` block of
//!   the project's guest code, each with its SAFETY argument, behind safe
//!   functions; the rest of the crate is free of `unsafe`.
//! * [`rtmr`]: extending RTMR3 (TDX) through the tsm-mr sysfs files.
//!
//! [`detect`] picks the first interface that works; it never picks the
//! simulator (crate `chrysalis-sim`), which must be asked for by name.
#![deny(unsafe_code)] // only ioctl::sys opts out: ioctls are FFI by nature
#![warn(missing_docs)]

pub mod ioctl;
pub mod rtmr;
pub mod tsm;

use std::path::Path;

pub use chrysalis_attestation::provider::{EvidenceProvider, RawEvidence};
use chrysalis_attestation::{Error, Result};

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
}
