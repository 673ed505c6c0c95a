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
//! All structures mirror the kernel's uapi headers byte for byte
//! (`#[repr(C)]`, checked by size and offset tests) and are little-endian,
//! as every TEE guest these drivers exist for is x86-64.

// ioctl(2) is FFI by nature: the kernel reads and writes our structures
// through raw pointers that the type system cannot follow, so this module —
// and only this module — opts out of the crate-wide `deny(unsafe_code)`.
// Each unsafe block states what keeps it sound.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use chrysalis_attestation::error::{Error, Result};
use chrysalis_attestation::provider::{EvidenceProvider, RawEvidence};
use chrysalis_attestation::verified::Tee;

/// The SEV-SNP guest device (`sev-guest` driver, Linux ≥ 5.19).
pub const SEV_GUEST_DEVICE: &str = "/dev/sev-guest";

/// The TDX guest device (`tdx_guest` driver, Linux ≥ 6.2 upstream).
pub const TDX_GUEST_DEVICE: &str = "/dev/tdx_guest";

/// Size of an SEV-SNP attestation report in bytes (versions 2 and 3 of the
/// `ATTESTATION_REPORT` structure).
pub const SNP_REPORT_LEN: usize = 1184;

/// Size of a TDREPORT (`TDREPORT_STRUCT`) in bytes.
pub const TDX_REPORT_LEN: usize = 1024;

/// Wait limit for a TDX GetQuote request that the driver handed back while
/// still in flight (30 s): long enough for a QGS that fetches collateral,
/// short enough that a dead host service does not hang the caller.
pub const TDX_GET_QUOTE_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// SEV-SNP (include/uapi/linux/sev-guest.h)
// ---------------------------------------------------------------------------

/// `struct snp_guest_request_ioctl`. The uapi's anonymous union of
/// `exitinfo2` with `{ u32 fw_error; u32 vmm_error; }` is kept as the `u64`;
/// on little-endian x86 `fw_error` is its low half.
#[repr(C)]
#[derive(Debug, Default)]
struct SnpGuestRequestIoctl {
    /// Message version; must be non-zero (the kernel rejects 0).
    msg_version: u8,
    /// User address of the request structure.
    req_data: u64,
    /// User address of the response structure.
    resp_data: u64,
    /// bits 31:0 firmware error, bits 63:32 VMM error (out).
    exitinfo2: u64,
}

impl SnpGuestRequestIoctl {
    fn fw_error(&self) -> u32 {
        self.exitinfo2 as u32
    }

    fn vmm_error(&self) -> u32 {
        (self.exitinfo2 >> 32) as u32
    }
}

/// `struct snp_report_req`.
#[repr(C)]
struct SnpReportReq {
    /// Copied into the report's `REPORT_DATA`.
    user_data: [u8; 64],
    /// VMPL to record in the report; must be ≥ the guest's current VMPL.
    vmpl: u32,
    /// Must be zero.
    rsvd: [u8; 28],
}

/// `struct snp_report_resp`: the decrypted `MSG_REPORT_RSP` message.
#[repr(C)]
struct SnpReportResp {
    data: [u8; SNP_RESP_LEN],
}

/// `struct snp_ext_report_req`.
#[repr(C)]
struct SnpExtReportReq {
    data: SnpReportReq,
    /// User address of the certificate buffer.
    certs_address: u64,
    /// Its length in bytes, a multiple of the page size (in); the length the
    /// host needs when it was too small (out).
    certs_len: u32,
}

const SNP_RESP_LEN: usize = 4000;
/// `MSG_REPORT_RSP` header: status u32, report_size u32, 24 reserved bytes.
const SNP_RESP_HEADER_LEN: usize = 32;
/// First message version of the SNP guest-request ABI.
const SNP_MSG_VERSION: u8 = 1;
/// `SNP_GUEST_VMM_ERR_INVALID_LEN`: the certificate buffer was too small.
const SNP_GUEST_VMM_ERR_INVALID_LEN: u32 = 1;
/// Certificate buffer offered first: the kernel's `SEV_FW_BLOB_MAX_SIZE`
/// (16 KiB), so one call suffices whenever the kernel can serve at all.
const SNP_CERTS_INITIAL: usize = 16 * 1024;
/// Largest certificate buffer we grow to if the host asks for more.
const SNP_CERTS_LIMIT: usize = 64 * 1024;
const PAGE_SIZE: usize = 4096;
/// One entry of the SNP certificate table: GUID (16), offset u32, length u32.
const SNP_CERT_ENTRY_LEN: usize = 24;

// ---------------------------------------------------------------------------
// TDX (include/uapi/linux/tdx-guest.h, and older out-of-tree drivers)
// ---------------------------------------------------------------------------

/// `struct tdx_report_req`.
#[repr(C)]
struct TdxReportReq {
    /// REPORTDATA in.
    reportdata: [u8; 64],
    /// TDREPORT_STRUCT out.
    tdreport: [u8; TDX_REPORT_LEN],
}

/// `struct tdx_quote_req` of the out-of-tree GET_QUOTE ioctl.
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
struct TdxQuoteBuf([u8; TDX_QUOTE_BUF_LEN]);

const TDX_QUOTE_BUF_LEN: usize = 16 * 1024;
const TDX_QUOTE_HDR_LEN: usize = 24;
const GET_QUOTE_VERSION: u64 = 1;
const GET_QUOTE_SUCCESS: u64 = 0;
const GET_QUOTE_IN_FLIGHT: u64 = u64::MAX;
const GET_QUOTE_ERROR: u64 = 0x8000_0000_0000_0000;
const GET_QUOTE_SERVICE_UNAVAILABLE: u64 = 0x8000_0000_0000_0001;

/// The GetQuote `data` is, by the convention of Intel's QGS and of the
/// drivers that predate in-kernel quoting, a 4-byte big-endian length
/// followed by a QGS message. The message header is `{ u16 major; u16 minor;
/// u32 type; u32 size (whole message); u32 error_code; }`, little-endian.
const QGS_PREFIX_LEN: usize = 4;
const QGS_HEADER_LEN: usize = 16;
const QGS_MAJOR: u16 = 1;
const QGS_MINOR: u16 = 1;
const QGS_GET_QUOTE_REQ: u32 = 0;
const QGS_GET_QUOTE_RESP: u32 = 1;

/// The request codes, generated by nix from the uapi definitions. They live
/// in a private module because nix makes them `pub unsafe fn`.
mod sys {
    use super::{SnpGuestRequestIoctl, TdxQuoteReq, TdxReportReq};

    // SNP_GET_REPORT = _IOWR('S', 0x0, struct snp_guest_request_ioctl)
    nix::ioctl_readwrite!(snp_get_report, b'S', 0x0, SnpGuestRequestIoctl);
    // SNP_GET_EXT_REPORT = _IOWR('S', 0x2, struct snp_guest_request_ioctl)
    nix::ioctl_readwrite!(snp_get_ext_report, b'S', 0x2, SnpGuestRequestIoctl);
    // TDX_CMD_GET_REPORT0 = _IOWR('T', 1, struct tdx_report_req)
    nix::ioctl_readwrite!(tdx_get_report0, b'T', 1, TdxReportReq);
    // TDX_CMD_GET_QUOTE = _IOR('T', 2, struct tdx_quote_req) (out of tree)
    nix::ioctl_read!(tdx_get_quote, b'T', 2, TdxQuoteReq);
}

/// Opens a guest device read-write, turning "not there" into
/// [`Error::Unsupported`] naming the path.
fn open_device(path: &Path, missing: &str) -> Result<File> {
    match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => Ok(f),
        Err(e)
            if e.kind() == ErrorKind::NotFound
                || matches!(e.raw_os_error(), Some(nix::libc::ENODEV | nix::libc::ENXIO)) =>
        {
            Err(Error::Unsupported(format!(
                "{} does not exist: {missing}",
                path.display()
            )))
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

// ---------------------------------------------------------------------------
// SevGuestProvider
// ---------------------------------------------------------------------------

/// SEV-SNP evidence from `/dev/sev-guest`.
///
/// By default it asks for the extended report (`SNP_GET_EXT_REPORT`), which
/// adds the certificate table the host published (VCEK, ASK, ARK), and falls
/// back to the plain report on drivers without it.
#[derive(Debug, Clone)]
pub struct SevGuestProvider {
    path: PathBuf,
    vmpl: u32,
    certificates: bool,
}

/// An SNP report and, when the host published one, its certificate table.
pub type ReportAndCerts = (Vec<u8>, Option<Vec<u8>>);

const SEV_MISSING: &str = "not an SEV-SNP guest, or the sev-guest driver is not loaded";

impl SevGuestProvider {
    /// Uses the device at `path`; nothing is opened until a request.
    pub fn new(path: PathBuf) -> Self {
        SevGuestProvider {
            path,
            vmpl: 0,
            certificates: true,
        }
    }

    /// [`SevGuestProvider::new`] at [`SEV_GUEST_DEVICE`].
    pub fn system() -> Self {
        Self::new(PathBuf::from(SEV_GUEST_DEVICE))
    }

    /// Records `vmpl` (0..=3) in the report instead of 0. It must be at
    /// least the VMPL the guest runs at, or the firmware answers
    /// `INVALID_PARAM` (status 0x16).
    pub fn with_vmpl(mut self, vmpl: u32) -> Result<Self> {
        if vmpl > 3 {
            return Err(Error::Encoding(format!(
                "SNP VMPL {vmpl} is out of range 0..=3"
            )));
        }
        self.vmpl = vmpl;
        Ok(self)
    }

    /// Whether [`EvidenceProvider::evidence`] asks for the host's
    /// certificate table too (default: yes).
    pub fn with_certificates(mut self, certificates: bool) -> Self {
        self.certificates = certificates;
        self
    }

    /// The device path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks that the device exists and opens; [`Error::Unsupported`] naming
    /// the path when it does not exist.
    pub fn probe(&self) -> Result<()> {
        open_device(&self.path, SEV_MISSING).map(drop)
    }

    fn request(&self, report_data: &[u8; 64]) -> SnpReportReq {
        SnpReportReq {
            user_data: *report_data,
            vmpl: self.vmpl,
            rsvd: [0; 28],
        }
    }

    /// An attestation report ([`SNP_REPORT_LEN`] bytes or more, as the
    /// firmware sized it) with `report_data` as its `REPORT_DATA`
    /// (`SNP_GET_REPORT`).
    pub fn report(&self, report_data: &[u8; 64]) -> Result<Vec<u8>> {
        let file = open_device(&self.path, SEV_MISSING)?;
        let req = self.request(report_data);
        let mut resp = SnpReportResp {
            data: [0; SNP_RESP_LEN],
        };
        let mut arg = SnpGuestRequestIoctl {
            msg_version: SNP_MSG_VERSION,
            req_data: (&raw const req) as u64,
            resp_data: (&raw mut resp) as u64,
            exitinfo2: 0,
        };
        // SAFETY: `file` is an open sev-guest device. `arg` is a valid,
        // exclusively borrowed `snp_guest_request_ioctl` whose addresses
        // point at `req` (96 bytes, read by the kernel) and `resp` (4000
        // bytes, written by it), both live on this stack frame until the
        // synchronous ioctl returns and matching the uapi layouts.
        let r = unsafe { sys::snp_get_report(file.as_raw_fd(), &mut arg) };
        if let Err(errno) = r {
            return Err(snp_ioctl_error(&self.path, "SNP_GET_REPORT", errno, &arg));
        }
        parse_report_response(&self.path, &resp.data)
    }

    /// A report plus the host's certificate table (`SNP_GET_EXT_REPORT`);
    /// the table is `None` when the host published none. Returns
    /// [`Error::Unsupported`] when the driver lacks the extended request.
    pub fn ext_report(&self, report_data: &[u8; 64]) -> Result<ReportAndCerts> {
        self.try_ext_report(report_data)?.ok_or_else(|| {
            Error::Unsupported(format!(
                "{}: the driver has no SNP_GET_EXT_REPORT",
                self.path.display()
            ))
        })
    }

    /// `Ok(None)` when the driver does not know the extended request.
    fn try_ext_report(&self, report_data: &[u8; 64]) -> Result<Option<ReportAndCerts>> {
        let file = open_device(&self.path, SEV_MISSING)?;
        let mut certs_len = SNP_CERTS_INITIAL;
        // Two rounds at most: the second with the size the host asked for.
        for _ in 0..2 {
            let mut certs = vec![0u8; certs_len];
            let mut req = SnpExtReportReq {
                data: self.request(report_data),
                certs_address: certs.as_mut_ptr() as u64,
                certs_len: certs_len as u32,
            };
            let mut resp = SnpReportResp {
                data: [0; SNP_RESP_LEN],
            };
            let mut arg = SnpGuestRequestIoctl {
                msg_version: SNP_MSG_VERSION,
                req_data: (&raw mut req) as u64,
                resp_data: (&raw mut resp) as u64,
                exitinfo2: 0,
            };
            // SAFETY: as in `report`, plus: `req.certs_address` points at
            // `certs`, a live heap buffer of exactly `req.certs_len` bytes
            // that the kernel may fill, and `req` is writable because the
            // kernel writes the needed length back into `certs_len`. All of
            // it outlives the synchronous ioctl.
            let r = unsafe { sys::snp_get_ext_report(file.as_raw_fd(), &mut arg) };
            match r {
                Ok(_) => {
                    let report = parse_report_response(&self.path, &resp.data)?;
                    return Ok(Some((report, trim_cert_table(&certs)?)));
                }
                Err(Errno::ENOTTY) => return Ok(None),
                Err(_) if arg.vmm_error() == SNP_GUEST_VMM_ERR_INVALID_LEN => {
                    let need = req.certs_len as usize;
                    if need <= certs_len
                        || need > SNP_CERTS_LIMIT
                        || !need.is_multiple_of(PAGE_SIZE)
                    {
                        return Err(Error::io(
                            &self.path,
                            io::Error::other(format!(
                                "SNP_GET_EXT_REPORT: the host wants a {need}-byte certificate \
                                 buffer (offered {certs_len}, limit {SNP_CERTS_LIMIT})"
                            )),
                        ));
                    }
                    certs_len = need;
                }
                Err(errno) => {
                    return Err(snp_ioctl_error(
                        &self.path,
                        "SNP_GET_EXT_REPORT",
                        errno,
                        &arg,
                    ))
                }
            }
        }
        Err(Error::io(
            &self.path,
            io::Error::other("SNP_GET_EXT_REPORT: the host kept changing the certificate size"),
        ))
    }
}

impl EvidenceProvider for SevGuestProvider {
    fn name(&self) -> &'static str {
        "ioctl"
    }

    fn tee(&self) -> Tee {
        Tee::Snp
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<RawEvidence> {
        let (bytes, aux) = if self.certificates {
            match self.try_ext_report(report_data)? {
                Some(found) => found,
                None => (self.report(report_data)?, None),
            }
        } else {
            (self.report(report_data)?, None)
        };
        Ok(RawEvidence {
            tee: Tee::Snp,
            bytes,
            aux,
            provider: "ioctl",
        })
    }
}

/// An SNP guest-request ioctl failure with the firmware and VMM error codes
/// the kernel reported in `exitinfo2`.
fn snp_ioctl_error(path: &Path, cmd: &str, errno: Errno, arg: &SnpGuestRequestIoctl) -> Error {
    let kind = io::Error::from_raw_os_error(errno as i32).kind();
    Error::io(
        path,
        io::Error::new(
            kind,
            format!(
                "{cmd} failed: {errno} (firmware error {:#x}, VMM error {:#x})",
                arg.fw_error(),
                arg.vmm_error()
            ),
        ),
    )
}

/// Takes the report out of a decrypted `MSG_REPORT_RSP`: status (u32 LE) at
/// 0, report size in bytes (u32 LE) at 4, 24 reserved bytes, the report at
/// 32. A non-zero status is the firmware refusing the request (0x16
/// `INVALID_PARAM`, e.g. a VMPL below the guest's own).
fn parse_report_response(device: &Path, resp: &[u8]) -> Result<Vec<u8>> {
    if resp.len() < SNP_RESP_HEADER_LEN {
        return Err(Error::Encoding(format!(
            "SNP MSG_REPORT_RSP is {} bytes, shorter than its {SNP_RESP_HEADER_LEN}-byte header",
            resp.len()
        )));
    }
    let status = le_u32(resp, 0);
    if status != 0 {
        let name = match status {
            0x16 => " (INVALID_PARAM)",
            0x27 => " (INVALID_KEY)",
            _ => "",
        };
        return Err(Error::io(
            device,
            io::Error::other(format!(
                "the SNP firmware refused the report request: MSG_REPORT_RSP status {status:#x}{name}"
            )),
        ));
    }
    let size = le_u32(resp, 4) as usize;
    let room = resp.len() - SNP_RESP_HEADER_LEN;
    if size < SNP_REPORT_LEN || size > room {
        return Err(Error::Encoding(format!(
            "SNP MSG_REPORT_RSP report_size {size} is outside {SNP_REPORT_LEN}..={room} bytes"
        )));
    }
    Ok(resp[SNP_RESP_HEADER_LEN..SNP_RESP_HEADER_LEN + size].to_vec())
}

/// Cuts the certificate buffer down to the table and the certificates it
/// points at. The table is a run of 24-byte entries (GUID, offset u32 LE,
/// length u32 LE; offsets from the start of the buffer) ended by an all-zero
/// entry. `None` when the table is empty (the host published nothing).
fn trim_cert_table(buf: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut end = 0usize;
    let mut at = 0usize;
    loop {
        let Some(entry) = buf.get(at..at + SNP_CERT_ENTRY_LEN) else {
            return Err(Error::Encoding(format!(
                "SNP certificate table has no terminating entry within {} bytes",
                buf.len()
            )));
        };
        at += SNP_CERT_ENTRY_LEN;
        if entry.iter().all(|&b| b == 0) {
            break;
        }
        let offset = le_u32(entry, 16) as usize;
        let len = le_u32(entry, 20) as usize;
        let cert_end = offset.checked_add(len).filter(|&e| e <= buf.len());
        match cert_end {
            Some(e) => end = end.max(e),
            None => {
                return Err(Error::Encoding(format!(
                    "SNP certificate table entry {} points at {offset}+{len}, past the \
                     {}-byte buffer",
                    at / SNP_CERT_ENTRY_LEN - 1,
                    buf.len()
                )))
            }
        }
    }
    if at == SNP_CERT_ENTRY_LEN {
        return Ok(None);
    }
    Ok(Some(buf[..end.max(at)].to_vec()))
}

// ---------------------------------------------------------------------------
// TdxGuestProvider
// ---------------------------------------------------------------------------

/// TDX evidence from `/dev/tdx_guest`.
///
/// [`TdxGuestProvider::tdreport`] works on every kernel with the driver.
/// A quote — what [`EvidenceProvider::evidence`] must return — needs the
/// out-of-tree `TDX_CMD_GET_QUOTE` ioctl; without it `evidence` returns
/// [`Error::Unsupported`] pointing at configfs-tsm.
#[derive(Debug, Clone)]
pub struct TdxGuestProvider {
    path: PathBuf,
}

const TDX_MISSING: &str = "not a TDX guest, or the tdx_guest driver is not loaded";

impl TdxGuestProvider {
    /// Uses the device at `path`; nothing is opened until a request.
    pub fn new(path: PathBuf) -> Self {
        TdxGuestProvider { path }
    }

    /// [`TdxGuestProvider::new`] at [`TDX_GUEST_DEVICE`].
    pub fn system() -> Self {
        Self::new(PathBuf::from(TDX_GUEST_DEVICE))
    }

    /// The device path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks that the device exists and opens; [`Error::Unsupported`] naming
    /// the path when it does not exist.
    pub fn probe(&self) -> Result<()> {
        open_device(&self.path, TDX_MISSING).map(drop)
    }

    fn no_quote(&self) -> Error {
        Error::Unsupported(format!(
            "{} gives a TDREPORT, not a quote: this tdx_guest driver has no GET_QUOTE ioctl, \
             and a quote needs the host's Quote Generation Service; use configfs-tsm \
             (Linux >= 6.7, {}) instead",
            self.path.display(),
            super::tsm::DEFAULT_ROOT
        ))
    }

    /// A TDREPORT ([`TDX_REPORT_LEN`] bytes, `TDREPORT_STRUCT`) with
    /// `report_data` as its REPORTDATA (`TDX_CMD_GET_REPORT0`). It is MAC'd
    /// with a platform key, so only the local TDX module or quoting enclave
    /// can check it; remote verifiers need a quote.
    pub fn tdreport(&self, report_data: &[u8; 64]) -> Result<Vec<u8>> {
        let file = open_device(&self.path, TDX_MISSING)?;
        let mut req = TdxReportReq {
            reportdata: *report_data,
            tdreport: [0; TDX_REPORT_LEN],
        };
        // SAFETY: `file` is an open tdx_guest device and `req` a valid,
        // exclusively borrowed `tdx_report_req` (1088 bytes) that the kernel
        // reads and writes during the synchronous call only.
        let r = unsafe { sys::tdx_get_report0(file.as_raw_fd(), &mut req) };
        match r {
            Ok(_) => Ok(req.tdreport.to_vec()),
            Err(Errno::ENOTTY | Errno::EINVAL) => Err(Error::Unsupported(format!(
                "{}: the driver does not know TDX_CMD_GET_REPORT0 (tdx_guest before Linux 6.2?)",
                self.path.display()
            ))),
            Err(errno) => Err(Error::io(
                &self.path,
                io::Error::new(
                    io::Error::from_raw_os_error(errno as i32).kind(),
                    format!("TDX_CMD_GET_REPORT0 failed: {errno}"),
                ),
            )),
        }
    }

    /// A TDX quote for `report_data` through the out-of-tree
    /// `TDX_CMD_GET_QUOTE` ioctl: the TDREPORT is framed as a QGS
    /// `GET_QUOTE_REQ` in a 16 KiB `tdx_quote_hdr` buffer, the host's Quote
    /// Generation Service answers with a `GET_QUOTE_RESP`. Returns
    /// [`Error::Unsupported`] when the driver lacks the ioctl (`ENOTTY`,
    /// `EINVAL`).
    pub fn quote(&self, report_data: &[u8; 64]) -> Result<Vec<u8>> {
        let tdreport: [u8; TDX_REPORT_LEN] = self
            .tdreport(report_data)?
            .try_into()
            .expect("GET_REPORT0 returns TDX_REPORT_LEN bytes");
        let file = open_device(&self.path, TDX_MISSING)?;
        let mut buf = Box::new(TdxQuoteBuf([0; TDX_QUOTE_BUF_LEN]));
        build_quote_request(&tdreport, &mut buf.0);
        let mut req = TdxQuoteReq {
            buf: buf.0.as_mut_ptr() as u64,
            len: TDX_QUOTE_BUF_LEN as u64,
        };
        // SAFETY: `file` is an open tdx_guest device; `req` is a valid
        // `tdx_quote_req` whose `buf`/`len` describe `buf`, a live, 8-byte
        // aligned heap allocation of exactly `len` bytes that nothing else
        // references while the kernel reads and writes it.
        let r = unsafe { sys::tdx_get_quote(file.as_raw_fd(), &mut req) };
        match r {
            Ok(_) => {}
            Err(Errno::ENOTTY | Errno::EINVAL) => return Err(self.no_quote()),
            Err(errno) => {
                return Err(Error::io(
                    &self.path,
                    io::Error::new(
                        io::Error::from_raw_os_error(errno as i32).kind(),
                        format!("TDX_CMD_GET_QUOTE failed: {errno}"),
                    ),
                ))
            }
        }

        // The drivers we know copy the buffer back only once the VMM is
        // done, so this loop normally ends at once. The GHCI lets the VMM
        // finish asynchronously by updating `status` in place, so a driver
        // that returns early leaves it IN_FLIGHT; wait, but never unbounded.
        let deadline = Instant::now() + TDX_GET_QUOTE_TIMEOUT;
        loop {
            let status_ptr = buf.0.as_ptr().wrapping_add(8).cast::<u64>();
            // SAFETY: offset 8 of the 8-byte aligned, 16 KiB `buf` is an
            // aligned, initialised u64 inside the allocation; the volatile
            // read stops the compiler from assuming nobody else writes it.
            let status = unsafe { std::ptr::read_volatile(status_ptr) };
            if status != GET_QUOTE_IN_FLIGHT {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::io(
                    &self.path,
                    io::Error::new(
                        ErrorKind::TimedOut,
                        format!(
                            "TDX GetQuote still in flight after {} s",
                            TDX_GET_QUOTE_TIMEOUT.as_secs()
                        ),
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        parse_quote_response(&self.path, &buf.0)
    }
}

impl EvidenceProvider for TdxGuestProvider {
    fn name(&self) -> &'static str {
        "ioctl"
    }

    fn extend_rtmr3(&self, digest: &[u8; 48]) -> Result<()> {
        super::rtmr::extend_rtmr3_sysfs(
            std::path::Path::new(super::rtmr::TDX_MEASUREMENTS_DIR),
            digest,
        )
    }

    fn tee(&self) -> Tee {
        Tee::Tdx
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<RawEvidence> {
        let bytes = self.quote(report_data)?;
        Ok(RawEvidence {
            tee: Tee::Tdx,
            bytes,
            aux: None,
            provider: "ioctl",
        })
    }
}

/// Fills a GetQuote buffer: header (version 1, status 0, `in_len`, `out_len`
/// 0, all little-endian) and `data` = big-endian u32 message length + QGS
/// `GET_QUOTE_REQ { header, u32 report_size, u32 id_list_size (0), report }`.
fn build_quote_request(tdreport: &[u8; TDX_REPORT_LEN], buf: &mut [u8]) {
    let msg_len = QGS_HEADER_LEN + 8 + TDX_REPORT_LEN;
    let in_len = QGS_PREFIX_LEN + msg_len;
    buf[..TDX_QUOTE_HDR_LEN + in_len].fill(0);
    buf[0..8].copy_from_slice(&GET_QUOTE_VERSION.to_le_bytes());
    buf[8..16].copy_from_slice(&GET_QUOTE_SUCCESS.to_le_bytes());
    buf[16..20].copy_from_slice(&(in_len as u32).to_le_bytes());
    buf[20..24].copy_from_slice(&0u32.to_le_bytes());
    let data = &mut buf[TDX_QUOTE_HDR_LEN..];
    data[0..4].copy_from_slice(&(msg_len as u32).to_be_bytes());
    let msg = &mut data[QGS_PREFIX_LEN..];
    msg[0..2].copy_from_slice(&QGS_MAJOR.to_le_bytes());
    msg[2..4].copy_from_slice(&QGS_MINOR.to_le_bytes());
    msg[4..8].copy_from_slice(&QGS_GET_QUOTE_REQ.to_le_bytes());
    msg[8..12].copy_from_slice(&(msg_len as u32).to_le_bytes());
    msg[12..16].copy_from_slice(&0u32.to_le_bytes());
    msg[16..20].copy_from_slice(&(TDX_REPORT_LEN as u32).to_le_bytes());
    msg[20..24].copy_from_slice(&0u32.to_le_bytes());
    msg[24..24 + TDX_REPORT_LEN].copy_from_slice(tdreport);
}

/// Takes the quote out of a completed GetQuote buffer (see
/// [`build_quote_request`]); the response message is `GET_QUOTE_RESP {
/// header, u32 selected_id_size, u32 quote_size, id[selected_id_size],
/// quote[quote_size] }`.
fn parse_quote_response(device: &Path, buf: &[u8]) -> Result<Vec<u8>> {
    let status = le_u64(buf, 8);
    let failed = |what: String| Error::io(device, io::Error::other(what));
    match status {
        GET_QUOTE_SUCCESS => {}
        GET_QUOTE_SERVICE_UNAVAILABLE => {
            return Err(failed(format!(
                "TDX GetQuote: the host's quote generation service is unavailable \
                 (status {status:#x})"
            )))
        }
        GET_QUOTE_ERROR => {
            return Err(failed(format!(
                "TDX GetQuote: the VMM reported an error (status {status:#x})"
            )))
        }
        _ => return Err(failed(format!("TDX GetQuote: unknown status {status:#x}"))),
    }
    let out_len = le_u32(buf, 20) as usize;
    let data = &buf[TDX_QUOTE_HDR_LEN..];
    let malformed = |what: String| Error::Encoding(format!("TDX GetQuote response: {what}"));
    if out_len > data.len() || out_len < QGS_PREFIX_LEN + QGS_HEADER_LEN + 8 {
        return Err(malformed(format!(
            "out_len {out_len} is outside {}..={}",
            QGS_PREFIX_LEN + QGS_HEADER_LEN + 8,
            data.len()
        )));
    }
    let msg_len = u32::from_be_bytes(data[0..4].try_into().expect("4 bytes")) as usize;
    if msg_len > out_len - QGS_PREFIX_LEN || msg_len < QGS_HEADER_LEN + 8 {
        return Err(malformed(format!(
            "QGS message length {msg_len} does not fit out_len {out_len}"
        )));
    }
    let msg = &data[QGS_PREFIX_LEN..QGS_PREFIX_LEN + msg_len];
    let (major, kind, size, error) = (
        le_u16(msg, 0),
        le_u32(msg, 4),
        le_u32(msg, 8) as usize,
        le_u32(msg, 12),
    );
    if major != QGS_MAJOR || kind != QGS_GET_QUOTE_RESP || size != msg_len {
        return Err(malformed(format!(
            "QGS header major {major}, type {kind}, size {size} (expected {QGS_MAJOR}, \
             {QGS_GET_QUOTE_RESP}, {msg_len})"
        )));
    }
    if error != 0 {
        return Err(failed(format!(
            "TDX GetQuote: the quote generation service answered error {error:#x}"
        )));
    }
    let id_len = le_u32(msg, 16) as usize;
    let quote_len = le_u32(msg, 20) as usize;
    let start = (QGS_HEADER_LEN + 8).checked_add(id_len);
    let end = start.and_then(|s| s.checked_add(quote_len));
    match (start, end) {
        (Some(start), Some(end)) if end <= msg_len && quote_len > 0 => Ok(msg[start..end].to_vec()),
        _ => Err(malformed(format!(
            "id size {id_len} + quote size {quote_len} do not fit the {msg_len}-byte message"
        ))),
    }
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

    #[test]
    fn exitinfo2_splits_into_firmware_and_vmm_errors() {
        let arg = SnpGuestRequestIoctl {
            exitinfo2: (1u64 << 32) | 0x16,
            ..Default::default()
        };
        assert_eq!(arg.fw_error(), 0x16);
        assert_eq!(arg.vmm_error(), SNP_GUEST_VMM_ERR_INVALID_LEN);
        let msg =
            snp_ioctl_error(Path::new("/dev/x"), "SNP_GET_REPORT", Errno::EIO, &arg).to_string();
        assert!(msg.contains("firmware error 0x16"), "{msg}");
        assert!(msg.contains("VMM error 0x1"), "{msg}");
    }

    fn response(status: u32, size: u32) -> Vec<u8> {
        let mut r = vec![0u8; SNP_RESP_LEN];
        r[0..4].copy_from_slice(&status.to_le_bytes());
        r[4..8].copy_from_slice(&size.to_le_bytes());
        for (i, b) in r[SNP_RESP_HEADER_LEN..].iter_mut().enumerate() {
            *b = i as u8;
        }
        r
    }

    #[test]
    fn snp_response_header_is_checked() {
        let dev = Path::new("/dev/sev-guest");
        let report = parse_report_response(dev, &response(0, 1184)).unwrap();
        assert_eq!(report.len(), SNP_REPORT_LEN);
        assert_eq!(report[..4], [0, 1, 2, 3]);

        // A larger report (future versions) that still fits is returned whole.
        assert_eq!(
            parse_report_response(dev, &response(0, 3968))
                .unwrap()
                .len(),
            3968
        );

        let err = parse_report_response(dev, &response(0x16, 1184)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("status 0x16 (INVALID_PARAM)"), "{msg}");
        assert!(msg.contains("/dev/sev-guest"), "{msg}");

        for bad in [0, 1183, 3969, u32::MAX] {
            let err = parse_report_response(dev, &response(0, bad)).unwrap_err();
            assert!(matches!(err, Error::Encoding(_)), "{bad}: {err:?}");
        }
        assert!(matches!(
            parse_report_response(dev, &[0u8; 31]),
            Err(Error::Encoding(_))
        ));
    }

    fn cert_entry(guid: u8, offset: u32, len: u32) -> Vec<u8> {
        let mut e = vec![guid; 16];
        e.extend_from_slice(&offset.to_le_bytes());
        e.extend_from_slice(&len.to_le_bytes());
        e
    }

    #[test]
    fn certificate_table_is_trimmed() {
        assert_eq!(trim_cert_table(&[0u8; 4096]).unwrap(), None);

        let mut buf = vec![0u8; 4096];
        let mut table = cert_entry(0xA1, 72, 100);
        table.extend(cert_entry(0xA2, 172, 50));
        buf[..48].copy_from_slice(&table);
        let trimmed = trim_cert_table(&buf).unwrap().unwrap();
        assert_eq!(trimmed.len(), 222);

        let mut bad = vec![0u8; 4096];
        bad[..24].copy_from_slice(&cert_entry(0xA1, 4000, 100));
        assert!(matches!(trim_cert_table(&bad), Err(Error::Encoding(_))));

        // No terminator: every entry non-zero up to the end.
        let full: Vec<u8> = (0..4).flat_map(|_| cert_entry(0xA1, 0, 1)).collect();
        assert!(matches!(trim_cert_table(&full), Err(Error::Encoding(_))));
    }

    #[test]
    fn quote_request_is_framed_for_qgs() {
        let mut tdreport = [0u8; TDX_REPORT_LEN];
        tdreport[0] = 0x81;
        tdreport[TDX_REPORT_LEN - 1] = 0x7e;
        let mut buf = vec![0xffu8; TDX_QUOTE_BUF_LEN];
        build_quote_request(&tdreport, &mut buf);
        assert_eq!(le_u64(&buf, 0), 1, "version");
        assert_eq!(le_u64(&buf, 8), 0, "status");
        assert_eq!(le_u32(&buf, 16), 4 + 16 + 8 + 1024, "in_len");
        assert_eq!(le_u32(&buf, 20), 0, "out_len");
        let data = &buf[24..];
        assert_eq!(data[0..4], 1048u32.to_be_bytes());
        assert_eq!(le_u16(data, 4), 1); // major
        assert_eq!(le_u32(data, 8), QGS_GET_QUOTE_REQ);
        assert_eq!(le_u32(data, 12), 1048); // size
        assert_eq!(le_u32(data, 20), 1024); // report_size
        assert_eq!(le_u32(data, 24), 0); // id_list_size
        assert_eq!(data[28], 0x81);
        assert_eq!(data[28 + 1023], 0x7e);
    }

    /// A completed GetQuote buffer as a VMM + QGS would leave it.
    fn quote_response(status: u64, qgs_error: u32, id: &[u8], quote: &[u8]) -> Vec<u8> {
        let msg_len = 16 + 8 + id.len() + quote.len();
        let mut msg = Vec::new();
        msg.extend_from_slice(&QGS_MAJOR.to_le_bytes());
        msg.extend_from_slice(&QGS_MINOR.to_le_bytes());
        msg.extend_from_slice(&QGS_GET_QUOTE_RESP.to_le_bytes());
        msg.extend_from_slice(&(msg_len as u32).to_le_bytes());
        msg.extend_from_slice(&qgs_error.to_le_bytes());
        msg.extend_from_slice(&(id.len() as u32).to_le_bytes());
        msg.extend_from_slice(&(quote.len() as u32).to_le_bytes());
        msg.extend_from_slice(id);
        msg.extend_from_slice(quote);
        let mut buf = vec![0u8; TDX_QUOTE_BUF_LEN];
        buf[0..8].copy_from_slice(&1u64.to_le_bytes());
        buf[8..16].copy_from_slice(&status.to_le_bytes());
        buf[20..24].copy_from_slice(&((4 + msg_len) as u32).to_le_bytes());
        buf[24..28].copy_from_slice(&(msg_len as u32).to_be_bytes());
        buf[28..28 + msg_len].copy_from_slice(&msg);
        buf
    }

    #[test]
    fn quote_response_is_parsed_and_checked() {
        let dev = Path::new("/dev/tdx_guest");
        let quote = b"\x04\x00\x02\x00quote-bytes".to_vec();
        let ok = quote_response(GET_QUOTE_SUCCESS, 0, &[9; 16], &quote);
        assert_eq!(parse_quote_response(dev, &ok).unwrap(), quote);

        let err = parse_quote_response(
            dev,
            &quote_response(GET_QUOTE_SERVICE_UNAVAILABLE, 0, &[], &quote),
        )
        .unwrap_err();
        assert!(err.to_string().contains("unavailable"), "{err}");
        let err = parse_quote_response(dev, &quote_response(GET_QUOTE_ERROR, 0, &[], &quote))
            .unwrap_err();
        assert!(err.to_string().contains("VMM reported an error"), "{err}");
        let err = parse_quote_response(dev, &quote_response(0, 0x12001, &[], &quote)).unwrap_err();
        assert!(err.to_string().contains("0x12001"), "{err}");

        // out_len beyond the buffer.
        let mut bad = ok.clone();
        bad[20..24].copy_from_slice(&(TDX_QUOTE_BUF_LEN as u32).to_le_bytes());
        assert!(matches!(
            parse_quote_response(dev, &bad),
            Err(Error::Encoding(_))
        ));
        // Quote size past the message.
        let mut bad = ok.clone();
        bad[28 + 20..28 + 24].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(
            parse_quote_response(dev, &bad),
            Err(Error::Encoding(_))
        ));
        // A request echoed back is not a response.
        let mut bad = ok;
        bad[28 + 4..28 + 8].copy_from_slice(&QGS_GET_QUOTE_REQ.to_le_bytes());
        assert!(matches!(
            parse_quote_response(dev, &bad),
            Err(Error::Encoding(_))
        ));
    }

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

    #[test]
    fn vmpl_range_is_checked() {
        assert!(SevGuestProvider::system().with_vmpl(3).is_ok());
        assert!(matches!(
            SevGuestProvider::system().with_vmpl(4),
            Err(Error::Encoding(_))
        ));
    }

    #[test]
    fn no_quote_message_points_at_configfs_tsm() {
        let msg = TdxGuestProvider::system().no_quote().to_string();
        assert!(
            msg.contains("/dev/tdx_guest gives a TDREPORT, not a quote"),
            "{msg}"
        );
        assert!(msg.contains("configfs-tsm"), "{msg}");
        assert!(msg.contains("6.7"), "{msg}");
    }
}
