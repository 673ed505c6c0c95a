//! Intel TDX quote, versions 4 and 5, as defined by the Intel TDX DCAP Quote
//! Generation Library and Quote Verification Library API specification.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! v4: header(48) ‖ TD report 1.0 (584)                      ‖ sig_len u32 ‖ signature data
//! v5: header(48) ‖ body type u16 ‖ body size u32 ‖ body(584|648) ‖ sig_len u32 ‖ signature data
//! signature data (ECDSA-P256, attestation key type 2):
//!     signature r‖s (64, big-endian) ‖ attestation key x‖y (64, big-endian) ‖ certification data
//! certification data: type u16 ‖ size u32 ‖ data
//!     type 6 (QE report certification data):
//!         QE report (384) ‖ QE report signature (64) ‖ auth data size u16 ‖ auth data ‖ certification data (type 5)
//!     type 5: PCK certificate chain, PEM (leaf, Platform/Processor CA, Root CA)
//! ```
//!
//! Every structure re-serialises to the bytes it was parsed from; reserved
//! fields are kept verbatim for that reason.

use serde::Serialize;

use crate::error::ParseError;
use crate::reader::Reader;

const STRUCTURE: &str = "TdxQuote";

/// Quote header length in bytes.
pub const HEADER_LEN: usize = 48;
/// TD report 1.0 body length in bytes.
pub const TD_REPORT10_LEN: usize = 584;
/// TD report 1.5 body length in bytes.
pub const TD_REPORT15_LEN: usize = 648;
/// SGX enclave report (QE report) length in bytes.
pub const ENCLAVE_REPORT_LEN: usize = 384;
/// TEE type of a TDX quote in the header.
pub const TEE_TYPE_TDX: u32 = 0x81;
/// Attestation key type: ECDSA-256 with P-256 curve.
pub const ATTESTATION_KEY_TYPE_ECDSA_P256: u16 = 2;
/// Intel's QE vendor id (UUID 939a7233-f79c-4ca9-940a-0db3957f0607).
pub const INTEL_QE_VENDOR_ID: [u8; 16] = [
    0x93, 0x9a, 0x72, 0x33, 0xf7, 0x9c, 0x4c, 0xa9, 0x94, 0x0a, 0x0d, 0xb3, 0x95, 0x7f, 0x06, 0x07,
];
/// Certification data type 5: PCK certificate chain (PEM).
pub const CERT_TYPE_PCK_CHAIN: u16 = 5;
/// Certification data type 6: QE report certification data.
pub const CERT_TYPE_QE_REPORT: u16 = 6;
/// v5 body type: TD report 1.0.
pub const BODY_TYPE_TD10: u16 = 2;
/// v5 body type: TD report 1.5.
pub const BODY_TYPE_TD15: u16 = 3;
/// Nesting limit for certification data (type 6 contains another one);
/// bounds recursion on hostile input.
const MAX_CERT_DATA_DEPTH: u8 = 2;

/// The 48-byte quote header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuoteHeader {
    /// Quote format version: 4 or 5 for TDX.
    pub version: u16,
    /// Attestation key type; 2 = ECDSA-256-with-P-256.
    pub attestation_key_type: u16,
    /// TEE type; 0x81 = TDX (0 = SGX).
    pub tee_type: u32,
    /// SVN of the Quoting Enclave (reserved in some versions; kept verbatim).
    pub qe_svn: u16,
    /// SVN of the Provisioning Certification Enclave.
    pub pce_svn: u16,
    /// Vendor of the Quoting Enclave (a UUID, in byte order as stored).
    #[serde(with = "hex::serde")]
    pub qe_vendor_id: [u8; 16],
    /// Custom data; Intel's QE puts a QE identifier in the first 16 bytes.
    /// Chrysalis's simulator marks its quotes with `CHRYSALIS-SIM` here.
    #[serde(with = "hex::serde")]
    pub user_data: [u8; 20],
}

/// TD report body 1.0 (TDX 1.0), 584 bytes. Registers are SHA-384 values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TdReport10 {
    /// TEE TCB security version numbers (byte 0: TDX module SVN).
    #[serde(with = "hex::serde")]
    pub tee_tcb_svn: [u8; 16],
    /// Measurement of the TDX module.
    #[serde(with = "hex::serde")]
    pub mrseam: [u8; 48],
    /// Signer of the TDX module (zero for Intel's module).
    #[serde(with = "hex::serde")]
    pub mrsignerseam: [u8; 48],
    /// TDX module attributes (little-endian u64).
    #[serde(with = "hex::serde")]
    pub seam_attributes: [u8; 8],
    /// TD attributes (little-endian u64); bit 0 = DEBUG.
    #[serde(with = "hex::serde")]
    pub td_attributes: [u8; 8],
    /// Extended features available mask (little-endian u64).
    #[serde(with = "hex::serde")]
    pub xfam: [u8; 8],
    /// Build-time measurement of the initial TD contents (firmware).
    #[serde(with = "hex::serde")]
    pub mrtd: [u8; 48],
    /// Software-defined configuration id, set by the host at TD creation.
    #[serde(with = "hex::serde")]
    pub mrconfigid: [u8; 48],
    /// Software-defined id of the TD owner.
    #[serde(with = "hex::serde")]
    pub mrowner: [u8; 48],
    /// Software-defined id of the owner's configuration.
    #[serde(with = "hex::serde")]
    pub mrownerconfig: [u8; 48],
    /// Runtime-extendable measurement registers RTMR0..RTMR3.
    #[serde(serialize_with = "serialize_regs")]
    pub rtmr: [[u8; 48]; 4],
    /// 64 bytes chosen by the TD when it requested the report.
    #[serde(with = "hex::serde")]
    pub report_data: [u8; 64],
}

/// TD report body 1.5 (TDX 1.5), 648 bytes: 1.0 plus two fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TdReport15 {
    /// The TD 1.0 fields.
    #[serde(flatten)]
    pub base: TdReport10,
    /// Current TEE TCB SVN (after a TD-preserving module update).
    #[serde(with = "hex::serde")]
    pub tee_tcb_svn2: [u8; 16],
    /// Measurement of the service TD bound to this TD (zero when none).
    #[serde(with = "hex::serde")]
    pub mrservicetd: [u8; 48],
}

/// The quote body: the TD report the quote attests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum TdReportBody {
    /// TD report 1.0.
    Td10(TdReport10),
    /// TD report 1.5 (v5 quotes only).
    Td15(TdReport15),
}

impl TdReportBody {
    /// The TD 1.0 fields, present in both body types.
    pub fn td10(&self) -> &TdReport10 {
        match self {
            TdReportBody::Td10(r) => r,
            TdReportBody::Td15(r) => &r.base,
        }
    }
    /// Mutable access to the TD 1.0 fields.
    pub fn td10_mut(&mut self) -> &mut TdReport10 {
        match self {
            TdReportBody::Td10(r) => r,
            TdReportBody::Td15(r) => &mut r.base,
        }
    }
    fn body_type(&self) -> u16 {
        match self {
            TdReportBody::Td10(_) => BODY_TYPE_TD10,
            TdReportBody::Td15(_) => BODY_TYPE_TD15,
        }
    }
    fn len(&self) -> usize {
        match self {
            TdReportBody::Td10(_) => TD_REPORT10_LEN,
            TdReportBody::Td15(_) => TD_REPORT15_LEN,
        }
    }
}

/// SGX enclave report (here: the Quoting Enclave's report), 384 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnclaveReport {
    /// CPU security version number.
    #[serde(with = "hex::serde")]
    pub cpu_svn: [u8; 16],
    /// MISCSELECT (little-endian).
    pub misc_select: u32,
    /// Reserved, kept verbatim.
    #[serde(skip)]
    pub reserved1: [u8; 28],
    /// Enclave attributes.
    #[serde(with = "hex::serde")]
    pub attributes: [u8; 16],
    /// Enclave measurement (SHA-256).
    #[serde(with = "hex::serde")]
    pub mr_enclave: [u8; 32],
    /// Reserved, kept verbatim.
    #[serde(skip)]
    pub reserved2: [u8; 32],
    /// Hash of the enclave signer's public key (SHA-256).
    #[serde(with = "hex::serde")]
    pub mr_signer: [u8; 32],
    /// Reserved, kept verbatim.
    #[serde(skip)]
    pub reserved3: [u8; 96],
    /// Product id of the enclave.
    pub isv_prod_id: u16,
    /// Security version of the enclave.
    pub isv_svn: u16,
    /// Reserved, kept verbatim.
    #[serde(skip)]
    pub reserved4: [u8; 60],
    /// Report data; for the QE, bytes 0..32 = SHA-256(attestation key ‖ QE auth data).
    #[serde(with = "hex::serde")]
    pub report_data: [u8; 64],
}

/// Certification data: how the attestation key is certified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "data")]
pub enum CertificationData {
    /// Type 5: the PCK certificate chain, PEM text (possibly NUL-terminated), kept verbatim.
    PckCertChain(#[serde(serialize_with = "serialize_lossy_text")] Vec<u8>),
    /// Type 6: the QE report certification data.
    QeReport(Box<QeReportCertificationData>),
    /// Any other type (1–4: encrypted PPID variants, 7: platform manifest), kept verbatim.
    Other {
        /// The certification data type.
        cert_type: u16,
        /// The raw data.
        #[serde(with = "hex::serde")]
        data: Vec<u8>,
    },
}

/// Type-6 certification data: the QE's report, signed by the PCK key,
/// binding the attestation key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QeReportCertificationData {
    /// The Quoting Enclave's report.
    pub qe_report: EnclaveReport,
    /// ECDSA-P256 signature of the QE report by the PCK key, r‖s big-endian.
    #[serde(with = "hex::serde")]
    pub qe_report_signature: [u8; 64],
    /// QE authentication data (hashed into the QE report's report data).
    #[serde(with = "hex::serde")]
    pub qe_auth_data: Vec<u8>,
    /// Nested certification data (type 5 for DCAP).
    pub certification: CertificationData,
}

/// ECDSA-P256 quote signature data (attestation key type 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuoteSignatureData {
    /// Signature of header ‖ body by the attestation key, r‖s big-endian.
    #[serde(with = "hex::serde")]
    pub signature: [u8; 64],
    /// Attestation public key, x‖y big-endian (no SEC1 0x04 prefix).
    #[serde(with = "hex::serde")]
    pub attestation_key: [u8; 64],
    /// How the attestation key is certified.
    pub certification: CertificationData,
}

/// A TDX quote (v4 or v5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TdxQuote {
    /// The 48-byte header.
    pub header: QuoteHeader,
    /// The attested TD report.
    pub body: TdReportBody,
    /// Signature and certification data.
    pub signature: QuoteSignatureData,
}

fn serialize_regs<S: serde::Serializer>(v: &[[u8; 48]; 4], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(hex::encode))
}

fn serialize_lossy_text<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(v))
}

impl TdxQuote {
    /// Parses a quote that spans the whole input (trailing bytes are an error).
    pub fn parse(input: &[u8]) -> Result<Self, ParseError> {
        let (quote, used) = Self::parse_prefix(input)?;
        if used != input.len() {
            return Err(ParseError {
                structure: STRUCTURE,
                field: "(end)",
                offset: used,
                reason: format!(
                    "{} trailing bytes after the quote (signature data length says the quote ends here)",
                    input.len() - used
                ),
            });
        }
        Ok(quote)
    }

    /// Parses a quote at the start of `input` and returns it with the number
    /// of bytes it occupies. The quote's own length fields decide where it
    /// ends, so padded buffers (as some quote generators return) work.
    pub fn parse_prefix(input: &[u8]) -> Result<(Self, usize), ParseError> {
        let mut r = Reader::new(STRUCTURE, input);
        let header = parse_header(&mut r)?;
        let body = match header.version {
            4 => TdReportBody::Td10(parse_td10(&mut r)?),
            5 => {
                let at = r.offset();
                let body_type = r.u16_le("body.type")?;
                let size = r.u32_le("body.size")?;
                match (body_type, size as usize) {
                    (BODY_TYPE_TD10, TD_REPORT10_LEN) => TdReportBody::Td10(parse_td10(&mut r)?),
                    (BODY_TYPE_TD15, TD_REPORT15_LEN) => {
                        let base = parse_td10(&mut r)?;
                        TdReportBody::Td15(TdReport15 {
                            base,
                            tee_tcb_svn2: r.array("body.tee_tcb_svn2")?,
                            mrservicetd: r.array("body.mrservicetd")?,
                        })
                    }
                    (t, s) => {
                        return Err(r.error_at(
                            "body.type",
                            at,
                            format!(
                                "unsupported body type {t} with size {s} (expected 2/584 for TD 1.0 or 3/648 for TD 1.5)"
                            ),
                        ))
                    }
                }
            }
            v => {
                return Err(r.error_at(
                    "header.version",
                    0,
                    format!("unsupported quote version {v} (TDX quotes are version 4 or 5)"),
                ))
            }
        };
        let sig_len = r.u32_le("signature_data_len")? as usize;
        let sig_at = r.offset();
        let sig_bytes = r.bytes("signature_data", sig_len)?;
        let mut sr = Reader::with_base(STRUCTURE, sig_bytes, sig_at);
        let signature = QuoteSignatureData {
            signature: sr.array("signature_data.signature")?,
            attestation_key: sr.array("signature_data.attestation_key")?,
            certification: parse_cert_data(&mut sr, 0)?,
        };
        if sr.remaining() != 0 {
            return Err(sr.error(
                "signature_data",
                format!(
                    "{} bytes left over inside the signature data after its certification data",
                    sr.remaining()
                ),
            ));
        }
        Ok((
            TdxQuote {
                header,
                body,
                signature,
            },
            r.consumed(),
        ))
    }

    /// Serialises the quote; equal to the parsed bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.signed_bytes();
        let mut sig = Vec::with_capacity(4096);
        sig.extend_from_slice(&self.signature.signature);
        sig.extend_from_slice(&self.signature.attestation_key);
        write_cert_data(&mut sig, &self.signature.certification);
        out.extend_from_slice(&(sig.len() as u32).to_le_bytes());
        out.extend_from_slice(&sig);
        out
    }

    /// The bytes the attestation key signs: header ‖ (v5: body type ‖ size ‖) body.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 6 + TD_REPORT15_LEN);
        write_header(&mut out, &self.header);
        if self.header.version >= 5 {
            out.extend_from_slice(&self.body.body_type().to_le_bytes());
            out.extend_from_slice(&(self.body.len() as u32).to_le_bytes());
        }
        write_td10(&mut out, self.body.td10());
        if let TdReportBody::Td15(r) = &self.body {
            out.extend_from_slice(&r.tee_tcb_svn2);
            out.extend_from_slice(&r.mrservicetd);
        }
        out
    }

    /// The TD 1.0 fields of the body (present in every TDX quote).
    pub fn td_report(&self) -> &TdReport10 {
        self.body.td10()
    }

    /// The QE report certification data (type 6), when present.
    pub fn qe_report_data(&self) -> Option<&QeReportCertificationData> {
        match &self.signature.certification {
            CertificationData::QeReport(q) => Some(q),
            _ => None,
        }
    }

    /// The PEM PCK certificate chain (type 5, directly or inside type 6).
    pub fn pck_chain_pem(&self) -> Option<&[u8]> {
        let mut cd = &self.signature.certification;
        loop {
            match cd {
                CertificationData::PckCertChain(pem) => return Some(pem),
                CertificationData::QeReport(q) => cd = &q.certification,
                CertificationData::Other { .. } => return None,
            }
        }
    }

    /// Whether the header marks this as a Chrysalis simulated quote. Only a
    /// hint for display: trust is decided by the verifier's anchor.
    pub fn claims_simulated(&self) -> bool {
        self.header
            .user_data
            .starts_with(crate::simulated::SIM_MARKER)
    }
}

impl TdReport10 {
    /// DEBUG bit (TD attributes bit 0): a debug TD's memory and registers are
    /// readable by the host, so it protects nothing.
    pub fn is_debug(&self) -> bool {
        self.td_attributes[0] & 1 != 0
    }

    /// The TD-under-debug (TUD) byte, TD attributes bits 7:0: bit 0 is
    /// DEBUG, bits 1..7 are TUD bits the TDX module ABI reserves for
    /// debug-class features (bits 4..6 were the "profiling" bits older
    /// verifiers checked). Any of them set means a debugger-class host
    /// capability, so [`td_attributes::under_debug`] treats the whole byte
    /// as debug.
    pub fn tud(&self) -> u8 {
        td_attributes::tud(&self.td_attributes)
    }

    /// Whether any TD-under-debug bit (TD attributes bits 7:0) is set.
    pub fn is_under_debug(&self) -> bool {
        td_attributes::under_debug(&self.td_attributes)
    }
}

/// Bits of the 64-bit TD attributes (Intel TDX module ABI specification,
/// `TD_PARAMS.ATTRIBUTES`), as the verifier and policy judge them. The host
/// chooses these at TD creation; the TD report carries them signed.
pub mod td_attributes {
    /// Bits 7:0, the TUD (TD under debug) group. Bit 0 is DEBUG.
    pub const TUD_MASK: u64 = 0xff;
    /// Bit 0: DEBUG.
    pub const DEBUG: u64 = 1;
    /// Bit 28: SEPT_VE_DISABLE. When clear, an access to a pending private
    /// page raises #VE inside the TD instead of being blocked, which lets
    /// the host steer the guest kernel's #VE handler (a known attack
    /// surface); Intel's and every peer's policy requires it set.
    pub const SEPT_VE_DISABLE: u64 = 1 << 28;
    /// Bit 29: MIGRATABLE.
    pub const MIGRATABLE: u64 = 1 << 29;

    /// The attributes as a little-endian `u64`.
    pub fn value(raw: &[u8; 8]) -> u64 {
        u64::from_le_bytes(*raw)
    }

    /// The TUD byte (bits 7:0).
    pub fn tud(raw: &[u8; 8]) -> u8 {
        raw[0]
    }

    /// Whether any TUD bit is set: the TD runs under debug in some form.
    pub fn under_debug(raw: &[u8; 8]) -> bool {
        value(raw) & TUD_MASK != 0
    }

    /// Whether SEPT_VE_DISABLE (bit 28) is set.
    pub fn sept_ve_disable(raw: &[u8; 8]) -> bool {
        value(raw) & SEPT_VE_DISABLE != 0
    }
}

impl EnclaveReport {
    /// Parses exactly 384 bytes.
    pub fn parse(input: &[u8]) -> Result<Self, ParseError> {
        let mut r = Reader::new("EnclaveReport", input);
        let rep = parse_enclave_report(&mut r)?;
        r.finish()?;
        Ok(rep)
    }

    /// Serialises to the 384 bytes the QE signs.
    pub fn to_bytes(&self) -> [u8; ENCLAVE_REPORT_LEN] {
        let mut v = Vec::with_capacity(ENCLAVE_REPORT_LEN);
        v.extend_from_slice(&self.cpu_svn);
        v.extend_from_slice(&self.misc_select.to_le_bytes());
        v.extend_from_slice(&self.reserved1);
        v.extend_from_slice(&self.attributes);
        v.extend_from_slice(&self.mr_enclave);
        v.extend_from_slice(&self.reserved2);
        v.extend_from_slice(&self.mr_signer);
        v.extend_from_slice(&self.reserved3);
        v.extend_from_slice(&self.isv_prod_id.to_le_bytes());
        v.extend_from_slice(&self.isv_svn.to_le_bytes());
        v.extend_from_slice(&self.reserved4);
        v.extend_from_slice(&self.report_data);
        let mut out = [0u8; ENCLAVE_REPORT_LEN];
        out.copy_from_slice(&v);
        out
    }
}

fn parse_header(r: &mut Reader<'_>) -> Result<QuoteHeader, ParseError> {
    Ok(QuoteHeader {
        version: r.u16_le("header.version")?,
        attestation_key_type: r.u16_le("header.attestation_key_type")?,
        tee_type: r.u32_le("header.tee_type")?,
        qe_svn: r.u16_le("header.qe_svn")?,
        pce_svn: r.u16_le("header.pce_svn")?,
        qe_vendor_id: r.array("header.qe_vendor_id")?,
        user_data: r.array("header.user_data")?,
    })
    .and_then(|h| {
        if h.tee_type != TEE_TYPE_TDX {
            return Err(r.error_at(
                "header.tee_type",
                4,
                format!(
                    "TEE type {:#x} is not TDX (0x81){}",
                    h.tee_type,
                    if h.tee_type == 0 {
                        "; this is an SGX quote"
                    } else {
                        ""
                    }
                ),
            ));
        }
        if h.attestation_key_type != ATTESTATION_KEY_TYPE_ECDSA_P256 {
            return Err(r.error_at(
                "header.attestation_key_type",
                2,
                format!(
                    "attestation key type {} unsupported (only 2 = ECDSA-P256)",
                    h.attestation_key_type
                ),
            ));
        }
        Ok(h)
    })
}

fn write_header(out: &mut Vec<u8>, h: &QuoteHeader) {
    out.extend_from_slice(&h.version.to_le_bytes());
    out.extend_from_slice(&h.attestation_key_type.to_le_bytes());
    out.extend_from_slice(&h.tee_type.to_le_bytes());
    out.extend_from_slice(&h.qe_svn.to_le_bytes());
    out.extend_from_slice(&h.pce_svn.to_le_bytes());
    out.extend_from_slice(&h.qe_vendor_id);
    out.extend_from_slice(&h.user_data);
}

fn parse_td10(r: &mut Reader<'_>) -> Result<TdReport10, ParseError> {
    Ok(TdReport10 {
        tee_tcb_svn: r.array("body.tee_tcb_svn")?,
        mrseam: r.array("body.mrseam")?,
        mrsignerseam: r.array("body.mrsignerseam")?,
        seam_attributes: r.array("body.seam_attributes")?,
        td_attributes: r.array("body.td_attributes")?,
        xfam: r.array("body.xfam")?,
        mrtd: r.array("body.mrtd")?,
        mrconfigid: r.array("body.mrconfigid")?,
        mrowner: r.array("body.mrowner")?,
        mrownerconfig: r.array("body.mrownerconfig")?,
        rtmr: [
            r.array("body.rtmr0")?,
            r.array("body.rtmr1")?,
            r.array("body.rtmr2")?,
            r.array("body.rtmr3")?,
        ],
        report_data: r.array("body.report_data")?,
    })
}

fn write_td10(out: &mut Vec<u8>, b: &TdReport10) {
    for part in [
        &b.tee_tcb_svn[..],
        &b.mrseam,
        &b.mrsignerseam,
        &b.seam_attributes,
        &b.td_attributes,
        &b.xfam,
        &b.mrtd,
        &b.mrconfigid,
        &b.mrowner,
        &b.mrownerconfig,
        &b.rtmr[0],
        &b.rtmr[1],
        &b.rtmr[2],
        &b.rtmr[3],
        &b.report_data,
    ] {
        out.extend_from_slice(part);
    }
}

fn parse_enclave_report(r: &mut Reader<'_>) -> Result<EnclaveReport, ParseError> {
    Ok(EnclaveReport {
        cpu_svn: r.array("qe_report.cpu_svn")?,
        misc_select: r.u32_le("qe_report.misc_select")?,
        reserved1: r.array("qe_report.reserved1")?,
        attributes: r.array("qe_report.attributes")?,
        mr_enclave: r.array("qe_report.mr_enclave")?,
        reserved2: r.array("qe_report.reserved2")?,
        mr_signer: r.array("qe_report.mr_signer")?,
        reserved3: r.array("qe_report.reserved3")?,
        isv_prod_id: r.u16_le("qe_report.isv_prod_id")?,
        isv_svn: r.u16_le("qe_report.isv_svn")?,
        reserved4: r.array("qe_report.reserved4")?,
        report_data: r.array("qe_report.report_data")?,
    })
}

fn parse_cert_data(r: &mut Reader<'_>, depth: u8) -> Result<CertificationData, ParseError> {
    let cert_type = r.u16_le("certification_data.type")?;
    let size = r.u32_le("certification_data.size")? as usize;
    let at = r.offset();
    let data = r.bytes("certification_data.data", size)?;
    match cert_type {
        CERT_TYPE_PCK_CHAIN => Ok(CertificationData::PckCertChain(data.to_vec())),
        CERT_TYPE_QE_REPORT => {
            if depth >= MAX_CERT_DATA_DEPTH {
                return Err(r.error_at(
                    "certification_data.type",
                    at - 6,
                    "QE report certification data nested too deeply",
                ));
            }
            let mut q = Reader::with_base(STRUCTURE, data, at);
            let qe_report = parse_enclave_report(&mut q)?;
            let qe_report_signature = q.array("qe_report_signature")?;
            let auth_len = q.u16_le("qe_auth_data.size")? as usize;
            let qe_auth_data = q.bytes("qe_auth_data.data", auth_len)?.to_vec();
            let certification = parse_cert_data(&mut q, depth + 1)?;
            if q.remaining() != 0 {
                return Err(q.error(
                    "certification_data.data",
                    format!(
                        "{} bytes left over inside QE report certification data",
                        q.remaining()
                    ),
                ));
            }
            Ok(CertificationData::QeReport(Box::new(
                QeReportCertificationData {
                    qe_report,
                    qe_report_signature,
                    qe_auth_data,
                    certification,
                },
            )))
        }
        other => Ok(CertificationData::Other {
            cert_type: other,
            data: data.to_vec(),
        }),
    }
}

fn write_cert_data(out: &mut Vec<u8>, cd: &CertificationData) {
    match cd {
        CertificationData::PckCertChain(pem) => {
            out.extend_from_slice(&CERT_TYPE_PCK_CHAIN.to_le_bytes());
            out.extend_from_slice(&(pem.len() as u32).to_le_bytes());
            out.extend_from_slice(pem);
        }
        CertificationData::QeReport(q) => {
            let mut inner = Vec::with_capacity(4096);
            inner.extend_from_slice(&q.qe_report.to_bytes());
            inner.extend_from_slice(&q.qe_report_signature);
            inner.extend_from_slice(&(q.qe_auth_data.len() as u16).to_le_bytes());
            inner.extend_from_slice(&q.qe_auth_data);
            write_cert_data(&mut inner, &q.certification);
            out.extend_from_slice(&CERT_TYPE_QE_REPORT.to_le_bytes());
            out.extend_from_slice(&(inner.len() as u32).to_le_bytes());
            out.extend_from_slice(&inner);
        }
        CertificationData::Other { cert_type, data } => {
            out.extend_from_slice(&cert_type.to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A structurally valid quote assembled from typed parts (not signed).
    pub(crate) fn sample_quote(version: u16) -> TdxQuote {
        let td10 = TdReport10 {
            tee_tcb_svn: [1; 16],
            mrseam: [2; 48],
            mrsignerseam: [0; 48],
            seam_attributes: [0; 8],
            td_attributes: [0; 8],
            xfam: [3; 8],
            mrtd: [4; 48],
            mrconfigid: [5; 48],
            mrowner: [6; 48],
            mrownerconfig: [7; 48],
            rtmr: [[8; 48], [9; 48], [10; 48], [11; 48]],
            report_data: [12; 64],
        };
        let body = if version == 5 {
            TdReportBody::Td15(TdReport15 {
                base: td10,
                tee_tcb_svn2: [13; 16],
                mrservicetd: [0; 48],
            })
        } else {
            TdReportBody::Td10(td10)
        };
        TdxQuote {
            header: QuoteHeader {
                version,
                attestation_key_type: 2,
                tee_type: TEE_TYPE_TDX,
                qe_svn: 0,
                pce_svn: 0,
                qe_vendor_id: INTEL_QE_VENDOR_ID,
                user_data: [0; 20],
            },
            body,
            signature: QuoteSignatureData {
                signature: [14; 64],
                attestation_key: [15; 64],
                certification: CertificationData::QeReport(Box::new(QeReportCertificationData {
                    qe_report: EnclaveReport::parse(&[16; ENCLAVE_REPORT_LEN]).unwrap(),
                    qe_report_signature: [17; 64],
                    qe_auth_data: vec![18; 32],
                    certification: CertificationData::PckCertChain(
                        b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".to_vec(),
                    ),
                })),
            },
        }
    }

    #[test]
    fn typed_quote_round_trips() {
        for v in [4, 5] {
            let q = sample_quote(v);
            let bytes = q.to_bytes();
            let back = TdxQuote::parse(&bytes).unwrap();
            assert_eq!(back, q);
            assert_eq!(back.to_bytes(), bytes);
        }
    }

    #[test]
    fn trailing_bytes_are_reported_but_prefix_parse_works() {
        let mut bytes = sample_quote(4).to_bytes();
        let len = bytes.len();
        bytes.extend_from_slice(&[0; 70]);
        let err = TdxQuote::parse(&bytes).unwrap_err();
        assert_eq!(err.offset, len);
        assert!(err.reason.contains("70 trailing bytes"));
        let (_, used) = TdxQuote::parse_prefix(&bytes).unwrap();
        assert_eq!(used, len);
    }

    #[test]
    fn wrong_version_and_tee_type_name_the_field() {
        let mut bytes = sample_quote(4).to_bytes();
        bytes[0] = 3;
        let err = TdxQuote::parse(&bytes).unwrap_err();
        assert_eq!(err.field, "header.version");
        let mut bytes = sample_quote(4).to_bytes();
        bytes[4] = 0;
        let err = TdxQuote::parse(&bytes).unwrap_err();
        assert_eq!(err.field, "header.tee_type");
        assert!(err.reason.contains("SGX"));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample_quote(5).to_bytes();
        for cut in 0..bytes.len() {
            let err = TdxQuote::parse(&bytes[..cut]).unwrap_err();
            assert!(err.offset <= cut, "offset {} beyond cut {cut}", err.offset);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = TdxQuote::parse(&bytes);
        }

        #[test]
        fn bit_flips_never_panic_and_valid_results_round_trip(pos in 0usize..1500, bit in 0u8..8, v in 4u16..=5) {
            let mut bytes = sample_quote(v).to_bytes();
            let pos = pos % bytes.len();
            bytes[pos] ^= 1 << bit;
            if let Ok(q) = TdxQuote::parse(&bytes) {
                prop_assert_eq!(q.to_bytes(), bytes);
            }
        }

        #[test]
        fn random_tail_after_valid_header_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let mut bytes = sample_quote(4).to_bytes()[..HEADER_LEN + TD_REPORT10_LEN].to_vec();
            bytes.extend_from_slice(&tail);
            let _ = TdxQuote::parse(&bytes);
        }
    }
}

#[cfg(test)]
mod serde_tests {
    #[test]
    fn quotes_serialise_to_json() {
        let q = super::tests::sample_quote(5);
        let v = serde_json::to_value(&q).unwrap();
        assert_eq!(v["header"]["version"], 5);
        assert_eq!(v["signature"]["certification"]["type"], "QeReport");
    }
}
