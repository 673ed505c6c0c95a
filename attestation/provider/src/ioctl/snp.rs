//! SEV-SNP evidence through `/dev/sev-guest` (`sev-guest` driver, Linux ≥
//! 5.19): the plain report (`SNP_GET_REPORT`), the extended report with the
//! host's certificate table (`SNP_GET_EXT_REPORT`), and the parsing of what
//! the firmware and the host return.

use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use chrysalis_attestation::error::{Error, Result};
use chrysalis_attestation::provider::{EvidenceProvider, RawEvidence};
use chrysalis_attestation::verified::Tee;

use super::device::{le_u32, open_device};
use super::sys::{
    self, SnpExtReportReq, SnpGuestRequestIoctl, SnpReportReq, SnpReportResp, SNP_REPORT_LEN,
};

/// The SEV-SNP guest device (`sev-guest` driver, Linux ≥ 5.19).
pub const SEV_GUEST_DEVICE: &str = "/dev/sev-guest";

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
        let mut resp = SnpReportResp::zeroed();
        let mut arg = SnpGuestRequestIoctl::new(SNP_MSG_VERSION);
        if let Err(errno) = sys::snp_get_report(&file, &mut arg, &req, &mut resp) {
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
            let mut req = SnpExtReportReq::new(self.request(report_data));
            let mut resp = SnpReportResp::zeroed();
            let mut arg = SnpGuestRequestIoctl::new(SNP_MSG_VERSION);
            let r = sys::snp_get_ext_report(&file, &mut arg, &mut req, &mut certs, &mut resp);
            match r {
                Ok(()) => {
                    let report = parse_report_response(&self.path, &resp.data)?;
                    return Ok(Some((report, trim_cert_table(&certs)?)));
                }
                Err(Errno::ENOTTY) => return Ok(None),
                Err(_) if arg.vmm_error() == SNP_GUEST_VMM_ERR_INVALID_LEN => {
                    let need = req.certs_len() as usize;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ioctl::sys::SNP_RESP_LEN;

    #[test]
    fn exitinfo2_splits_into_firmware_and_vmm_errors() {
        let mut arg = SnpGuestRequestIoctl::new(SNP_MSG_VERSION);
        arg.exitinfo2 = (1u64 << 32) | 0x16;
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
    fn vmpl_range_is_checked() {
        assert!(SevGuestProvider::system().with_vmpl(3).is_ok());
        assert!(matches!(
            SevGuestProvider::system().with_vmpl(4),
            Err(Error::Encoding(_))
        ));
    }
}
