//! Simulated Intel TDX: an Intel-shaped PKI, collateral and quotes generated
//! at run time.
//!
//! Chrysalis verifies TDX quotes with `dcap-qvl`, the same code path for real
//! and simulated evidence. To run that path on a machine without a TEE, this
//! module builds everything Intel's PCS would serve, but rooted in a fresh
//! P-256 key instead of Intel's SGX Root CA:
//!
//! ```text
//! Chrysalis SIMULATED SGX Root CA (self-signed, pathlen 1)
//! ├── Chrysalis SIMULATED SGX PCK Platform CA (pathlen 0)
//! │   └── PCK certificate (Intel SGX extension: PPID, TCB, PCE-ID, FMSPC, ...)
//! └── Chrysalis SIMULATED SGX TCB Signing (signs TCB info and QE identity)
//! ```
//!
//! plus a root CA CRL, a PCK CRL, TCB info and TD_QE identity JSON with their
//! signatures, assembled as a [`dcap_qvl::QuoteCollateralV3`]. [`SimTdx`]
//! turns a [`SimTdInput`] into a complete v4 or v5 quote whose QE report is
//! signed by the PCK key and whose body is signed by an attestation key.
//!
//! Nothing here is secret or trustworthy: every key is generated per
//! instance and lives in memory. A verifier that pins Intel's production
//! root rejects all of it; a verifier given [`SimTdxPki::root_ca_der`] accepts
//! it, which is why such evidence is reported as
//! [`chrysalis_attestation::TrustAnchor::Simulated`].
//!
//! All signatures are ECDSA-P256-SHA256. Raw signatures are `r ‖ s`, each 32
//! bytes big-endian; raw public keys are `x ‖ y`, each 32 bytes big-endian,
//! without the SEC1 `0x04` prefix — the encodings of the DCAP quote format.

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, Signature, SigningKey};
use rand_core::{OsRng, RngCore};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use serde::Serialize;
use sha2::{Digest, Sha256, Sha384};
use time::{Duration, OffsetDateTime, Time};

use chrysalis_attestation::error::{Error, Result};
use chrysalis_attestation::tdx::quote::{
    CertificationData, EnclaveReport, QeReportCertificationData, QuoteHeader, QuoteSignatureData,
    TdReport10, TdReport15, TdReportBody, TdxQuote, ATTESTATION_KEY_TYPE_ECDSA_P256,
    INTEL_QE_VENDOR_ID, TEE_TYPE_TDX,
};
use chrysalis_attestation::timefmt::format_rfc3339;

/// Prefix of the 20-byte quote header `user_data` of every simulated quote,
/// so that anyone looking at a quote sees it is simulated. Trust never
/// depends on it (anyone can write these bytes); the verifier's root does.
pub const SIM_USER_DATA_PREFIX: &[u8] = super::SIM_MARKER;

/// Organisation name in every simulated certificate's subject.
const SIM_ORG: &str = "Chrysalis SIMULATED (not Intel)";
/// Common name of the simulated root CA.
pub const SIM_ROOT_CA_CN: &str = "Chrysalis SIMULATED SGX Root CA";
/// Common name of the simulated PCK Platform CA. It contains "Platform" as
/// Intel's does: dcap-qvl classifies the PCK issuer by that word.
pub const SIM_PCK_PLATFORM_CA_CN: &str = "Chrysalis SIMULATED SGX PCK Platform CA";
/// Common name of the simulated PCK leaf certificate.
pub const SIM_PCK_CN: &str = "Chrysalis SIMULATED SGX PCK Certificate";
/// Common name of the simulated TCB signing certificate.
pub const SIM_TCB_SIGNING_CN: &str = "Chrysalis SIMULATED SGX TCB Signing";

/// OID arcs of Intel's SGX extension, 1.2.840.113741.1.13.1.
const SGX_EXTENSION_OID: [u64; 7] = [1, 2, 840, 113741, 1, 13, 1];

/// FMSPC of the simulated platform (6 bytes, as in the PCK certificate and
/// TCB info). Not a real Intel FMSPC family.
pub const SIM_FMSPC: [u8; 6] = [0x5C, 0x15, 0x00, 0x00, 0x00, 0x00];
/// PCE-ID of the simulated platform (2 bytes, as in the PCK certificate).
const SIM_PCE_ID: [u8; 2] = [0x00, 0x00];

/// TD attributes bit 28, SEPT_VE_DISABLE. dcap-qvl (like Intel's policy)
/// rejects a TD without it, so every simulated TD sets it.
const TD_ATTR_SEPT_VE_DISABLE: u64 = 1 << 28;
/// TD attributes bit 0, DEBUG.
const TD_ATTR_DEBUG: u64 = 1;
/// A typical XFAM (x87, SSE, AVX, AVX-512, PK, ...), as real TDs report.
const SIM_XFAM: u64 = 0x0006_18e7;
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

/// How long the simulated CA certificates stay valid after `now`.
const CA_CERT_LIFETIME: Duration = Duration::days(3650);
/// How long the simulated leaf certificates stay valid after `now`.
const LEAF_CERT_LIFETIME: Duration = Duration::days(365);
/// Backdating of certificates, CRLs and JSON issue dates, so that a verifier
/// whose clock is slightly behind the generator's still accepts them.
const BACKDATE: Duration = Duration::hours(1);

/// TCB status the TCB info assigns to the simulated platform's level.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SimTcbStatus {
    /// The simulated platform is on the newest level.
    #[default]
    UpToDate,
    /// A newer level exists (PCE SVN one higher); the simulated platform's
    /// level is `OutOfDate` with these advisory ids (e.g. `INTEL-SA-00837`).
    OutOfDate {
        /// Advisory ids listed on the platform's level.
        advisory_ids: Vec<String>,
    },
}

/// Knobs of the simulated collateral. `Default` gives valid, up-to-date
/// collateral with nothing revoked.
///
/// Offsets are relative to the `now` given to [`SimTdxPki::generate_with`];
/// issue dates are `now - 1h` unless said otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimTdxOptions {
    /// Days from `now` to `nextUpdate` of the TCB info, the QE identity and
    /// both CRLs. Default 30, like Intel's PCS.
    pub validity_days: u32,
    /// Overrides `nextUpdate` of the TCB info (offset from `now`; negative
    /// for already expired TCB info). `None`: `validity_days`.
    pub tcb_info_next_update: Option<Duration>,
    /// Overrides `nextUpdate` of the QE identity (offset from `now`).
    /// `None`: `validity_days`.
    pub qe_identity_next_update: Option<Duration>,
    /// Overrides `thisUpdate` of both CRLs (offset from `now`; positive for a
    /// CRL that is not yet valid). `None`: `now - 1h`.
    pub crl_this_update: Option<Duration>,
    /// Overrides `nextUpdate` of both CRLs (offset from `now`; must be after
    /// `thisUpdate`). `None`: `validity_days`.
    pub crl_next_update: Option<Duration>,
    /// The TCB status of the simulated platform's TCB level.
    pub tcb_status: SimTcbStatus,
    /// Put the PCK leaf certificate's serial on the PCK CRL.
    pub revoke_pck: bool,
    /// `tcbEvaluationDataNumber` of the TCB info and QE identity. Default 17.
    pub tcb_evaluation_data_number: u32,
}

impl Default for SimTdxOptions {
    fn default() -> Self {
        SimTdxOptions {
            validity_days: 30,
            tcb_info_next_update: None,
            qe_identity_next_update: None,
            crl_this_update: None,
            crl_next_update: None,
            tcb_status: SimTcbStatus::UpToDate,
            revoke_pck: false,
            tcb_evaluation_data_number: 17,
        }
    }
}

impl SimTdxOptions {
    /// Makes the simulated platform's level `OutOfDate` with `advisory_ids`.
    pub fn out_of_date<S: AsRef<str>>(mut self, advisory_ids: &[S]) -> Self {
        self.tcb_status = SimTcbStatus::OutOfDate {
            advisory_ids: advisory_ids.iter().map(|s| s.as_ref().to_owned()).collect(),
        };
        self
    }

    /// Revokes the PCK leaf certificate on the PCK CRL.
    pub fn revoke_pck(mut self, revoke: bool) -> Self {
        self.revoke_pck = revoke;
        self
    }

    /// Sets the validity in days of the TCB info, QE identity and CRLs.
    pub fn validity_days(mut self, days: u32) -> Self {
        self.validity_days = days;
        self
    }
}

/// The TCB values of the simulated platform: what the PCK certificate
/// certifies and what a TD report must carry to match the TCB info's
/// simulated level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimTcbValues {
    /// CPU SVN (16 SGX TCB components), in the PCK certificate and QE report.
    pub cpu_svn: [u8; 16],
    /// PCE SVN, in the PCK certificate and the quote header.
    pub pce_svn: u16,
    /// TEE TCB SVN of the TD report: byte 0 the TDX module's SVN, byte 1 its
    /// major version (selects the `TDX_01` module identity), bytes 2.. the
    /// other TDX TCB components.
    pub tee_tcb_svn: [u8; 16],
    /// MRSEAM of the TD report (not checked against collateral; a fixed
    /// simulated SHA-384 value).
    pub mrseam: [u8; 48],
    /// MRSIGNERSEAM the TCB info expects (all zero, as for Intel's module).
    pub mrsignerseam: [u8; 48],
    /// SEAM attributes the TCB info expects (little-endian u64, zero).
    pub seam_attributes: [u8; 8],
}

/// The Quoting Enclave values the simulated QE identity expects in a QE report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimQeIdentityValues {
    /// MRSIGNER of the simulated QE (SHA-256 of a label; not Intel's).
    pub mr_signer: [u8; 32],
    /// MRENCLAVE of the simulated QE (not checked against collateral).
    pub mr_enclave: [u8; 32],
    /// ISVPRODID of the TD quoting enclave (2, as Intel's TD_QE).
    pub isv_prod_id: u16,
    /// ISVSVN, matching the QE identity's `UpToDate` level.
    pub isv_svn: u16,
    /// Enclave attributes (INIT | MODE64BIT, not DEBUG).
    pub attributes: [u8; 16],
    /// MISCSELECT (little-endian in the report).
    pub misc_select: u32,
}

/// A P-256 key usable both for raw DCAP signatures and, through rcgen's
/// traits, for signing certificates and CRLs.
struct SimKey {
    key: SigningKey,
    /// SEC1 uncompressed public point, `0x04 ‖ x ‖ y` (65 bytes).
    public_sec1: Vec<u8>,
}

impl SimKey {
    fn generate() -> Self {
        let key = SigningKey::random(&mut OsRng);
        let public_sec1 = key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        SimKey { key, public_sec1 }
    }

    /// ECDSA-P256-SHA256 over `msg`, raw `r ‖ s` big-endian.
    fn sign_raw(&self, msg: &[u8]) -> [u8; 64] {
        let sig: Signature = self.key.sign(msg);
        sig.to_bytes().into()
    }

    /// Public key `x ‖ y` big-endian (no `0x04` prefix).
    fn public_xy(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(&self.public_sec1[1..65]);
        out
    }
}

impl rcgen::PublicKeyData for SimKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public_sec1
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for SimKey {
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, rcgen::Error> {
        // X.509 wants the DER Ecdsa-Sig-Value, unlike the raw DCAP encoding.
        let sig: DerSignature = self.key.sign(msg);
        Ok(sig.as_bytes().to_vec())
    }
}

/// A CA of the simulated PKI: what is needed to issue certificates and CRLs.
struct SimCa {
    issuer: Issuer<'static, SimKey>,
    der: Vec<u8>,
    pem: String,
}

/// A leaf certificate with its key (the key signs DCAP data, not certificates).
struct SimLeaf {
    key: SimKey,
    der: Vec<u8>,
    pem: String,
    /// Serial number, big-endian, positive, without a leading zero byte.
    serial: Vec<u8>,
}

/// A complete simulated Intel SGX/TDX PKI and its collateral.
///
/// Generation takes a few milliseconds (P-256 only). The keys never leave
/// the process.
pub struct SimTdxPki {
    now: OffsetDateTime,
    opts: SimTdxOptions,
    root: SimCa,
    platform_ca: SimCa,
    pck: SimLeaf,
    tcb_signer: SimLeaf,
    attestation_key: SimKey,
    ppid: [u8; 16],
    tcb: SimTcbValues,
    qe: SimQeIdentityValues,
    root_ca_crl: Vec<u8>,
    pck_crl: Vec<u8>,
    tcb_info: String,
    tcb_info_signature: [u8; 64],
    qe_identity: String,
    qe_identity_signature: [u8; 64],
}

impl std::fmt::Debug for SimTdxPki {
    // Keys are left out on purpose; the rest identifies the instance.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimTdxPki")
            .field("generated_at", &format_rfc3339(self.now))
            .field("options", &self.opts)
            .field("fmspc", &hex::encode_upper(SIM_FMSPC))
            .field("ppid", &hex::encode(self.ppid))
            .field("pck_serial", &hex::encode(&self.pck.serial))
            .finish_non_exhaustive()
    }
}

fn pki_error(what: &str, e: impl std::fmt::Display) -> Error {
    // rcgen only fails on parameters this module chose, so this is a bug in
    // the simulator rather than bad input; no better-fitting variant exists.
    Error::Unsupported(format!("simulated TDX PKI: {what}: {e}"))
}

fn sim_dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, SIM_ORG);
    dn
}

/// A random positive serial number of 16 bytes whose first byte is neither
/// zero nor has its top bit set, so that its DER INTEGER encoding is exactly
/// these bytes (CRL entries are matched on that encoding).
fn random_serial() -> Vec<u8> {
    let mut s = [0u8; 16];
    OsRng.fill_bytes(&mut s);
    s[0] = (s[0] & 0x7f) | 0x10;
    s.to_vec()
}

fn random16() -> [u8; 16] {
    let mut b = [0u8; 16];
    OsRng.fill_bytes(&mut b);
    b
}

fn cert_params(
    cn: &str,
    serial: &[u8],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = sim_dn(cn);
    p.serial_number = Some(SerialNumber::from_slice(serial));
    p.not_before = not_before;
    p.not_after = not_after;
    p.key_identifier_method = KeyIdMethod::Sha256;
    p
}

fn oid(tail: &[u64]) -> yasna::models::ObjectIdentifier {
    let mut arcs = SGX_EXTENSION_OID.to_vec();
    arcs.extend_from_slice(tail);
    yasna::models::ObjectIdentifier::from_slice(&arcs)
}

/// DER of Intel's SGX extension (1.2.840.113741.1.13.1) value: a SEQUENCE of
/// `SEQUENCE { OID, value }` entries, the layout `dcap-qvl` walks by OID.
fn sgx_extension_der(
    ppid: &[u8; 16],
    tcb: &SimTcbValues,
    platform_instance_id: &[u8; 16],
) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            // PPID, OCTET STRING (16)
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(&[1]));
                w.next().write_bytes(ppid);
            });
            // TCB: 16 SGX components as INTEGER, PCESVN INTEGER, CPUSVN OCTET STRING (16)
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(&[2]));
                w.next().write_sequence(|w| {
                    for (i, svn) in (1u64..).zip(tcb.cpu_svn) {
                        w.next().write_sequence(|w| {
                            w.next().write_oid(&oid(&[2, i]));
                            w.next().write_u8(svn);
                        });
                    }
                    w.next().write_sequence(|w| {
                        w.next().write_oid(&oid(&[2, 17]));
                        w.next().write_u16(tcb.pce_svn);
                    });
                    w.next().write_sequence(|w| {
                        w.next().write_oid(&oid(&[2, 18]));
                        w.next().write_bytes(&tcb.cpu_svn);
                    });
                });
            });
            // PCE-ID, OCTET STRING (2)
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(&[3]));
                w.next().write_bytes(&SIM_PCE_ID);
            });
            // FMSPC, OCTET STRING (6)
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(&[4]));
                w.next().write_bytes(&SIM_FMSPC);
            });
            // SGX Type, ENUMERATED: 1 = Scalable (what TDX platforms report)
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(&[5]));
                w.next().write_enum(1);
            });
            // Platform Instance ID, OCTET STRING (16)
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(&[6]));
                w.next().write_bytes(platform_instance_id);
            });
            // Configuration: all flags false, so that strict policies
            // (dcap-qvl's QuotePolicy::strict rejects each flag) accept it.
            w.next().write_sequence(|w| {
                w.next().write_oid(&oid(&[7]));
                w.next().write_sequence(|w| {
                    for flag in 1u64..=3 {
                        w.next().write_sequence(|w| {
                            w.next().write_oid(&oid(&[7, flag]));
                            w.next().write_bool(false);
                        });
                    }
                });
            });
        })
    })
}

fn sim_tcb_values() -> SimTcbValues {
    SimTcbValues {
        cpu_svn: [4, 4, 2, 2, 3, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0],
        pce_svn: 13,
        tee_tcb_svn: [5, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        mrseam: Sha384::digest(b"Chrysalis SIMULATED TDX module MRSEAM").into(),
        mrsignerseam: [0u8; 48],
        seam_attributes: [0u8; 8],
    }
}

fn sim_qe_values() -> SimQeIdentityValues {
    let mut attributes = [0u8; 16];
    attributes[0] = 0x11; // INIT | MODE64BIT
    SimQeIdentityValues {
        mr_signer: Sha256::digest(b"Chrysalis SIMULATED TD_QE MRSIGNER").into(),
        mr_enclave: Sha256::digest(b"Chrysalis SIMULATED TD_QE MRENCLAVE").into(),
        isv_prod_id: 2,
        isv_svn: 4,
        attributes,
        misc_select: 0,
    }
}

// ---- PCCS JSON shapes (field order as Intel's PCS emits them) ----

#[derive(Serialize)]
struct SvnJson {
    svn: u8,
}

#[derive(Serialize)]
struct TcbJson {
    sgxtcbcomponents: Vec<SvnJson>,
    pcesvn: u16,
    tdxtcbcomponents: Vec<SvnJson>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TcbLevelJson<T> {
    tcb: T,
    tcb_date: String,
    tcb_status: &'static str,
    #[serde(rename = "advisoryIDs", skip_serializing_if = "Vec::is_empty")]
    advisory_ids: Vec<String>,
}

#[derive(Serialize)]
struct IsvSvnJson {
    isvsvn: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TdxModuleJson {
    mrsigner: String,
    attributes: String,
    attributes_mask: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TdxModuleIdentityJson {
    id: String,
    mrsigner: String,
    attributes: String,
    attributes_mask: String,
    tcb_levels: Vec<TcbLevelJson<IsvSvnJson>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TcbInfoJson {
    id: &'static str,
    version: u8,
    issue_date: String,
    next_update: String,
    fmspc: String,
    pce_id: String,
    tcb_type: u8,
    tcb_evaluation_data_number: u32,
    tdx_module: TdxModuleJson,
    tdx_module_identities: Vec<TdxModuleIdentityJson>,
    tcb_levels: Vec<TcbLevelJson<TcbJson>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QeIdentityJson {
    id: &'static str,
    version: u8,
    issue_date: String,
    next_update: String,
    tcb_evaluation_data_number: u32,
    miscselect: String,
    miscselect_mask: String,
    attributes: String,
    attributes_mask: String,
    mrsigner: String,
    isvprodid: u16,
    tcb_levels: Vec<TcbLevelJson<IsvSvnJson>>,
}

fn svns(v: &[u8]) -> Vec<SvnJson> {
    v.iter().map(|&svn| SvnJson { svn }).collect()
}

/// `YYYY-MM-DDT00:00:00Z`: Intel dates TCB levels by day.
fn tcb_date(t: OffsetDateTime) -> String {
    format_rfc3339(t.replace_time(Time::MIDNIGHT))
}

fn tcb_info_json(
    tcb: &SimTcbValues,
    opts: &SimTdxOptions,
    issue: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Result<String> {
    let level =
        |pce_svn: u16, date: OffsetDateTime, status: &'static str, adv: Vec<String>| TcbLevelJson {
            tcb: TcbJson {
                sgxtcbcomponents: svns(&tcb.cpu_svn),
                pcesvn: pce_svn,
                tdxtcbcomponents: svns(&tcb.tee_tcb_svn),
            },
            tcb_date: tcb_date(date),
            tcb_status: status,
            advisory_ids: adv,
        };
    let tcb_levels = match &opts.tcb_status {
        // The platform's level, then an older one below it (realistic shape;
        // never matched by the simulated platform).
        SimTcbStatus::UpToDate => vec![
            level(tcb.pce_svn, issue - Duration::days(30), "UpToDate", vec![]),
            level(
                tcb.pce_svn.saturating_sub(2),
                issue - Duration::days(400),
                "OutOfDate",
                vec!["INTEL-SA-00837".to_owned()],
            ),
        ],
        // A newer level the platform falls short of (PCE SVN + 1), then the
        // platform's own, out-of-date level.
        SimTcbStatus::OutOfDate { advisory_ids } => vec![
            level(
                tcb.pce_svn + 1,
                issue - Duration::days(30),
                "UpToDate",
                vec![],
            ),
            level(
                tcb.pce_svn,
                issue - Duration::days(400),
                "OutOfDate",
                advisory_ids.clone(),
            ),
        ],
    };
    let module_isvsvn = u16::from(tcb.tee_tcb_svn[0]);
    let module_id = TdxModuleIdentityJson {
        // Selected by tee_tcb_svn[1], the module's major version.
        id: format!("TDX_{:02X}", tcb.tee_tcb_svn[1]),
        mrsigner: hex::encode_upper(tcb.mrsignerseam),
        attributes: hex::encode_upper(tcb.seam_attributes),
        attributes_mask: "FFFFFFFFFFFFFFFF".to_owned(),
        tcb_levels: vec![
            TcbLevelJson {
                tcb: IsvSvnJson {
                    isvsvn: module_isvsvn,
                },
                tcb_date: tcb_date(issue - Duration::days(30)),
                tcb_status: "UpToDate",
                advisory_ids: vec![],
            },
            TcbLevelJson {
                tcb: IsvSvnJson {
                    isvsvn: module_isvsvn.saturating_sub(2),
                },
                tcb_date: tcb_date(issue - Duration::days(400)),
                tcb_status: "OutOfDate",
                advisory_ids: vec![],
            },
        ],
    };
    let info = TcbInfoJson {
        id: "TDX",
        version: 3,
        issue_date: format_rfc3339(issue),
        next_update: format_rfc3339(next_update),
        fmspc: hex::encode_upper(SIM_FMSPC),
        pce_id: hex::encode_upper(SIM_PCE_ID),
        tcb_type: 0,
        tcb_evaluation_data_number: opts.tcb_evaluation_data_number,
        tdx_module: TdxModuleJson {
            mrsigner: hex::encode_upper(tcb.mrsignerseam),
            attributes: hex::encode_upper(tcb.seam_attributes),
            attributes_mask: "FFFFFFFFFFFFFFFF".to_owned(),
        },
        tdx_module_identities: vec![module_id],
        tcb_levels,
    };
    serde_json::to_string(&info).map_err(|e| pki_error("TCB info JSON", e))
}

fn qe_identity_json(
    qe: &SimQeIdentityValues,
    opts: &SimTdxOptions,
    issue: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Result<String> {
    let mut attributes_mask = [0u8; 16];
    // Intel's mask: the first 8 bytes, less DEBUG (bit 1) which the verifier
    // checks on its own.
    attributes_mask[..8].copy_from_slice(&[0xFB, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
    let id = QeIdentityJson {
        id: "TD_QE",
        version: 2,
        issue_date: format_rfc3339(issue),
        next_update: format_rfc3339(next_update),
        tcb_evaluation_data_number: opts.tcb_evaluation_data_number,
        // dcap-qvl reads these hex strings as the report's little-endian bytes.
        miscselect: hex::encode_upper(qe.misc_select.to_le_bytes()),
        miscselect_mask: "FFFFFFFF".to_owned(),
        attributes: hex::encode_upper(qe.attributes),
        attributes_mask: hex::encode_upper(attributes_mask),
        mrsigner: hex::encode_upper(qe.mr_signer),
        isvprodid: qe.isv_prod_id,
        tcb_levels: vec![
            TcbLevelJson {
                tcb: IsvSvnJson { isvsvn: qe.isv_svn },
                tcb_date: tcb_date(issue - Duration::days(30)),
                tcb_status: "UpToDate",
                advisory_ids: vec![],
            },
            TcbLevelJson {
                tcb: IsvSvnJson {
                    isvsvn: qe.isv_svn.saturating_sub(1),
                },
                tcb_date: tcb_date(issue - Duration::days(400)),
                tcb_status: "OutOfDate",
                advisory_ids: vec!["INTEL-SA-00615".to_owned()],
            },
        ],
    };
    serde_json::to_string(&id).map_err(|e| pki_error("QE identity JSON", e))
}

impl SimTdxPki {
    /// Generates a PKI and collateral valid at `now` with default options.
    pub fn generate(now: OffsetDateTime) -> Result<Self> {
        Self::generate_with(now, &SimTdxOptions::default())
    }

    /// Generates a PKI and collateral valid at `now` (unless `opts` says
    /// otherwise).
    pub fn generate_with(now: OffsetDateTime, opts: &SimTdxOptions) -> Result<Self> {
        // Whole seconds: certificates and JSON dates carry no fractions, and
        // equal inputs should give equal dates everywhere.
        let now = now
            .to_offset(time::UtcOffset::UTC)
            .replace_nanosecond(0)
            .map_err(|e| pki_error("time", e))?;
        let issued = now - BACKDATE;
        let validity = Duration::days(i64::from(opts.validity_days));

        // Root CA: pathlen 1, as Intel's (PCK Platform CA below it).
        let root_key = SimKey::generate();
        let mut root_params = cert_params(
            SIM_ROOT_CA_CN,
            &random_serial(),
            issued,
            now + CA_CERT_LIFETIME,
        );
        root_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        root_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let root_cert = root_params
            .self_signed(&root_key)
            .map_err(|e| pki_error("root CA", e))?;
        let root = SimCa {
            der: root_cert.der().to_vec(),
            pem: root_cert.pem(),
            issuer: Issuer::new(root_params, root_key),
        };

        // PCK Platform CA: pathlen 0, issues PCK certificates and the PCK CRL.
        let pca_key = SimKey::generate();
        let mut pca_params = cert_params(
            SIM_PCK_PLATFORM_CA_CN,
            &random_serial(),
            issued,
            now + CA_CERT_LIFETIME,
        );
        pca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        pca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        pca_params.use_authority_key_identifier_extension = true;
        let pca_cert = pca_params
            .signed_by(&pca_key, &root.issuer)
            .map_err(|e| pki_error("PCK Platform CA", e))?;
        let platform_ca = SimCa {
            der: pca_cert.der().to_vec(),
            pem: pca_cert.pem(),
            issuer: Issuer::new(pca_params, pca_key),
        };

        // PCK leaf with the SGX extension.
        let tcb = sim_tcb_values();
        let qe = sim_qe_values();
        let ppid = random16();
        let platform_instance_id = random16();
        let pck_key = SimKey::generate();
        let pck_serial = random_serial();
        let mut pck_params = cert_params(SIM_PCK_CN, &pck_serial, issued, now + LEAF_CERT_LIFETIME);
        pck_params.is_ca = IsCa::ExplicitNoCa;
        pck_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ];
        pck_params.use_authority_key_identifier_extension = true;
        // Not critical, like Intel's: webpki rejects unknown critical extensions.
        pck_params.custom_extensions = vec![CustomExtension::from_oid_content(
            &SGX_EXTENSION_OID,
            sgx_extension_der(&ppid, &tcb, &platform_instance_id),
        )];
        let pck_cert = pck_params
            .signed_by(&pck_key, &platform_ca.issuer)
            .map_err(|e| pki_error("PCK certificate", e))?;
        let pck = SimLeaf {
            key: pck_key,
            der: pck_cert.der().to_vec(),
            pem: pck_cert.pem(),
            serial: pck_serial,
        };

        // TCB signing: directly under the root (dcap-qvl requires a path of
        // exactly one certificate below the root).
        let tcb_key = SimKey::generate();
        let tcb_serial = random_serial();
        let mut tcb_params = cert_params(
            SIM_TCB_SIGNING_CN,
            &tcb_serial,
            issued,
            now + LEAF_CERT_LIFETIME,
        );
        tcb_params.is_ca = IsCa::ExplicitNoCa;
        tcb_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::ContentCommitment,
        ];
        tcb_params.use_authority_key_identifier_extension = true;
        let tcb_cert = tcb_params
            .signed_by(&tcb_key, &root.issuer)
            .map_err(|e| pki_error("TCB signing certificate", e))?;
        let tcb_signer = SimLeaf {
            key: tcb_key,
            der: tcb_cert.der().to_vec(),
            pem: tcb_cert.pem(),
            serial: tcb_serial,
        };

        let crl_this = now + opts.crl_this_update.unwrap_or(-BACKDATE);
        let crl_next = now + opts.crl_next_update.unwrap_or(validity);
        let root_ca_crl = make_crl(&root.issuer, crl_this, crl_next, None)?;
        let revoked = opts.revoke_pck.then_some(pck.serial.as_slice());
        let pck_crl = make_crl(&platform_ca.issuer, crl_this, crl_next, revoked)?;

        let tcb_info = tcb_info_json(
            &tcb,
            opts,
            issued,
            now + opts.tcb_info_next_update.unwrap_or(validity),
        )?;
        let tcb_info_signature = tcb_signer.key.sign_raw(tcb_info.as_bytes());
        let qe_identity = qe_identity_json(
            &qe,
            opts,
            issued,
            now + opts.qe_identity_next_update.unwrap_or(validity),
        )?;
        let qe_identity_signature = tcb_signer.key.sign_raw(qe_identity.as_bytes());

        Ok(SimTdxPki {
            now,
            opts: opts.clone(),
            root,
            platform_ca,
            pck,
            tcb_signer,
            attestation_key: SimKey::generate(),
            ppid,
            tcb,
            qe,
            root_ca_crl,
            pck_crl,
            tcb_info,
            tcb_info_signature,
            qe_identity,
            qe_identity_signature,
        })
    }

    /// The time the PKI was generated for (UTC, whole seconds).
    pub fn generated_at(&self) -> OffsetDateTime {
        self.now
    }

    /// The options it was generated with.
    pub fn options(&self) -> &SimTdxOptions {
        &self.opts
    }

    /// DER of the simulated root CA certificate: the trust anchor to give
    /// `dcap_qvl::verify::QuoteVerifier::new`.
    pub fn root_ca_der(&self) -> &[u8] {
        &self.root.der
    }

    /// PEM of the simulated root CA certificate.
    pub fn root_ca_pem(&self) -> &str {
        &self.root.pem
    }

    /// DER of the PCK leaf certificate.
    pub fn pck_cert_der(&self) -> &[u8] {
        &self.pck.der
    }

    /// Serial number of the PCK leaf certificate (big-endian, as on a CRL).
    pub fn pck_serial(&self) -> &[u8] {
        &self.pck.serial
    }

    /// PEM chain leaf ‖ PCK Platform CA ‖ root: the order of certification
    /// data type 5 in a quote.
    pub fn pck_chain_pem(&self) -> String {
        format!("{}{}{}", self.pck.pem, self.platform_ca.pem, self.root.pem)
    }

    /// PEM chain PCK Platform CA ‖ root: the PCK CRL's issuer chain.
    pub fn pck_crl_issuer_chain_pem(&self) -> String {
        format!("{}{}", self.platform_ca.pem, self.root.pem)
    }

    /// PEM chain TCB signing ‖ root: the issuer chain of both the TCB info
    /// and the QE identity.
    pub fn tcb_signing_chain_pem(&self) -> String {
        format!("{}{}", self.tcb_signer.pem, self.root.pem)
    }

    /// The FMSPC of the simulated platform (6 bytes).
    pub fn fmspc(&self) -> [u8; 6] {
        SIM_FMSPC
    }

    /// The PPID in the PCK certificate (16 random bytes per instance).
    pub fn ppid(&self) -> [u8; 16] {
        self.ppid
    }

    /// The TCB values a TD report (and the quote header's PCE SVN) must carry
    /// to match the simulated platform's TCB level.
    pub fn tcb_values(&self) -> SimTcbValues {
        self.tcb
    }

    /// The values a QE report must carry to match the simulated QE identity.
    pub fn qe_identity_values(&self) -> SimQeIdentityValues {
        self.qe
    }

    /// The signed TCB info JSON (`tcbInfo` body of the PCS response), exactly
    /// the bytes its signature covers.
    pub fn tcb_info_json(&self) -> &str {
        &self.tcb_info
    }

    /// The signed QE identity JSON (`enclaveIdentity` body), exactly the bytes
    /// its signature covers.
    pub fn qe_identity_json(&self) -> &str {
        &self.qe_identity
    }

    /// DER of the root CA CRL (issued by the root, nothing revoked).
    pub fn root_ca_crl_der(&self) -> &[u8] {
        &self.root_ca_crl
    }

    /// DER of the PCK CRL (issued by the PCK Platform CA); lists the PCK leaf
    /// when [`SimTdxOptions::revoke_pck`] was set.
    pub fn pck_crl_der(&self) -> &[u8] {
        &self.pck_crl
    }

    /// A fresh PCK CRL, same validity as the collateral's, that revokes the
    /// PCK leaf certificate (for "revoked PCK" tests with otherwise identical
    /// collateral).
    pub fn pck_crl_revoking_pck(&self) -> Result<Vec<u8>> {
        let validity = Duration::days(i64::from(self.opts.validity_days));
        make_crl(
            &self.platform_ca.issuer,
            self.now + self.opts.crl_this_update.unwrap_or(-BACKDATE),
            self.now + self.opts.crl_next_update.unwrap_or(validity),
            Some(&self.pck.serial),
        )
    }

    /// The collateral `dcap-qvl` verifies a simulated quote with (what a
    /// PCCS would return; `pck_certificate_chain` is `None` because the chain
    /// travels in the quote).
    pub fn collateral(&self) -> dcap_qvl::QuoteCollateralV3 {
        dcap_qvl::QuoteCollateralV3 {
            pck_crl_issuer_chain: self.pck_crl_issuer_chain_pem(),
            root_ca_crl: self.root_ca_crl.clone(),
            pck_crl: self.pck_crl.clone(),
            tcb_info_issuer_chain: self.tcb_signing_chain_pem(),
            tcb_info: self.tcb_info.clone(),
            tcb_info_signature: self.tcb_info_signature.to_vec(),
            qe_identity_issuer_chain: self.tcb_signing_chain_pem(),
            qe_identity: self.qe_identity.clone(),
            qe_identity_signature: self.qe_identity_signature.to_vec(),
            pck_certificate_chain: None,
        }
    }

    /// Signs a 384-byte QE report with the PCK key: ECDSA-P256-SHA256, raw
    /// `r ‖ s` big-endian.
    pub fn sign_qe_report(&self, qe_report_bytes: &[u8; 384]) -> [u8; 64] {
        self.pck.key.sign_raw(qe_report_bytes)
    }

    /// The attestation public key, `x ‖ y` big-endian (no `0x04` prefix), as
    /// it appears in the quote's signature data.
    pub fn attestation_public_key(&self) -> [u8; 64] {
        self.attestation_key.public_xy()
    }

    /// Signs the quote's signed bytes (header ‖ body) with the attestation
    /// key: ECDSA-P256-SHA256, raw `r ‖ s` big-endian.
    pub fn sign_quote(&self, signed_bytes: &[u8]) -> [u8; 64] {
        self.attestation_key.sign_raw(signed_bytes)
    }
}

fn make_crl(
    issuer: &Issuer<'static, SimKey>,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    revoke_serial: Option<&[u8]>,
) -> Result<Vec<u8>> {
    let params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from(1u64),
        // No IDP: webpki then treats the CRL as covering every certificate of
        // its issuer, as for Intel's CRLs.
        issuing_distribution_point: None,
        revoked_certs: revoke_serial
            .map(|serial| RevokedCertParams {
                serial_number: SerialNumber::from_slice(serial),
                revocation_time: this_update,
                reason_code: Some(RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .into_iter()
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(issuer).map_err(|e| pki_error("CRL", e))?;
    Ok(crl.der().to_vec())
}

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
    /// Set TD attributes bit 0 (DEBUG). dcap-qvl rejects such a quote by default.
    pub debug: bool,
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

        let td_attributes = TD_ATTR_SEPT_VE_DISABLE | if td.debug { TD_ATTR_DEBUG } else { 0 };
        let base = TdReport10 {
            tee_tcb_svn: tcb.tee_tcb_svn,
            mrseam: tcb.mrseam,
            mrsignerseam: tcb.mrsignerseam,
            seam_attributes: tcb.seam_attributes,
            td_attributes: td_attributes.to_le_bytes(),
            xfam: SIM_XFAM.to_le_bytes(),
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
        quote.signature.signature = self.pki.sign_quote(&quote.signed_bytes());
        quote
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dcap_qvl::verify::QuoteVerifier;

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn secs(t: OffsetDateTime) -> u64 {
        t.unix_timestamp() as u64
    }

    fn td() -> SimTdInput {
        SimTdInput {
            mrtd: [0x11; 48],
            rtmr: [[0x21; 48], [0x22; 48], [0x23; 48], [0x24; 48]],
            report_data: [0x5a; 64],
            ..SimTdInput::default()
        }
    }

    /// dcap-qvl's error with its whole context chain.
    fn verify_err(sim: &SimTdx, quote: &[u8], at: OffsetDateTime) -> String {
        let err = QuoteVerifier::new(sim.root_ca_der().to_vec())
            .verify(quote, &sim.collateral(), secs(at))
            .expect_err("verification should fail");
        format!("{err:#}")
    }

    #[test]
    fn generation_is_fast() {
        let start = std::time::Instant::now();
        let sim = SimTdx::new(now(), &SimTdxOptions::default()).unwrap();
        let _ = sim.quote(&td());
        let took = start.elapsed();
        // Generous bound for debug builds on slow CI; typically a few ms.
        assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
    }

    #[test]
    fn pck_extension_reads_back_in_dcap_qvl() {
        let pki = SimTdxPki::generate(now()).unwrap();
        let ext = dcap_qvl::intel::parse_pck_extension(pki.pck_cert_der()).unwrap();
        let tcb = pki.tcb_values();
        assert_eq!(ext.ppid, pki.ppid());
        assert_eq!(ext.cpu_svn, tcb.cpu_svn);
        assert_eq!(ext.pce_svn, tcb.pce_svn);
        assert_eq!(ext.fmspc, pki.fmspc());
        assert_eq!(ext.pce_id, SIM_PCE_ID);
        assert_eq!(ext.sgx_type, 1);
        assert_eq!(ext.platform_instance_id.map(|v| v.len()), Some(16));
        assert_eq!(ext.dynamic_platform, Some(false));
        assert_eq!(ext.cached_keys, Some(false));
        assert_eq!(ext.smt_enabled, Some(false));
        assert_eq!(
            dcap_qvl::intel::pck_ca(pki.pck_cert_der()).unwrap(),
            dcap_qvl::config::PckCa::Platform
        );
    }

    #[test]
    fn quote_round_trips_and_is_marked() {
        let sim = SimTdx::new(now(), &SimTdxOptions::default()).unwrap();
        for version in [SimQuoteVersion::V4, SimQuoteVersion::V5] {
            let bytes = sim.quote(&SimTdInput { version, ..td() });
            let parsed = TdxQuote::parse(&bytes).unwrap();
            assert_eq!(parsed.to_bytes(), bytes);
            assert!(parsed.header.user_data.starts_with(SIM_USER_DATA_PREFIX));
            assert!(parsed.claims_simulated());
            assert_eq!(parsed.td_report().report_data, [0x5a; 64]);
            let dq = dcap_qvl::quote::Quote::parse(&bytes).unwrap();
            assert_eq!(dq.header.version, parsed.header.version);
        }
    }

    #[test]
    fn up_to_date_quote_verifies() {
        let t = now();
        let sim = SimTdx::new(t, &SimTdxOptions::default()).unwrap();
        for version in [SimQuoteVersion::V4, SimQuoteVersion::V5] {
            let quote = sim.quote(&SimTdInput { version, ..td() });
            let report = QuoteVerifier::new(sim.root_ca_der().to_vec())
                .verify(&quote, &sim.collateral(), secs(t))
                .unwrap();
            assert_eq!(report.status, "UpToDate");
            assert!(report.advisory_ids.is_empty());
            assert_eq!(report.ppid, sim.pki().ppid());
            let td10 = report.report.as_td10().unwrap();
            assert_eq!(td10.report_data, [0x5a; 64]);
            assert_eq!(td10.rt_mr3, [0x24; 48]);
        }
    }

    #[test]
    fn strict_policy_accepts_up_to_date_quote() {
        let t = now();
        let sim = SimTdx::new(t, &SimTdxOptions::default()).unwrap();
        let quote = sim.quote(&td());
        let policy = dcap_qvl::QuotePolicy::strict(secs(t));
        let claims = QuoteVerifier::new(sim.root_ca_der().to_vec())
            .verify_with_policy(&quote, sim.collateral(), secs(t), &policy)
            .unwrap();
        assert_eq!(claims.tcb.status, dcap_qvl::TcbStatus::UpToDate);
    }

    #[test]
    fn out_of_date_quote_reports_advisories() {
        let t = now();
        let opts = SimTdxOptions::default().out_of_date(&["INTEL-SA-00837", "INTEL-SA-01036"]);
        let sim = SimTdx::new(t, &opts).unwrap();
        let report = QuoteVerifier::new(sim.root_ca_der().to_vec())
            .verify(&sim.quote(&td()), &sim.collateral(), secs(t))
            .unwrap();
        assert_eq!(report.status, "OutOfDate");
        assert_eq!(report.advisory_ids, ["INTEL-SA-00837", "INTEL-SA-01036"]);
    }

    #[test]
    fn expired_collateral_fails() {
        let t = now();
        let sim = SimTdx::new(t, &SimTdxOptions::default()).unwrap();
        let err = verify_err(&sim, &sim.quote(&td()), t + Duration::days(31));
        // The CRLs are checked first (root CA revocation check).
        assert!(err.contains("CrlExpired"), "{err}");
    }

    #[test]
    fn expired_tcb_info_fails() {
        let t = now();
        let opts = SimTdxOptions {
            tcb_info_next_update: Some(Duration::minutes(-30)),
            ..SimTdxOptions::default()
        };
        let sim = SimTdx::new(t, &opts).unwrap();
        let err = verify_err(&sim, &sim.quote(&td()), t);
        assert_eq!(err, "TCBInfo expired");
    }

    #[test]
    fn expired_qe_identity_fails() {
        let t = now();
        let opts = SimTdxOptions {
            qe_identity_next_update: Some(Duration::minutes(-30)),
            ..SimTdxOptions::default()
        };
        let sim = SimTdx::new(t, &opts).unwrap();
        let err = verify_err(&sim, &sim.quote(&td()), t);
        assert_eq!(err, "QE Identity expired");
    }

    #[test]
    fn revoked_pck_fails() {
        let t = now();
        let sim = SimTdx::new(t, &SimTdxOptions::default().revoke_pck(true)).unwrap();
        let err = verify_err(&sim, &sim.quote(&td()), t);
        assert!(err.contains("CertRevoked"), "{err}");

        // The same through the explicit CRL helper on otherwise good collateral.
        let sim = SimTdx::new(t, &SimTdxOptions::default()).unwrap();
        let mut collateral = sim.collateral();
        collateral.pck_crl = sim.pki().pck_crl_revoking_pck().unwrap();
        let err = QuoteVerifier::new(sim.root_ca_der().to_vec())
            .verify(&sim.quote(&td()), &collateral, secs(t))
            .unwrap_err();
        assert!(format!("{err:#}").contains("CertRevoked"), "{err:#}");
    }

    #[test]
    fn production_root_rejects_sim_quote() {
        let t = now();
        let sim = SimTdx::new(t, &SimTdxOptions::default()).unwrap();
        let err = QuoteVerifier::new_prod()
            .verify(&sim.quote(&td()), &sim.collateral(), secs(t))
            .unwrap_err();
        assert!(format!("{err:#}").contains("root CA CRL"), "{err:#}");
    }

    #[test]
    fn debug_td_fails() {
        let t = now();
        let sim = SimTdx::new(t, &SimTdxOptions::default()).unwrap();
        let quote = sim.quote(&SimTdInput {
            debug: true,
            ..td()
        });
        assert!(TdxQuote::parse(&quote).unwrap().td_report().is_debug());
        assert_eq!(verify_err(&sim, &quote, t), "Debug mode is enabled");
    }

    #[test]
    fn tampered_signatures_fail() {
        let t = now();
        let sim = SimTdx::new(t, &SimTdxOptions::default()).unwrap();

        let mut q = sim.quote_struct(&td());
        q.signature.signature[40] ^= 1;
        assert_eq!(
            verify_err(&sim, &q.to_bytes(), t),
            "ISV enclave report signature is invalid"
        );

        let mut q = sim.quote_struct(&td());
        q.body.td10_mut().report_data[0] ^= 1;
        assert_eq!(
            verify_err(&sim, &q.to_bytes(), t),
            "ISV enclave report signature is invalid"
        );

        let mut q = sim.quote_struct(&td());
        match &mut q.signature.certification {
            CertificationData::QeReport(qe) => qe.qe_report_signature[40] ^= 1,
            _ => unreachable!(),
        }
        assert_eq!(
            verify_err(&sim, &q.to_bytes(), t),
            "Signature is invalid for qe_report in quote"
        );
    }

    #[test]
    fn tampered_collateral_signatures_fail() {
        let t = now();
        let sim = SimTdx::new(t, &SimTdxOptions::default()).unwrap();
        let quote = sim.quote(&td());
        let verifier = QuoteVerifier::new(sim.root_ca_der().to_vec());

        let mut c = sim.collateral();
        c.tcb_info_signature[40] ^= 1;
        let err = verifier.verify(&quote, &c, secs(t)).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "Signature is invalid for tcb_info in quote_collateral"
        );

        let mut c = sim.collateral();
        c.qe_identity_signature[40] ^= 1;
        let err = verifier.verify(&quote, &c, secs(t)).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "Signature is invalid for qe_identity in quote_collateral"
        );
    }
}
