//! Evidence through the older TEE guest device ioctls: `/dev/sev-guest`
//! (SEV-SNP) and `/dev/tdx_guest` (TDX).
//!
//! These are the interfaces of kernels before configfs-tsm (Linux 6.7). On
//! SNP they give the same evidence as configfs-tsm. On TDX the upstream
//! driver only gives a TDREPORT — a MAC'd structure that only the local
//! platform can check — and not a quote, which needs the host's Quote
//! Generation Service; only some older out-of-tree drivers had a GET_QUOTE
//! ioctl for that round trip, and [`TdxGuestProvider`] uses it when present.
//!
//! Rooms, along the seams of the kernel interfaces:
//!
//! * `sys`: the kernel uapi `#[repr(C)]` layouts and the ioctl calls that
//!   pass them, as safe functions. The only module of the crate allowed
//!   `unsafe` code: ioctl(2) is FFI by nature.
//! * `snp`: [`SevGuestProvider`], the report and extended-report requests,
//!   the `MSG_REPORT_RSP` parsing and the certificate-table trim.
//! * `tdx`: [`TdxGuestProvider`], the TDREPORT and the GetQuote round trip
//!   framed for the host's Quote Generation Service.
//! * `device`: opening a guest device and the little-endian readers both
//!   providers share.
//!
//! The providers and constants are re-exported here, so their paths are
//! `chrysalis_provider::ioctl::*`.

mod device;
mod snp;
// ioctl(2) is FFI: the kernel reads and writes our structures through raw
// addresses the type system cannot follow, so this module — and only this
// module — opts out of the crate-wide `deny(unsafe_code)`. Each unsafe block
// in it states what keeps it sound.
#[allow(unsafe_code)]
mod sys;
mod tdx;

pub use self::snp::{ReportAndCerts, SevGuestProvider, SEV_GUEST_DEVICE};
pub use self::sys::{SNP_REPORT_LEN, TDX_REPORT_LEN};
pub use self::tdx::{TdxGuestProvider, TDX_GET_QUOTE_TIMEOUT, TDX_GUEST_DEVICE};

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use chrysalis_attestation::error::Error;
    use chrysalis_attestation::provider::EvidenceProvider;
    use chrysalis_attestation::verified::Tee;

    use super::*;

    #[test]
    fn missing_devices_are_unsupported_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let sev_path = dir.path().join("sev-guest");
        let sev = SevGuestProvider::new(sev_path.clone());
        for err in [
            sev.probe().unwrap_err(),
            sev.evidence(&[0; 64]).unwrap_err(),
            sev.report(&[0; 64]).unwrap_err(),
        ] {
            assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
            assert!(
                err.to_string().contains(&sev_path.display().to_string()),
                "{err}"
            );
        }

        let tdx_path = dir.path().join("tdx_guest");
        let tdx = TdxGuestProvider::new(tdx_path.clone());
        for err in [
            tdx.probe().unwrap_err(),
            tdx.evidence(&[0; 64]).unwrap_err(),
            tdx.tdreport(&[0; 64]).unwrap_err(),
        ] {
            assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
            assert!(
                err.to_string().contains(&tdx_path.display().to_string()),
                "{err}"
            );
        }
        assert_eq!((sev.tee(), tdx.tee()), (Tee::Snp, Tee::Tdx));
        assert_eq!((sev.name(), tdx.name()), ("ioctl", "ioctl"));
    }

    #[test]
    fn a_device_that_is_not_a_tee_fails_cleanly() {
        // /dev/null opens but knows none of these ioctls: the TDX path must
        // report that as "unsupported", not as a crash or a bogus quote.
        let tdx = TdxGuestProvider::new(PathBuf::from("/dev/null"));
        let err = tdx.evidence(&[0; 64]).unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
        let sev = SevGuestProvider::new(PathBuf::from("/dev/null"));
        assert!(sev.report(&[0; 64]).is_err());
    }
}
