//! Quote assembly: the header, the TD report body (1.0 or 1.5), the QE
//! report binding the attestation key, and the signatures, for a TD the
//! caller describes with [`SimTdInput`].

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use chrysalis_attestation::error::Result;
use chrysalis_attestation::tdx::quote::{
    CertificationData, EnclaveReport, QeReportCertificationData, QuoteHeader, QuoteSignatureData,
    TdReport10, TdReport15, TdReportBody, TdxQuote, ATTESTATION_KEY_TYPE_ECDSA_P256,
    INTEL_QE_VENDOR_ID, TEE_TYPE_TDX,
};

use super::options::SimTdxOptions;
use super::pki::SimTdxPki;

/// Prefix of the 20-byte quote header `user_data` of every simulated quote,
/// so that anyone looking at a quote sees it is simulated. Trust never
/// depends on it (anyone can write these bytes); the verifier's root does.
pub const SIM_USER_DATA_PREFIX: &[u8] = crate::SIM_MARKER;

/// The TD attributes of a simulated TD: SEPT_VE_DISABLE (bit 28) only, what
/// QEMU's `tdx-guest` object sets by default (`sept-ve-disable=on`) and so
/// what Chrysalis' launch produces on a host without PKS/PERFMON. dcap-qvl
/// (like Intel's policy) rejects a TD without it.
pub const SIM_TD_ATTRIBUTES: u64 = 1 << 28;
/// TD attributes bit 0, DEBUG.
const TD_ATTR_DEBUG: u64 = 1;
/// A typical XFAM (x87, SSE, AVX, AVX-512, PK, ...), as real TDs report.
pub const SIM_XFAM: u64 = 0x0006_18e7;
/// QE authentication data: 32 bytes 0x00..0x1f, what Intel's QE emits.
const QE_AUTH_DATA: [u8; 32] = {
    let mut a = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        a[i] = i as u8;
        i += 1;
    }
    a
};

/// Quote format version of a simulated quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SimQuoteVersion {
    /// Version 4 with a TD report 1.0 body.
    #[default]
    V4,
    /// Version 5 with a TD report 1.5 body (body type 3), as TDX 1.5
    /// modules produce; `tee_tcb_svn2` equals `tee_tcb_svn` and
    /// `mrservicetd` is zero.
    V5,
}

/// The TD-chosen and TD-measured parts of a simulated quote. The TCB fields
/// (`tee_tcb_svn`, `mrseam`, `mrsignerseam`, `seam_attributes`) come from
/// the PKI so that the quote matches its collateral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimTdInput {
    /// MRTD (SHA-384).
    pub mrtd: [u8; 48],
    /// RTMR0..RTMR3 (SHA-384 each).
    pub rtmr: [[u8; 48]; 4],
    /// MRCONFIGID.
    pub mrconfigid: [u8; 48],
    /// MROWNER.
    pub mrowner: [u8; 48],
    /// MROWNERCONFIG.
    pub mrownerconfig: [u8; 48],
    /// Report data chosen by the TD (64 bytes).
    pub report_data: [u8; 64],
    /// Set TD attributes bit 0 (DEBUG) on top of `td_attributes`. dcap-qvl
    /// rejects such a quote by default.
    pub debug: bool,
    /// TD attributes (the host's choice at TD creation), as a `u64`.
    /// Default [`SIM_TD_ATTRIBUTES`]; set e.g. TUD bits 1..7 or clear
    /// SEPT_VE_DISABLE to play a hostile host.
    pub td_attributes: u64,
    /// XFAM, as a `u64`. Default [`SIM_XFAM`].
    pub xfam: u64,
    /// Quote format version.
    pub version: SimQuoteVersion,
}

impl Default for SimTdInput {
    fn default() -> Self {
        SimTdInput {
            mrtd: [0; 48],
            rtmr: [[0; 48]; 4],
            mrconfigid: [0; 48],
            mrowner: [0; 48],
            mrownerconfig: [0; 48],
            report_data: [0; 64],
            debug: false,
            td_attributes: SIM_TD_ATTRIBUTES,
            xfam: SIM_XFAM,
            version: SimQuoteVersion::V4,
        }
    }
}

/// A simulated TDX platform: its PKI and collateral, and a quote generator.
#[derive(Debug)]
pub struct SimTdx {
    pki: SimTdxPki,
}

impl SimTdx {
    /// Generates a simulated platform whose collateral is valid at `now`
    /// (unless `opts` says otherwise).
    pub fn new(now: OffsetDateTime, opts: &SimTdxOptions) -> Result<Self> {
        Ok(SimTdx {
            pki: SimTdxPki::generate_with(now, opts)?,
        })
    }

    /// The PKI behind this platform.
    pub fn pki(&self) -> &SimTdxPki {
        &self.pki
    }

    /// The collateral its quotes verify with.
    pub fn collateral(&self) -> dcap_qvl::QuoteCollateralV3 {
        self.pki.collateral()
    }

    /// DER of the root CA its quotes chain to.
    pub fn root_ca_der(&self) -> &[u8] {
        self.pki.root_ca_der()
    }

    /// A complete simulated quote for `td`, serialised.
    pub fn quote(&self, td: &SimTdInput) -> Vec<u8> {
        self.quote_struct(td).to_bytes()
    }

    /// A complete simulated quote for `td`, as a structure (tests tamper with
    /// it before serialising).
    pub fn quote_struct(&self, td: &SimTdInput) -> TdxQuote {
        self.quote_edited(td, |_| {})
    }

    /// Like [`SimTdx::quote_struct`], with `edit` applied to the TD report
    /// before the attestation key signs the quote: what a TD whose report
    /// differs in those fields would get from this platform (the
    /// `--sim-set` overrides).
    pub fn quote_edited(&self, td: &SimTdInput, edit: impl FnOnce(&mut TdReport10)) -> TdxQuote {
        let tcb = self.pki.tcb_values();
        let qe = self.pki.qe_identity_values();

        let mut user_data = [0u8; 20];
        user_data[..SIM_USER_DATA_PREFIX.len()].copy_from_slice(SIM_USER_DATA_PREFIX);
        let header = QuoteHeader {
            version: match td.version {
                SimQuoteVersion::V4 => 4,
                SimQuoteVersion::V5 => 5,
            },
            attestation_key_type: ATTESTATION_KEY_TYPE_ECDSA_P256,
            tee_type: TEE_TYPE_TDX,
            qe_svn: qe.isv_svn,
            pce_svn: tcb.pce_svn,
            // dcap-qvl only accepts Intel's QE vendor id.
            qe_vendor_id: INTEL_QE_VENDOR_ID,
            user_data,
        };

        let td_attributes = td.td_attributes | if td.debug { TD_ATTR_DEBUG } else { 0 };
        let base = TdReport10 {
            tee_tcb_svn: tcb.tee_tcb_svn,
            mrseam: tcb.mrseam,
            mrsignerseam: tcb.mrsignerseam,
            seam_attributes: tcb.seam_attributes,
            td_attributes: td_attributes.to_le_bytes(),
            xfam: td.xfam.to_le_bytes(),
            mrtd: td.mrtd,
            mrconfigid: td.mrconfigid,
            mrowner: td.mrowner,
            mrownerconfig: td.mrownerconfig,
            rtmr: td.rtmr,
            report_data: td.report_data,
        };
        let body = match td.version {
            SimQuoteVersion::V4 => TdReportBody::Td10(base),
            SimQuoteVersion::V5 => TdReportBody::Td15(TdReport15 {
                base,
                tee_tcb_svn2: tcb.tee_tcb_svn,
                mrservicetd: [0; 48],
            }),
        };

        // The QE binds the attestation key: report_data[..32] =
        // SHA-256(attestation key ‖ QE auth data), and the PCK signs the report.
        let attestation_key = self.pki.attestation_public_key();
        let mut qe_report_data = [0u8; 64];
        let mut h = Sha256::new();
        h.update(attestation_key);
        h.update(QE_AUTH_DATA);
        qe_report_data[..32].copy_from_slice(&h.finalize());
        let qe_report = EnclaveReport {
            cpu_svn: tcb.cpu_svn,
            misc_select: qe.misc_select,
            reserved1: [0; 28],
            attributes: qe.attributes,
            mr_enclave: qe.mr_enclave,
            reserved2: [0; 32],
            mr_signer: qe.mr_signer,
            reserved3: [0; 96],
            isv_prod_id: qe.isv_prod_id,
            isv_svn: qe.isv_svn,
            reserved4: [0; 60],
            report_data: qe_report_data,
        };
        let qe_report_signature = self.pki.sign_qe_report(&qe_report.to_bytes());

        let mut quote = TdxQuote {
            header,
            body,
            signature: QuoteSignatureData {
                signature: [0; 64],
                attestation_key,
                certification: CertificationData::QeReport(Box::new(QeReportCertificationData {
                    qe_report,
                    qe_report_signature,
                    qe_auth_data: QE_AUTH_DATA.to_vec(),
                    certification: CertificationData::PckCertChain(
                        self.pki.pck_chain_pem().into_bytes(),
                    ),
                })),
            },
        };
        edit(quote.body.td10_mut());
        quote.signature.signature = self.pki.sign_quote(&quote.signed_bytes());
        quote
    }
}
