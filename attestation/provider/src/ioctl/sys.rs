//! The kernel side of the guest device ioctls: the uapi structures, byte for
//! byte, and the only `unsafe` code of the crate.
//!
//! Every structure mirrors `include/uapi/linux/sev-guest.h`,
//! `include/uapi/linux/tdx-guest.h` or the out-of-tree TDX `GET_QUOTE`
//! driver (`#[repr(C)]`, checked by the size and offset tests below) and is
//! little-endian, as every TEE guest these drivers exist for is x86-64.
//!
//! ioctl(2) is FFI by nature: the kernel reads and writes our memory through
//! addresses the type system cannot follow. The wrappers here are safe
//! because each one writes those addresses itself, from references it
//! borrows for exactly the duration of the synchronous call; callers never
//! hand the kernel a raw address. Each unsafe block states what keeps it
//! sound.

use std::fs::File;
use std::os::fd::AsRawFd;

/// Size of an SEV-SNP attestation report in bytes (versions 2 and 3 of the
/// `ATTESTATION_REPORT` structure).
pub const SNP_REPORT_LEN: usize = 1184;

/// Size of a TDREPORT (`TDREPORT_STRUCT`) in bytes.
pub const TDX_REPORT_LEN: usize = 1024;

/// Size of the decrypted `MSG_REPORT_RSP` buffer of `struct snp_report_resp`.
pub(crate) const SNP_RESP_LEN: usize = 4000;

/// Size of the GetQuote shared buffer we offer (header and data).
pub(crate) const TDX_QUOTE_BUF_LEN: usize = 16 * 1024;

/// Byte offset of the `status` word in the GetQuote buffer header.
const TDX_QUOTE_STATUS_OFFSET: usize = 8;

// ---------------------------------------------------------------------------
// SEV-SNP (include/uapi/linux/sev-guest.h)
// ---------------------------------------------------------------------------

/// `struct snp_guest_request_ioctl`. The uapi's anonymous union of
/// `exitinfo2` with `{ u32 fw_error; u32 vmm_error; }` is kept as the `u64`;
/// on little-endian x86 `fw_error` is its low half.
///
/// The request and response addresses are filled in by the wrappers below,
/// never by callers.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct SnpGuestRequestIoctl {
    /// Message version; must be non-zero (the kernel rejects 0).
    pub(crate) msg_version: u8,
    /// User address of the request structure.
    req_data: u64,
    /// User address of the response structure.
    resp_data: u64,
    /// bits 31:0 firmware error, bits 63:32 VMM error (out).
    pub(crate) exitinfo2: u64,
}

impl SnpGuestRequestIoctl {
    /// A request of message version `msg_version`, nothing reported yet.
    pub(crate) fn new(msg_version: u8) -> Self {
        SnpGuestRequestIoctl {
            msg_version,
            ..Default::default()
        }
    }

    /// The firmware error the kernel reported (low half of `exitinfo2`).
    pub(crate) fn fw_error(&self) -> u32 {
        self.exitinfo2 as u32
    }

    /// The VMM error the kernel reported (high half of `exitinfo2`).
    pub(crate) fn vmm_error(&self) -> u32 {
        (self.exitinfo2 >> 32) as u32
    }
}

/// `struct snp_report_req`.
#[repr(C)]
pub(crate) struct SnpReportReq {
    /// Copied into the report's `REPORT_DATA`.
    pub(crate) user_data: [u8; 64],
    /// VMPL to record in the report; must be ≥ the guest's current VMPL.
    pub(crate) vmpl: u32,
    /// Must be zero.
    pub(crate) rsvd: [u8; 28],
}

/// `struct snp_report_resp`: the decrypted `MSG_REPORT_RSP` message.
#[repr(C)]
pub(crate) struct SnpReportResp {
    /// The message; see `snp::parse_report_response` for its layout.
    pub(crate) data: [u8; SNP_RESP_LEN],
}

impl SnpReportResp {
    /// An all-zero response buffer.
    pub(crate) fn zeroed() -> Self {
        SnpReportResp {
            data: [0; SNP_RESP_LEN],
        }
    }
}

/// `struct snp_ext_report_req`.
#[repr(C)]
pub(crate) struct SnpExtReportReq {
    /// The plain report request.
    pub(crate) data: SnpReportReq,
    /// User address of the certificate buffer (set by [`snp_get_ext_report`]).
    certs_address: u64,
    /// Its length in bytes, a multiple of the page size (in, set by
    /// [`snp_get_ext_report`]); the length the host needs when it was too
    /// small (out).
    certs_len: u32,
}

impl SnpExtReportReq {
    /// An extended request for `data`; the certificate buffer is attached by
    /// [`snp_get_ext_report`].
    pub(crate) fn new(data: SnpReportReq) -> Self {
        SnpExtReportReq {
            data,
            certs_address: 0,
            certs_len: 0,
        }
    }

    /// The certificate buffer length: the one offered before the call, the
    /// one the host asked for after an `INVALID_LEN` failure.
    pub(crate) fn certs_len(&self) -> u32 {
        self.certs_len
    }
}

// ---------------------------------------------------------------------------
// TDX (include/uapi/linux/tdx-guest.h, and older out-of-tree drivers)
// ---------------------------------------------------------------------------

/// `struct tdx_report_req`.
#[repr(C)]
pub(crate) struct TdxReportReq {
    /// REPORTDATA in.
    pub(crate) reportdata: [u8; 64],
    /// TDREPORT_STRUCT out.
    pub(crate) tdreport: [u8; TDX_REPORT_LEN],
}

/// `struct tdx_quote_req` of the out-of-tree GET_QUOTE ioctl. Built only by
/// [`tdx_get_quote`].
#[repr(C)]
struct TdxQuoteReq {
    /// User address of a `tdx_quote_hdr` buffer.
    buf: u64,
    /// Its total length in bytes.
    len: u64,
}

/// GetQuote shared buffer: `struct tdx_quote_hdr { u64 version; u64 status;
/// u32 in_len; u32 out_len; u8 data[]; }`. Aligned like the C struct so the
/// status word can be read as a `u64` in place.
#[repr(C, align(8))]
pub(crate) struct TdxQuoteBuf(pub(crate) [u8; TDX_QUOTE_BUF_LEN]);

/// The request codes, generated by nix from the uapi definitions. They live
/// in a private module because nix makes them `pub unsafe fn`.
mod codes {
    use crate::ioctl::sys::{SnpGuestRequestIoctl, TdxQuoteReq, TdxReportReq};

    // SNP_GET_REPORT = _IOWR('S', 0x0, struct snp_guest_request_ioctl)
    nix::ioctl_readwrite!(snp_get_report, b'S', 0x0, SnpGuestRequestIoctl);
    // SNP_GET_EXT_REPORT = _IOWR('S', 0x2, struct snp_guest_request_ioctl)
    nix::ioctl_readwrite!(snp_get_ext_report, b'S', 0x2, SnpGuestRequestIoctl);
    // TDX_CMD_GET_REPORT0 = _IOWR('T', 1, struct tdx_report_req)
    nix::ioctl_readwrite!(tdx_get_report0, b'T', 1, TdxReportReq);
    // TDX_CMD_GET_QUOTE = _IOR('T', 2, struct tdx_quote_req) (out of tree)
    nix::ioctl_read!(tdx_get_quote, b'T', 2, TdxQuoteReq);
}

/// `SNP_GET_REPORT`: the firmware's answer to `req` lands in `resp`; on
/// failure `arg.exitinfo2` holds the firmware and VMM error codes.
pub(crate) fn snp_get_report(
    file: &File,
    arg: &mut SnpGuestRequestIoctl,
    req: &SnpReportReq,
    resp: &mut SnpReportResp,
) -> nix::Result<()> {
    arg.req_data = (&raw const *req) as u64;
    arg.resp_data = (&raw mut *resp) as u64;
    arg.exitinfo2 = 0;
    // SAFETY: `file` is an open file (a device that does not know the
    // request answers ENOTTY). `arg` is a valid, exclusively borrowed
    // `snp_guest_request_ioctl` whose addresses were just set to `req` (96
    // bytes, read by the kernel) and `resp` (4000 bytes, written by it),
    // both borrowed until this synchronous ioctl returns and matching the
    // uapi layouts.
    unsafe { codes::snp_get_report(file.as_raw_fd(), arg) }.map(drop)
}

/// `SNP_GET_EXT_REPORT`: like [`snp_get_report`], with `certs` (a multiple of
/// the page size) offered for the host's certificate table. After an
/// `INVALID_LEN` VMM error, [`SnpExtReportReq::certs_len`] is the length the
/// host needs.
pub(crate) fn snp_get_ext_report(
    file: &File,
    arg: &mut SnpGuestRequestIoctl,
    req: &mut SnpExtReportReq,
    certs: &mut [u8],
    resp: &mut SnpReportResp,
) -> nix::Result<()> {
    // A length that does not fit u32 is offered as 0 bytes: the kernel then
    // writes nothing past `certs` and asks for more.
    req.certs_len = u32::try_from(certs.len()).unwrap_or(0);
    req.certs_address = certs.as_mut_ptr() as u64;
    arg.req_data = (&raw mut *req) as u64;
    arg.resp_data = (&raw mut *resp) as u64;
    arg.exitinfo2 = 0;
    // SAFETY: as in `snp_get_report`, plus: `req.certs_address` points at
    // `certs`, an exclusively borrowed buffer of at least `req.certs_len`
    // bytes that the kernel may fill, and `req` is exclusively borrowed
    // because the kernel writes the needed length back into `certs_len`.
    // All of it outlives the synchronous ioctl.
    unsafe { codes::snp_get_ext_report(file.as_raw_fd(), arg) }.map(drop)
}

/// `TDX_CMD_GET_REPORT0`: fills `req.tdreport` for `req.reportdata`.
pub(crate) fn tdx_get_report0(file: &File, req: &mut TdxReportReq) -> nix::Result<()> {
    // SAFETY: `file` is an open file and `req` a valid, exclusively borrowed
    // `tdx_report_req` (1088 bytes, no addresses inside) that the kernel
    // reads and writes during the synchronous call only.
    unsafe { codes::tdx_get_report0(file.as_raw_fd(), req) }.map(drop)
}

/// The out-of-tree `TDX_CMD_GET_QUOTE`: hands `buf` (a framed request, see
/// `tdx::build_quote_request`) to the VMM, which writes the response into it.
pub(crate) fn tdx_get_quote(file: &File, buf: &mut TdxQuoteBuf) -> nix::Result<()> {
    let mut req = TdxQuoteReq {
        buf: buf.0.as_mut_ptr() as u64,
        len: TDX_QUOTE_BUF_LEN as u64,
    };
    // SAFETY: `file` is an open file; `req` is a valid `tdx_quote_req` whose
    // `buf`/`len` describe `buf`, an exclusively borrowed, 8-byte aligned
    // buffer of exactly `len` bytes that nothing else references while the
    // kernel reads and writes it.
    unsafe { codes::tdx_get_quote(file.as_raw_fd(), &mut req) }.map(drop)
}

/// The GetQuote `status` word, read in place: the GHCI lets the VMM update
/// it asynchronously after the ioctl returned, behind the compiler's back.
pub(crate) fn tdx_quote_status(buf: &TdxQuoteBuf) -> u64 {
    let status_ptr = buf
        .0
        .as_ptr()
        .wrapping_add(TDX_QUOTE_STATUS_OFFSET)
        .cast::<u64>();
    // SAFETY: offset 8 of the 8-byte aligned, 16 KiB `buf` is an aligned,
    // initialised u64 inside the allocation; the volatile read stops the
    // compiler from assuming nobody else writes it.
    unsafe { std::ptr::read_volatile(status_ptr) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    // Request codes computed by hand from the generic _IOC layout
    // (dir << 30 | size << 16 | type << 8 | nr, with _IOC_READ|_IOC_WRITE = 3
    // and _IOC_READ = 2), to check nix's macros and our struct sizes at once:
    //   SNP_GET_REPORT      = 3<<30 | 32<<16   | 'S'(0x53)<<8 | 0 = 0xC0205300
    //   SNP_GET_EXT_REPORT  = 3<<30 | 32<<16   | 0x53<<8      | 2 = 0xC0205302
    //   TDX_CMD_GET_REPORT0 = 3<<30 | 1088<<16 | 'T'(0x54)<<8 | 1 = 0xC4405401
    //   TDX_CMD_GET_QUOTE   = 2<<30 | 16<<16   | 0x54<<8      | 2 = 0x80105402
    const SNP_GET_REPORT: u64 = 0xC020_5300;
    const SNP_GET_EXT_REPORT: u64 = 0xC020_5302;
    const TDX_CMD_GET_REPORT0: u64 = 0xC440_5401;
    const TDX_CMD_GET_QUOTE: u64 = 0x8010_5402;

    #[test]
    fn ioctl_request_codes_match_the_uapi() {
        let sz = size_of::<SnpGuestRequestIoctl>();
        assert_eq!(
            nix::request_code_readwrite!(b'S', 0x0, sz) as u64,
            SNP_GET_REPORT
        );
        assert_eq!(
            nix::request_code_readwrite!(b'S', 0x2, sz) as u64,
            SNP_GET_EXT_REPORT
        );
        assert_eq!(
            nix::request_code_readwrite!(b'T', 1, size_of::<TdxReportReq>()) as u64,
            TDX_CMD_GET_REPORT0
        );
        assert_eq!(
            nix::request_code_read!(b'T', 2, size_of::<TdxQuoteReq>()) as u64,
            TDX_CMD_GET_QUOTE
        );
    }

    #[test]
    fn struct_layouts_match_the_uapi() {
        assert_eq!(size_of::<SnpGuestRequestIoctl>(), 32);
        assert_eq!(offset_of!(SnpGuestRequestIoctl, msg_version), 0);
        assert_eq!(offset_of!(SnpGuestRequestIoctl, req_data), 8);
        assert_eq!(offset_of!(SnpGuestRequestIoctl, resp_data), 16);
        assert_eq!(offset_of!(SnpGuestRequestIoctl, exitinfo2), 24);

        assert_eq!(size_of::<SnpReportReq>(), 96);
        assert_eq!(offset_of!(SnpReportReq, vmpl), 64);
        assert_eq!(offset_of!(SnpReportReq, rsvd), 68);
        assert_eq!(size_of::<SnpReportResp>(), 4000);

        assert_eq!(size_of::<SnpExtReportReq>(), 112);
        assert_eq!(offset_of!(SnpExtReportReq, certs_address), 96);
        assert_eq!(offset_of!(SnpExtReportReq, certs_len), 104);

        assert_eq!(size_of::<TdxReportReq>(), 1088);
        assert_eq!(offset_of!(TdxReportReq, tdreport), 64);
        assert_eq!(size_of::<TdxQuoteReq>(), 16);
        assert_eq!(offset_of!(TdxQuoteReq, len), 8);
        assert_eq!(size_of::<TdxQuoteBuf>(), TDX_QUOTE_BUF_LEN);
        assert_eq!(align_of::<TdxQuoteBuf>(), 8);
    }
}
