//! The simulated AMD key hierarchy: ARK and ASK (RSA, RSASSA-PSS SHA-384)
//! and a VCEK (P-384) carrying AMD's TCB and `hwID` extensions, held by
//! [`SimSnpAuthority`] with the VCEK's signing key.

use std::str::FromStr;
use std::time::SystemTime;

use rand_core::{OsRng, RngCore};
use rsa::pkcs8::EncodePublicKey;
use sha2::Sha384;
use time::OffsetDateTime;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::oid::AssociatedOid;
use x509_cert::der::{Encode, EncodePem};
use x509_cert::ext::{AsExtension, Extension};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::{Time, Validity};

use chrysalis_attestation::error::{Error, Result};
use chrysalis_attestation::snp::certs::oid;
use chrysalis_attestation::snp::{SnpCertificates, SnpRoots, TcbLayout, TcbVersion};

/// Subject CN of the simulated ARK.
pub const SIM_ARK_CN: &str = chrysalis_attestation::simulated::SIM_ARK_CN;
/// Subject CN of the simulated ASK.
pub const SIM_ASK_CN: &str = chrysalis_attestation::simulated::SIM_ASK_CN;
/// Organisation of the simulated CAs.
pub const SIM_ORG: &str = "Chrysalis SIMULATED (not AMD)";
/// The chip id of simulated reports starts with these ASCII bytes (a
/// [`crate::SIM_MARKER`] extension, for humans; trust never depends on it).
pub const SIM_CHIP_ID_PREFIX: &[u8] = b"CHRYSALIS-SIMULATED";

/// RSA modulus size of the simulated CA keys, in bits.
const RSA_BITS: usize = 2048;

/// The TCB the simulated VCEK is issued for by default (Milan layout):
/// bootloader 4, TEE 0, SNP 22, microcode 219 — a Milan patched for
/// AMD-SB-3019, i.e. exactly the verifier's Milan floor
/// (`chrysalis_attestation::snp::floor::MILAN`), so default simulated
/// evidence looks like an up-to-date host.
pub const SIM_TCB: (u8, u8, u8, u8) = (4, 0, 22, 219);

/// A simulated AMD key hierarchy for one simulated Milan chip.
pub struct SimSnpAuthority {
    ark_der: Vec<u8>,
    ask_der: Vec<u8>,
    vcek_der: Vec<u8>,
    pub(super) vcek_key: p384::ecdsa::SigningKey,
    pub(super) chip_id: [u8; 64],
    pub(super) tcb: TcbVersion,
    ark_signer: rsa::pss::SigningKey<Sha384>,
}

impl std::fmt::Debug for SimSnpAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The signing key stays out of logs.
        f.debug_struct("SimSnpAuthority")
            .field("chip_id", &hex::encode(self.chip_id))
            .field("tcb", &self.tcb)
            .finish_non_exhaustive()
    }
}

impl SimSnpAuthority {
    /// Generates a fresh hierarchy whose certificates are valid from one
    /// hour ago for 30 days.
    pub fn generate() -> Result<Self> {
        let now = OffsetDateTime::now_utc();
        Self::generate_with_validity(
            now - time::Duration::hours(1),
            now + time::Duration::days(30),
        )
    }

    /// Generates a fresh hierarchy whose three certificates are valid from
    /// `not_before` to `not_after` (whole seconds; e.g. to test expiry).
    pub fn generate_with_validity(
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Self> {
        Self::generate_with(not_before, not_after, SIM_TCB)
    }

    /// Generates a fresh hierarchy valid from one hour ago for 30 days whose
    /// VCEK is issued for `(bootloader, tee, snp, microcode)` (Milan layout),
    /// e.g. a platform below the verifier's TCB floor. Its reports carry
    /// that TCB as reported, current, committed and launch TCB.
    pub fn generate_with_tcb(tcb: (u8, u8, u8, u8)) -> Result<Self> {
        let now = OffsetDateTime::now_utc();
        Self::generate_with(
            now - time::Duration::hours(1),
            now + time::Duration::days(30),
            tcb,
        )
    }

    fn generate_with(
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
        tcb: (u8, u8, u8, u8),
    ) -> Result<Self> {
        let validity = validity(not_before, not_after)?;
        let ark_name = ca_name(SIM_ARK_CN)?;
        let ask_name = ca_name(SIM_ASK_CN)?;

        let ark_key = rsa_key()?;
        let ask_key = rsa_key()?;
        let ark_signer = rsa::pss::SigningKey::<Sha384>::new(ark_key);
        let ask_signer = rsa::pss::SigningKey::<Sha384>::new(ask_key);

        let ark_spki = rsa_spki(&ark_signer)?;
        let ark = CertificateBuilder::new(
            Profile::Root,
            serial(),
            validity,
            ark_name.clone(),
            ark_spki,
            &ark_signer,
        )
        .map_err(build_err)?
        .build_with_rng::<rsa::pss::Signature>(&mut OsRng)
        .map_err(build_err)?;

        let ask = CertificateBuilder::new(
            Profile::SubCA {
                issuer: ark_name,
                path_len_constraint: Some(0),
            },
            serial(),
            validity,
            ask_name.clone(),
            rsa_spki(&ask_signer)?,
            &ark_signer,
        )
        .map_err(build_err)?
        .build_with_rng::<rsa::pss::Signature>(&mut OsRng)
        .map_err(build_err)?;

        let vcek_key = p384::ecdsa::SigningKey::random(&mut OsRng);
        let vcek_spki = SubjectPublicKeyInfoOwned::from_key(*vcek_key.verifying_key())
            .map_err(|e| sim_err(format!("VCEK public key: {e}")))?;
        let mut chip_id = [0u8; 64];
        OsRng.fill_bytes(&mut chip_id);
        chip_id[..SIM_CHIP_ID_PREFIX.len()].copy_from_slice(SIM_CHIP_ID_PREFIX);
        let (bl, tee, snp, ucode) = tcb;
        let tcb = TcbVersion::from_parts(TcbLayout::MilanGenoa, 0, bl, tee, snp, ucode);

        let mut vcek = CertificateBuilder::new(
            Profile::Leaf {
                issuer: ask_name,
                enable_key_agreement: false,
                enable_key_encipherment: false,
            },
            serial(),
            validity,
            Name::from_str("CN=SEV-VCEK,O=Chrysalis SIMULATED (not AMD),OU=Engineering")
                .map_err(|e| sim_err(format!("VCEK name: {e}")))?,
            vcek_spki,
            &ask_signer,
        )
        .map_err(build_err)?;
        let extensions = [
            AmdExtension::integer(oid::STRUCT_VERSION, 0),
            AmdExtension::ia5(oid::PRODUCT_NAME, "Milan-B0"),
            AmdExtension::integer(oid::BL_SPL, bl),
            AmdExtension::integer(oid::TEE_SPL, tee),
            AmdExtension::integer(oid::SNP_SPL, snp),
            AmdExtension::integer(oid::UCODE_SPL, ucode),
            AmdExtension::raw(oid::HW_ID, chip_id.to_vec()),
        ];
        for ext in extensions {
            vcek.add_extension(&ext?).map_err(build_err)?;
        }
        let vcek = vcek
            .build_with_rng::<rsa::pss::Signature>(&mut OsRng)
            .map_err(build_err)?;

        Ok(SimSnpAuthority {
            ark_der: to_der(&ark)?,
            ask_der: to_der(&ask)?,
            vcek_der: to_der(&vcek)?,
            vcek_key,
            chip_id,
            tcb,
            ark_signer,
        })
    }

    /// The simulated VCEK, DER.
    pub fn vcek_der(&self) -> &[u8] {
        &self.vcek_der
    }
    /// The simulated ASK, DER.
    pub fn ask_der(&self) -> &[u8] {
        &self.ask_der
    }
    /// The simulated ARK, DER.
    pub fn ark_der(&self) -> &[u8] {
        &self.ark_der
    }
    /// The chip id of this simulated chip (starts with
    /// [`SIM_CHIP_ID_PREFIX`]).
    pub fn chip_id(&self) -> [u8; 64] {
        self.chip_id
    }
    /// The TCB the VCEK was issued for.
    pub fn tcb(&self) -> TcbVersion {
        self.tcb
    }

    /// VCEK, ASK and ARK as PEM, in that order.
    pub fn chain_pem(&self) -> String {
        [&self.vcek_der, &self.ask_der, &self.ark_der]
            .into_iter()
            .map(|der| pem_block(der))
            .collect()
    }

    /// The certificates that go with this authority's reports.
    pub fn certificates(&self) -> SnpCertificates {
        SnpCertificates::new(self.vcek_der.clone())
            .with_chain(self.ask_der.clone(), self.ark_der.clone())
    }

    /// An AMD-shaped CRL (DER) signed by this ARK with RSASSA-PSS SHA-384,
    /// valid from `this_update` to `next_update`, listing the ASK when
    /// `revoke_ask` (what AMD's KDS serves at `…/vcek/v1/{product}/crl`).
    pub fn crl_der(
        &self,
        revoke_ask: bool,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<Vec<u8>> {
        use rsa::signature::{RandomizedSigner, SignatureEncoding};
        use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
        use x509_cert::der::asn1::BitString;
        use x509_cert::der::Decode;
        let der_err = |e: x509_cert::der::Error| sim_err(format!("CRL: {e}"));
        let ark = x509_cert::Certificate::from_der(&self.ark_der).map_err(der_err)?;
        let ask = x509_cert::Certificate::from_der(&self.ask_der).map_err(der_err)?;
        let window = validity(this_update, next_update)?;
        let tbs = TbsCertList {
            version: x509_cert::Version::V2,
            signature: ark.signature_algorithm.clone(),
            issuer: ark.tbs_certificate.subject.clone(),
            this_update: window.not_before,
            next_update: Some(window.not_after),
            revoked_certificates: revoke_ask.then(|| {
                vec![RevokedCert {
                    serial_number: ask.tbs_certificate.serial_number.clone(),
                    revocation_date: window.not_before,
                    crl_entry_extensions: None,
                }]
            }),
            crl_extensions: None,
        };
        let tbs_der = tbs.to_der().map_err(der_err)?;
        let sig = self.ark_signer.sign_with_rng(&mut OsRng, &tbs_der);
        CertificateList {
            tbs_cert_list: tbs,
            signature_algorithm: ark.signature_algorithm,
            signature: BitString::from_bytes(&sig.to_vec()).map_err(der_err)?,
        }
        .to_der()
        .map_err(der_err)
    }

    /// Roots trusting only this authority's ARK, as
    /// [`chrysalis_attestation::TrustAnchor::Simulated`].
    pub fn roots(&self) -> SnpRoots {
        SnpRoots::simulated(self.ark_der.clone())
    }
}

fn sim_err(detail: String) -> Error {
    Error::Unsupported(format!("simulated SNP authority: {detail}"))
}

fn build_err(e: impl std::fmt::Display) -> Error {
    sim_err(format!("certificate builder: {e}"))
}

fn rsa_key() -> Result<rsa::RsaPrivateKey> {
    rsa::RsaPrivateKey::new(&mut OsRng, RSA_BITS)
        .map_err(|e| sim_err(format!("RSA key generation: {e}")))
}

fn rsa_spki(signer: &rsa::pss::SigningKey<Sha384>) -> Result<SubjectPublicKeyInfoOwned> {
    let der = signer
        .as_ref()
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| sim_err(format!("RSA public key: {e}")))?;
    <SubjectPublicKeyInfoOwned as x509_cert::der::Decode>::from_der(der.as_bytes())
        .map_err(|e| sim_err(format!("RSA public key: {e}")))
}

fn ca_name(cn: &str) -> Result<Name> {
    // RFC 4514 order: the most specific RDN (CN) first.
    Name::from_str(&format!(
        "CN={cn},O={SIM_ORG},ST=CA,L=Santa Clara,C=US,OU=Engineering"
    ))
    .map_err(|e| sim_err(format!("name {cn}: {e}")))
}

fn serial() -> SerialNumber {
    // Positive, 16 random bytes: the top bit cleared keeps the INTEGER
    // positive without a leading zero byte.
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::new(&bytes).unwrap_or_else(|_| SerialNumber::from(1u32))
}

fn validity(not_before: OffsetDateTime, not_after: OffsetDateTime) -> Result<Validity> {
    let time = |t: OffsetDateTime| {
        let t = t.replace_nanosecond(0).unwrap_or(t);
        Time::try_from(SystemTime::from(t)).map_err(|e| sim_err(format!("validity {t}: {e}")))
    };
    Ok(Validity {
        not_before: time(not_before)?,
        not_after: time(not_after)?,
    })
}

fn to_der(cert: &x509_cert::Certificate) -> Result<Vec<u8>> {
    cert.to_der()
        .map_err(|e| sim_err(format!("DER encoding: {e}")))
}

fn pem_block(der: &[u8]) -> String {
    // x509-cert's PEM encoder wants a typed certificate; re-decoding our own
    // DER cannot fail, but fall back to an empty string rather than panic.
    <x509_cert::Certificate as x509_cert::der::Decode>::from_der(der)
        .ok()
        .and_then(|c| c.to_pem(x509_cert::der::pem::LineEnding::LF).ok())
        .unwrap_or_default()
}

/// An AMD VCEK extension: an OID under 1.3.6.1.4.1.3704.1 whose value is
/// pre-encoded (a DER INTEGER, a DER IA5String, or raw bytes for hwID, as in
/// AMD's certificates). The OID varies per instance, so `to_extension` is
/// overridden rather than relying on [`AssociatedOid`].
struct AmdExtension {
    oid: ObjectIdentifier,
    value: Vec<u8>,
}

impl AmdExtension {
    fn raw(oid: &str, value: Vec<u8>) -> Result<Self> {
        let oid = ObjectIdentifier::new(oid).map_err(|e| sim_err(format!("OID {oid}: {e}")))?;
        Ok(AmdExtension { oid, value })
    }
    fn integer(oid: &str, v: u8) -> Result<Self> {
        // DER INTEGER: a leading zero keeps values >= 0x80 positive.
        let value = if v < 0x80 {
            vec![0x02, 0x01, v]
        } else {
            vec![0x02, 0x02, 0x00, v]
        };
        Self::raw(oid, value)
    }
    fn ia5(oid: &str, s: &str) -> Result<Self> {
        let len = u8::try_from(s.len()).map_err(|_| sim_err("IA5String too long".into()))?;
        let mut value = vec![0x16, len];
        value.extend_from_slice(s.as_bytes());
        Self::raw(oid, value)
    }
}

impl AssociatedOid for AmdExtension {
    /// The AMD SEV arc; per-instance OIDs are set in `to_extension`.
    const OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1");
}

impl x509_cert::der::Encode for AmdExtension {
    fn encoded_len(&self) -> x509_cert::der::Result<x509_cert::der::Length> {
        x509_cert::der::Length::try_from(self.value.len())
    }
    fn encode(&self, writer: &mut impl x509_cert::der::Writer) -> x509_cert::der::Result<()> {
        writer.write(&self.value)
    }
}

impl AsExtension for AmdExtension {
    fn critical(&self, _: &Name, _: &[Extension]) -> bool {
        false
    }
    fn to_extension(&self, _: &Name, _: &[Extension]) -> x509_cert::der::Result<Extension> {
        Ok(Extension {
            extn_id: self.oid,
            critical: false,
            extn_value: x509_cert::der::asn1::OctetString::new(self.value.clone())?,
        })
    }
}
