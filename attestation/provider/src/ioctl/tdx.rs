//! TDX evidence through `/dev/tdx_guest`: the TDREPORT
//! (`TDX_CMD_GET_REPORT0`, upstream since Linux 6.2) and, on the older
//! out-of-tree drivers that have it, a quote through `TDX_CMD_GET_QUOTE`:
//! the TDREPORT framed as a Quote Generation Service (QGS) request in a
//! `tdx_quote_hdr` buffer, answered by the host's QGS.

use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;

use chrysalis_attestation::error::{Error, Result};
use chrysalis_attestation::provider::{EvidenceProvider, RawEvidence};
use chrysalis_attestation::verified::Tee;

use super::device::{le_u16, le_u32, le_u64, open_device};
use super::sys::{self, TdxQuoteBuf, TdxReportReq, TDX_QUOTE_BUF_LEN, TDX_REPORT_LEN};

/// The TDX guest device (`tdx_guest` driver, Linux ≥ 6.2 upstream).
pub const TDX_GUEST_DEVICE: &str = "/dev/tdx_guest";

/// Wait limit for a TDX GetQuote request that the driver handed back while
/// still in flight (30 s): long enough for a QGS that fetches collateral,
/// short enough that a dead host service does not hang the caller.
pub const TDX_GET_QUOTE_TIMEOUT: Duration = Duration::from_secs(30);

/// `struct tdx_quote_hdr` before `data`: version u64, status u64, in_len
/// u32, out_len u32.
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
            crate::tsm::DEFAULT_ROOT
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
        match sys::tdx_get_report0(&file, &mut req) {
            Ok(()) => Ok(req.tdreport.to_vec()),
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
        let r = sys::tdx_get_quote(&file, &mut buf);
        match r {
            Ok(()) => {}
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
            let status = sys::tdx_quote_status(&buf);
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
        crate::rtmr::extend_rtmr3_sysfs(Path::new(crate::rtmr::TDX_MEASUREMENTS_DIR), digest)
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
