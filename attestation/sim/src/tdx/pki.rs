//! The simulated Intel SGX/TDX PKI: root CA, PCK Platform CA, PCK leaf
//! certificate with Intel's SGX extension, TCB signing certificate, both
//! CRLs, and [`SimTdxPki`], which holds them with the signed collateral JSON
//! and the attestation key.

use rand_core::{OsRng, RngCore};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CustomExtension,
    DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use chrysalis_attestation::error::Result;
use chrysalis_attestation::timefmt::format_rfc3339;

use super::collateral::{signed_qe_identity, signed_tcb_info, SignedJson};
use super::key::SimKey;
use super::options::SimTdxOptions;
use super::platform::{
    pki_error, sim_qe_values, sim_tcb_values, SimQeIdentityValues, SimTcbValues, SIM_FMSPC,
    SIM_PCE_ID,
};

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

/// How long the simulated CA certificates stay valid after `now`.
const CA_CERT_LIFETIME: Duration = Duration::days(3650);
/// How long the simulated leaf certificates stay valid after `now`.
const LEAF_CERT_LIFETIME: Duration = Duration::days(365);
/// Backdating of certificates, CRLs and JSON issue dates, so that a verifier
/// whose clock is slightly behind the generator's still accepts them.
const BACKDATE: Duration = Duration::hours(1);

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
    tcb_info: SignedJson,
    qe_identity: SignedJson,
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

        let tcb_info = signed_tcb_info(
            &tcb,
            opts,
            issued,
            now + opts.tcb_info_next_update.unwrap_or(validity),
            &tcb_signer.key,
        )?;
        let qe_identity = signed_qe_identity(
            &qe,
            opts,
            issued,
            now + opts.qe_identity_next_update.unwrap_or(validity),
            &tcb_signer.key,
        )?;

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
            qe_identity,
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
        &self.tcb_info.json
    }

    /// The signed QE identity JSON (`enclaveIdentity` body), exactly the bytes
    /// its signature covers.
    pub fn qe_identity_json(&self) -> &str {
        &self.qe_identity.json
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
            tcb_info: self.tcb_info.json.clone(),
            tcb_info_signature: self.tcb_info.signature.to_vec(),
            qe_identity_issuer_chain: self.tcb_signing_chain_pem(),
            qe_identity: self.qe_identity.json.clone(),
            qe_identity_signature: self.qe_identity.signature.to_vec(),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
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
}
