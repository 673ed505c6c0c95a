//! Building the self-signed X.509 certificates of RA-TLS.
//!
//! rcgen generates and holds the key pair, but its certificate writer takes
//! extension OIDs as `u64` arcs, and the Chrysalis arc `2.25.<UUID>` needs
//! 128 bits. So the TBSCertificate is written here with yasna (DER, RFC 5280
//! §4.1) and signed with the rcgen key: same DER rules, full control of the
//! OIDs.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use yasna::models::{GeneralizedTime, ObjectIdentifier, TaggedDerValue, UTCTime};
use yasna::tags::TAG_OID;
use yasna::{DERWriter, Tag};

use crate::collateral::EmbeddedCollateral;
use crate::error::{Error, Result};
use crate::oid;

/// The key type of an RA-TLS certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum KeyType {
    /// ECDSA on NIST P-256, signatures with SHA-256 (the default: every TLS
    /// stack supports it).
    #[default]
    EcdsaP256,
    /// Ed25519 (what Telegram Cocoon uses).
    Ed25519,
}

/// A key pair generated in this process. The private key never leaves it:
/// there is no accessor for it, only signing.
pub struct CertKey {
    kp: rcgen::KeyPair,
    key_type: KeyType,
}

impl std::fmt::Debug for CertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertKey")
            .field("key_type", &self.key_type)
            .field("public_key", &hex::encode(self.kp.public_key_raw()))
            .finish_non_exhaustive()
    }
}

impl CertKey {
    /// Generates a fresh key pair with the system RNG (through ring).
    pub fn generate(key_type: KeyType) -> Result<Self> {
        let alg = match key_type {
            KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::Ed25519 => &rcgen::PKCS_ED25519,
        };
        let kp = rcgen::KeyPair::generate_for(alg)
            .map_err(|e| Error::Generation(format!("{key_type:?} key pair: {e}")))?;
        Ok(Self { kp, key_type })
    }

    /// The key type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// DER SubjectPublicKeyInfo of the public key.
    pub fn spki_der(&self) -> Vec<u8> {
        use rcgen::PublicKeyData;
        self.kp.subject_public_key_info()
    }

    /// The raw public key: the uncompressed SEC1 point (65 bytes) for
    /// P-256, the 32-byte key for Ed25519.
    pub fn public_key_raw(&self) -> &[u8] {
        self.kp.public_key_raw()
    }

    /// The key as a rustls signing key, for a `CertifiedKey`.
    pub fn rustls_signing_key(&self) -> Result<Arc<dyn rustls::sign::SigningKey>> {
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.kp.serialize_der()));
        rustls::crypto::ring::sign::any_supported_type(&der)
            .map_err(|e| Error::Generation(format!("rustls signing key: {e}")))
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>> {
        use rcgen::SigningKey;
        self.kp
            .sign(msg)
            .map_err(|e| Error::Generation(format!("signing the certificate: {e}")))
    }

    /// AlgorithmIdentifier arcs of this key's certificate signature:
    /// ecdsa-with-SHA256 (RFC 5758) or id-Ed25519 (RFC 8410), no parameters.
    fn signature_algorithm(&self) -> &'static [u64] {
        match self.key_type {
            KeyType::EcdsaP256 => &[1, 2, 840, 10045, 4, 3, 2],
            KeyType::Ed25519 => &[1, 3, 101, 112],
        }
    }
}

/// A subjectAltName entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SanEntry {
    /// A DNS name (IA5String).
    Dns(String),
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
}

/// One certificate extension; the OID is given as its DER content octets
/// (see [`crate::oid`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertExtension {
    /// DER content octets of the extension OID.
    pub oid: Vec<u8>,
    /// Whether a verifier that does not understand it must reject the certificate.
    pub critical: bool,
    /// The extnValue contents (the bytes inside the OCTET STRING).
    pub value: Vec<u8>,
}

/// Everything in a certificate besides the key.
#[derive(Debug, Clone)]
pub struct CertificateParams {
    /// Subject and issuer common name.
    pub common_name: String,
    /// subjectAltName entries; none → no subjectAltName extension.
    pub subject_alt_names: Vec<SanEntry>,
    /// notBefore (whole seconds are used).
    pub not_before: OffsetDateTime,
    /// notAfter (whole seconds are used).
    pub not_after: OffsetDateTime,
    /// Mark extKeyUsage critical (Cocoon does; Chrysalis does not).
    pub critical_ext_key_usage: bool,
    /// Extensions after the standard ones (basicConstraints, keyUsage,
    /// extKeyUsage, subjectAltName), in order.
    pub extensions: Vec<CertExtension>,
}

/// The RA-TLS extensions of a Chrysalis certificate, in OID order:
/// evidence (critical), GPU evidence digest (critical, if any), claims
/// (critical), collateral (non-critical, if any).
pub fn ratls_extensions(
    evidence: &[u8],
    claims_der: &[u8],
    gpu_evidence_digest: Option<&[u8; 48]>,
    collateral: Option<&EmbeddedCollateral>,
) -> Result<Vec<CertExtension>> {
    let octets = |b: &[u8]| yasna::construct_der(|w| w.write_bytes(b));
    let mut exts = vec![CertExtension {
        oid: oid::EVIDENCE.to_vec(),
        critical: true,
        value: octets(evidence),
    }];
    if let Some(g) = gpu_evidence_digest {
        exts.push(CertExtension {
            oid: oid::GPU_EVIDENCE_DIGEST.to_vec(),
            critical: true,
            value: octets(g),
        });
    }
    exts.push(CertExtension {
        oid: oid::CLAIMS.to_vec(),
        critical: true,
        value: claims_der.to_vec(),
    });
    if let Some(c) = collateral {
        exts.push(CertExtension {
            oid: oid::COLLATERAL.to_vec(),
            critical: false,
            value: c.to_der()?,
        });
    }
    Ok(exts)
}

/// Builds and self-signs a certificate for `key`.
///
/// The serial number is the first 8 bytes of SHA-256 over the SPKI and the
/// extensions (top bit cleared, never zero): unique per key and content
/// without needing an RNG here.
pub fn build_certificate(key: &CertKey, p: &CertificateParams) -> Result<Vec<u8>> {
    if p.not_after <= p.not_before {
        return Err(Error::Generation(format!(
            "notAfter {} is not after notBefore {}",
            p.not_after, p.not_before
        )));
    }
    let spki = key.spki_der();
    let serial = {
        let mut h = Sha256::new();
        h.update(&spki);
        for e in &p.extensions {
            h.update((e.value.len() as u64).to_le_bytes());
            h.update(&e.value);
        }
        let d = h.finalize();
        let mut s = u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]);
        s &= u64::MAX >> 1;
        s.max(1)
    };
    let not_before = x509_time(p.not_before)?;
    let not_after = x509_time(p.not_after)?;
    let sig_alg = ObjectIdentifier::from_slice(key.signature_algorithm());

    let tbs = yasna::construct_der(|w| {
        w.write_sequence(|w| {
            // version [0] EXPLICIT INTEGER v3(2)
            w.next().write_tagged(Tag::context(0), |w| w.write_u8(2));
            w.next().write_u64(serial);
            w.next().write_sequence(|w| w.next().write_oid(&sig_alg));
            write_name(w.next(), &p.common_name);
            w.next().write_sequence(|w| {
                not_before.write(w.next());
                not_after.write(w.next());
            });
            write_name(w.next(), &p.common_name);
            w.next().write_der(&spki);
            w.next().write_tagged(Tag::context(3), |w| {
                w.write_sequence(|w| write_extensions(w, p))
            });
        })
    });
    let signature = key.sign(&tbs)?;
    Ok(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_der(&tbs);
            w.next().write_sequence(|w| w.next().write_oid(&sig_alg));
            w.next().write_bitvec_bytes(&signature, signature.len() * 8);
        })
    }))
}

fn write_name(w: DERWriter<'_>, cn: &str) {
    // Name ::= SEQUENCE OF RelativeDistinguishedName (SET OF AttributeTypeAndValue)
    w.write_sequence(|w| {
        w.next().write_set(|w| {
            w.next().write_sequence(|w| {
                w.next()
                    .write_oid(&ObjectIdentifier::from_slice(&[2, 5, 4, 3]));
                w.next().write_utf8_string(cn);
            })
        })
    })
}

fn write_extensions(w: &mut yasna::DERWriterSeq<'_>, p: &CertificateParams) {
    let std_ext = |w: DERWriter<'_>, arcs: &[u64], critical: bool, value: Vec<u8>| {
        write_extension(w, &oid_der_content(arcs), critical, &value)
    };
    // basicConstraints: cA FALSE (DEFAULT, so an empty SEQUENCE).
    std_ext(
        w.next(),
        &[2, 5, 29, 19],
        true,
        yasna::construct_der(|w| w.write_sequence(|_| {})),
    );
    // keyUsage: digitalSignature only (bit 0).
    std_ext(
        w.next(),
        &[2, 5, 29, 15],
        true,
        yasna::construct_der(|w| w.write_bitvec_bytes(&[0x80], 1)),
    );
    // extKeyUsage: serverAuth, clientAuth (mutual RA-TLS uses both).
    std_ext(
        w.next(),
        &[2, 5, 29, 37],
        p.critical_ext_key_usage,
        yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next()
                    .write_oid(&ObjectIdentifier::from_slice(&[1, 3, 6, 1, 5, 5, 7, 3, 1]));
                w.next()
                    .write_oid(&ObjectIdentifier::from_slice(&[1, 3, 6, 1, 5, 5, 7, 3, 2]));
            })
        }),
    );
    if !p.subject_alt_names.is_empty() {
        std_ext(
            w.next(),
            &[2, 5, 29, 17],
            false,
            yasna::construct_der(|w| {
                w.write_sequence(|w| {
                    for san in &p.subject_alt_names {
                        match san {
                            SanEntry::Dns(d) => w
                                .next()
                                .write_tagged_implicit(Tag::context(2), |w| w.write_ia5_string(d)),
                            SanEntry::Ip(IpAddr::V4(a)) => {
                                w.next().write_tagged_implicit(Tag::context(7), |w| {
                                    w.write_bytes(&a.octets())
                                })
                            }
                            SanEntry::Ip(IpAddr::V6(a)) => {
                                w.next().write_tagged_implicit(Tag::context(7), |w| {
                                    w.write_bytes(&a.octets())
                                })
                            }
                        }
                    }
                })
            }),
        );
    }
    for e in &p.extensions {
        write_extension(w.next(), &e.oid, e.critical, &e.value);
    }
}

/// Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
fn write_extension(w: DERWriter<'_>, oid_content: &[u8], critical: bool, value: &[u8]) {
    w.write_sequence(|w| {
        // Written from content octets: the Chrysalis arcs exceed u64.
        w.next()
            .write_tagged_der(&TaggedDerValue::from_tag_and_bytes(
                TAG_OID,
                oid_content.to_vec(),
            ));
        if critical {
            // DER: a DEFAULT value (FALSE) is omitted.
            w.next().write_bool(true);
        }
        w.next().write_bytes(value);
    })
}

/// DER content octets of an OID given as `u64` arcs (through yasna).
fn oid_der_content(arcs: &[u64]) -> Vec<u8> {
    let der = yasna::construct_der(|w| w.write_oid(&ObjectIdentifier::from_slice(arcs)));
    // Tag and a one-byte length: every OID written here is short.
    der[2..].to_vec()
}

/// RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
enum X509Time {
    Utc(UTCTime),
    General(GeneralizedTime),
}

impl X509Time {
    fn write(&self, w: DERWriter<'_>) {
        match self {
            X509Time::Utc(t) => w.write_utctime(t),
            X509Time::General(t) => w.write_generalized_time(t),
        }
    }
}

fn x509_time(t: OffsetDateTime) -> Result<X509Time> {
    let whole = OffsetDateTime::from_unix_timestamp(t.unix_timestamp())
        .map_err(|e| Error::Generation(format!("certificate time {t}: {e}")))?;
    if whole.year() < 2050 {
        UTCTime::from_datetime_opt(whole).map(X509Time::Utc)
    } else {
        GeneralizedTime::from_datetime_opt(whole).map(X509Time::General)
    }
    .ok_or_else(|| Error::Generation(format!("certificate time {t} cannot be expressed")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    fn params(exts: Vec<CertExtension>) -> CertificateParams {
        let now = OffsetDateTime::from_unix_timestamp(1_760_000_000).unwrap();
        CertificateParams {
            common_name: "test".into(),
            subject_alt_names: vec![
                SanEntry::Dns("localhost".into()),
                SanEntry::Ip("127.0.0.1".parse().unwrap()),
            ],
            not_before: now,
            not_after: now + ::time::Duration::hours(24),
            critical_ext_key_usage: false,
            extensions: exts,
        }
    }

    #[test]
    fn certificates_parse_with_x509_parser_and_keep_the_uuid_oids() {
        for kt in [KeyType::EcdsaP256, KeyType::Ed25519] {
            let key = CertKey::generate(kt).unwrap();
            let exts = ratls_extensions(b"quote", b"\x30\x00", Some(&[1; 48]), None).unwrap();
            let der = build_certificate(&key, &params(exts)).unwrap();
            let (rest, cert) = X509Certificate::from_der(&der).unwrap();
            assert!(rest.is_empty());
            assert_eq!(cert.public_key().raw, key.spki_der().as_slice());
            assert_eq!(cert.validity().not_before.timestamp(), 1_760_000_000);
            // x509-parser keeps the OIDs whose arc exceeds u64 as raw
            // content octets; decode them independently of the encoder.
            let ids: Vec<String> = cert
                .extensions()
                .iter()
                .map(|e| crate::oid::tests::dotted_from_content(e.oid.as_bytes()))
                .collect();
            for leaf in [1, 2, 3] {
                assert!(ids.contains(&oid::dotted(leaf)), "{ids:?}");
            }
            assert!(ids.contains(&"2.5.29.19".to_string()), "{ids:?}");
            let san = cert.subject_alternative_name().unwrap().unwrap();
            assert_eq!(san.value.general_names.len(), 2);
            assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
        }
    }

    #[test]
    fn times_after_2049_are_generalized() {
        let key = CertKey::generate(KeyType::EcdsaP256).unwrap();
        let mut p = params(vec![]);
        p.not_after = OffsetDateTime::from_unix_timestamp(2_600_000_000).unwrap();
        let der = build_certificate(&key, &p).unwrap();
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(cert.validity().not_after.timestamp(), 2_600_000_000);
        p.not_after = p.not_before;
        assert!(build_certificate(&key, &p).is_err());
    }
}
