//! Parsing RA-TLS certificates (Chrysalis and Cocoon formats) into typed
//! parts, once, at the edge. Nothing here decides trust: the parsed
//! certificate still has to go through [`crate::verify`].

use chrysalis_attestation::evidence::{DecodedEvidence, InputEncoding};
use chrysalis_attestation::snp::SnpReport;
use chrysalis_attestation::tdx::TdxQuote;
use chrysalis_attestation::Evidence;
use rustls::pki_types::{alg_id, AlgorithmIdentifier, SignatureVerificationAlgorithm};
use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::certificate::X509CertificateParser;
use x509_parser::nom::Parser;
use x509_parser::oid_registry as oids;
use x509_parser::x509::{SubjectPublicKeyInfo, X509Version};

use crate::claims::Claims;
use crate::collateral::EmbeddedCollateral;
use crate::error::{Error, Result};
use crate::oid;

/// Largest certificate accepted, in bytes (a TDX quote is ~5 KiB, TDX
/// collateral ~25 KiB).
pub const MAX_CERT_LEN: usize = 512 * 1024;

/// Which RA-TLS format a certificate uses, detected by its extension OIDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CertFormat {
    /// Chrysalis: `2.25.<UUID>.{1,2,3,4}` extensions, DER claims.
    Chrysalis,
    /// Telegram Cocoon: `1.3.6.1.4.1.12345.{1,2}`, raw quote and raw
    /// Ed25519 key as claims.
    Cocoon,
}

/// The certificate's public key algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum KeyAlgorithm {
    /// ECDSA on P-256.
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
}

impl KeyAlgorithm {
    fn alg_id(self) -> AlgorithmIdentifier {
        match self {
            KeyAlgorithm::EcdsaP256 => alg_id::ECDSA_P256,
            KeyAlgorithm::EcdsaP384 => alg_id::ECDSA_P384,
            KeyAlgorithm::Ed25519 => alg_id::ED25519,
        }
    }
}

/// An RA-TLS certificate, parsed but not verified.
#[derive(Debug, Clone)]
pub struct RaTlsCertificate {
    /// Detected format.
    pub format: CertFormat,
    /// SHA-256 of the whole certificate DER (the verification-cache key).
    pub der_sha256: [u8; 32],
    /// DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
    /// Key algorithm of the SPKI.
    pub key_algorithm: KeyAlgorithm,
    /// The subjectPublicKey bits (SEC1 point or 32-byte Ed25519 key).
    pub public_key: Vec<u8>,
    /// notBefore.
    pub not_before: OffsetDateTime,
    /// notAfter.
    pub not_after: OffsetDateTime,
    /// The CPU evidence, decoded (not verified).
    pub evidence: DecodedEvidence,
    /// The claims bytes whose SHA-512 must be the evidence's report_data
    /// (Chrysalis: DER `RaTlsClaims`; Cocoon: the serialised user claims).
    pub claims_bytes: Vec<u8>,
    /// Decoded Chrysalis claims (`None` for Cocoon).
    pub claims: Option<Claims>,
    /// The GPU evidence digest extension, if present.
    pub gpu_evidence_digest: Option<[u8; 48]>,
    /// The collateral extension, if present (untrusted).
    pub collateral: Option<EmbeddedCollateral>,
    tbs: Vec<u8>,
    signature: Vec<u8>,
    signature_algorithm: AlgorithmIdentifier,
}

struct Slots<'a> {
    evidence: Option<(&'a [u8], bool)>,
    gpu: Option<(&'a [u8], bool)>,
    claims: Option<(&'a [u8], bool)>,
    collateral: Option<(&'a [u8], bool)>,
    cocoon_quote: Option<(&'a [u8], bool)>,
    cocoon_claims: Option<(&'a [u8], bool)>,
}

impl RaTlsCertificate {
    /// Parses a DER certificate: X.509 structure (no trailing bytes, v3),
    /// key, validity, extensions (each at most once; unknown critical ones
    /// rejected), the format's evidence and claims.
    pub fn parse(der: &[u8]) -> Result<Self> {
        if der.len() > MAX_CERT_LEN {
            return Err(Error::cert(format!(
                "{} bytes is more than the {MAX_CERT_LEN} accepted",
                der.len()
            )));
        }
        // DER is strict where the X.509 parser is lenient: the outer tags
        // are outside the signed TBS, so a non-canonical tag (e.g. 0x10 for
        // SEQUENCE) would otherwise verify as a different byte string.
        if der.first() != Some(&0x30) {
            return Err(Error::cert(
                "not a DER certificate: outer tag is not a constructed SEQUENCE (0x30)",
            ));
        }
        let (rest, cert) = X509CertificateParser::new()
            .with_deep_parse_extensions(false)
            .parse(der)
            .map_err(|e| Error::cert(format!("not a DER X.509 certificate: {e}")))?;
        if !rest.is_empty() {
            return Err(Error::cert(format!(
                "{} trailing bytes after the certificate",
                rest.len()
            )));
        }
        // The signatureAlgorithm SEQUENCE follows the signed TBS and is
        // unsigned too: require its canonical tag as well.
        let tbs = cert.tbs_certificate.as_ref();
        let after_tbs = (tbs.as_ptr() as usize)
            .checked_sub(der.as_ptr() as usize)
            .map(|start| start + tbs.len());
        if after_tbs.and_then(|i| der.get(i)) != Some(&0x30) {
            return Err(Error::cert(
                "not a DER certificate: signatureAlgorithm is not a constructed SEQUENCE (0x30)",
            ));
        }
        if cert.version() != X509Version::V3 {
            return Err(Error::cert(format!(
                "version {} (RA-TLS certificates are v3)",
                cert.version().0 + 1
            )));
        }
        if cert.signature_algorithm != cert.tbs_certificate.signature {
            return Err(Error::cert(
                "signatureAlgorithm differs from the TBSCertificate's signature field",
            ));
        }
        // Everything after the signed TBS is unsigned, so it must be the one
        // DER encoding of what was parsed: the AlgorithmIdentifier (no
        // parameters, as the profile requires) and the signature BIT STRING.
        // Byte equality closes every lenient-parser case at once (tags of
        // the inner OID and of the BIT STRING, lengths, padding).
        if let Some(start) = after_tbs {
            let arcs: Option<Vec<u64>> = cert
                .signature_algorithm
                .algorithm
                .iter()
                .map(|i| i.collect());
            let canonical = arcs.map(|arcs| {
                let oid = yasna::models::ObjectIdentifier::from_slice(&arcs);
                let sig = cert.signature_value.data.as_ref();
                let mut tail =
                    yasna::construct_der(|w| w.write_sequence(|w| w.next().write_oid(&oid)));
                tail.extend(yasna::construct_der(|w| {
                    w.write_bitvec_bytes(sig, sig.len() * 8)
                }));
                tail
            });
            if canonical.as_deref() != der.get(start..) {
                return Err(Error::cert(
                    "not a DER certificate: the unsigned signatureAlgorithm or signatureValue is not canonically encoded",
                ));
            }
        }
        // DER BIT STRINGs of whole bytes: a non-zero unused-bits count would
        // let two encodings carry the same key or signature.
        if cert.signature_value.unused_bits != 0
            || cert.public_key().subject_public_key.unused_bits != 0
        {
            return Err(Error::cert(
                "signature or public key BIT STRING has unused bits",
            ));
        }
        let (key_algorithm, public_key) = key_of(cert.public_key())?;
        let signature_algorithm = signature_alg_of(&cert.signature_algorithm)?;

        let mut s = Slots {
            evidence: None,
            gpu: None,
            claims: None,
            collateral: None,
            cocoon_quote: None,
            cocoon_claims: None,
        };
        for ext in cert.extensions() {
            let id = ext.oid.as_bytes();
            let slot = match id {
                i if i == oid::EVIDENCE => &mut s.evidence,
                i if i == oid::GPU_EVIDENCE_DIGEST => &mut s.gpu,
                i if i == oid::CLAIMS => &mut s.claims,
                i if i == oid::COLLATERAL => &mut s.collateral,
                i if i == oid::COCOON_QUOTE => &mut s.cocoon_quote,
                i if i == oid::COCOON_CLAIMS => &mut s.cocoon_claims,
                _ => {
                    let dotted = ext.oid.to_id_string();
                    if ext.critical && !oid::KNOWN_CRITICAL_STANDARD.contains(&dotted.as_str()) {
                        return Err(Error::UnknownCriticalExtension(dotted));
                    }
                    continue;
                }
            };
            if slot.is_some() {
                return Err(Error::cert(format!(
                    "extension {} appears twice",
                    oid::name(id).unwrap_or("?")
                )));
            }
            *slot = Some((ext.value, ext.critical));
        }
        let validity = cert.validity();
        let not_before = validity.not_before.to_datetime();
        let not_after = validity.not_after.to_datetime();
        let spki_der = cert.public_key().raw.to_vec();
        let tbs = cert.tbs_certificate.as_ref().to_vec();
        let signature = cert.signature_value.data.to_vec();
        let der_sha256: [u8; 32] = Sha256::digest(der).into();

        let chrysalis = s.evidence.is_some() || s.claims.is_some();
        let cocoon = s.cocoon_quote.is_some() || s.cocoon_claims.is_some();
        let parts = match (chrysalis, cocoon) {
            (true, true) => {
                return Err(Error::cert(
                    "carries both Chrysalis and Cocoon RA-TLS extensions",
                ))
            }
            (false, false) => {
                return Err(Error::MissingExtension {
                    name: "evidence",
                    oid: format!("{} (or Cocoon 1.3.6.1.4.1.12345.1)", oid::dotted(1)),
                })
            }
            (true, false) => chrysalis_parts(&s)?,
            (false, true) => cocoon_parts(&s, key_algorithm, &public_key)?,
        };
        Ok(RaTlsCertificate {
            format: parts.format,
            der_sha256,
            spki_der,
            key_algorithm,
            public_key,
            not_before,
            not_after,
            evidence: parts.evidence,
            claims_bytes: parts.claims_bytes,
            claims: parts.claims,
            gpu_evidence_digest: parts.gpu,
            collateral: parts.collateral,
            tbs,
            signature,
            signature_algorithm,
        })
    }

    /// Checks notBefore ≤ `now` ≤ notAfter.
    pub fn check_validity(&self, now: OffsetDateTime) -> Result<()> {
        check_validity(self.not_before, self.not_after, now)
    }

    /// Verifies the certificate's self-signature with its own key (ring).
    /// This authenticates every field (validity, collateral) by the key
    /// that the evidence binds.
    pub fn check_self_signature(&self) -> Result<()> {
        let alg = find_algorithm(self.key_algorithm, self.signature_algorithm)?;
        alg.verify_signature(&self.public_key, &self.tbs, &self.signature)
            .map_err(|_| {
                Error::BadSignature(format!(
                    "{:?} signature over the TBSCertificate is invalid",
                    self.key_algorithm
                ))
            })
    }
}

/// A certificate file's contents as DER: DER passes through, PEM
/// (`-----BEGIN CERTIFICATE-----`, the first block) is decoded. For
/// `chrysalis verify --cert FILE`.
pub fn certificate_der_from_file_bytes(bytes: &[u8]) -> Result<Vec<u8>> {
    if bytes.first() == Some(&0x30) {
        return Ok(bytes.to_vec());
    }
    let (_, pem) = x509_parser::pem::parse_x509_pem(bytes)
        .map_err(|e| Error::cert(format!("neither DER nor PEM: {e}")))?;
    if pem.label != "CERTIFICATE" {
        return Err(Error::cert(format!(
            "PEM block is {:?}, expected CERTIFICATE",
            pem.label
        )));
    }
    Ok(pem.contents)
}

/// Checks notBefore ≤ `now` ≤ notAfter with this crate's errors.
pub(crate) fn check_validity(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    now: OffsetDateTime,
) -> Result<()> {
    if now < not_before {
        return Err(Error::NotYetValid { not_before, now });
    }
    if now > not_after {
        return Err(Error::Expired { not_after, now });
    }
    Ok(())
}

struct Parts {
    format: CertFormat,
    evidence: DecodedEvidence,
    claims_bytes: Vec<u8>,
    claims: Option<Claims>,
    gpu: Option<[u8; 48]>,
    collateral: Option<EmbeddedCollateral>,
}

fn require_critical<'a>(
    slot: Option<(&'a [u8], bool)>,
    name: &'static str,
    leaf: u8,
    critical: bool,
) -> Result<Option<&'a [u8]>> {
    match slot {
        None => Ok(None),
        Some((v, c)) if c == critical => Ok(Some(v)),
        Some(_) => Err(Error::cert(format!(
            "{name} extension ({}) must be {}",
            oid::dotted(leaf),
            if critical { "critical" } else { "non-critical" }
        ))),
    }
}

fn octet_string(v: &[u8], what: &str) -> Result<Vec<u8>> {
    yasna::parse_der(v, |r| r.read_bytes())
        .map_err(|e| Error::cert(format!("{what} extension is not a DER OCTET STRING: {e}")))
}

fn chrysalis_parts(s: &Slots<'_>) -> Result<Parts> {
    let ev = require_critical(s.evidence, "evidence", 1, true)?.ok_or_else(|| {
        Error::MissingExtension {
            name: "evidence",
            oid: oid::dotted(1),
        }
    })?;
    let claims_der =
        require_critical(s.claims, "claims", 3, true)?.ok_or_else(|| Error::MissingExtension {
            name: "claims",
            oid: oid::dotted(3),
        })?;
    let evidence = decode_evidence(&octet_string(ev, "evidence")?, false)?;
    let claims = Claims::from_der(claims_der)?;
    let gpu = require_critical(s.gpu, "GPU evidence digest", 2, true)?
        .map(|v| {
            let b = octet_string(v, "GPU evidence digest")?;
            <[u8; 48]>::try_from(b.as_slice()).map_err(|_| {
                Error::cert(format!(
                    "GPU evidence digest is {} bytes, expected 48 (SHA-384)",
                    b.len()
                ))
            })
        })
        .transpose()?;
    let collateral = require_critical(s.collateral, "collateral", 4, false)?
        .map(EmbeddedCollateral::from_der)
        .transpose()?;
    Ok(Parts {
        format: CertFormat::Chrysalis,
        evidence,
        claims_bytes: claims_der.to_vec(),
        claims: Some(claims),
        gpu,
        collateral,
    })
}

fn cocoon_parts(s: &Slots<'_>, key: KeyAlgorithm, public_key: &[u8]) -> Result<Parts> {
    let missing = |name, leaf| Error::MissingExtension {
        name,
        oid: format!("1.3.6.1.4.1.12345.{leaf}"),
    };
    // Cocoon writes both critical; its extnValue holds the raw bytes (no
    // inner DER wrapping).
    let (quote, qc) = s
        .cocoon_quote
        .ok_or_else(|| missing("Cocoon TDX_QUOTE", 1))?;
    let (claims, cc) = s
        .cocoon_claims
        .ok_or_else(|| missing("Cocoon TDX_USER_CLAIMS", 2))?;
    if !qc || !cc {
        return Err(Error::cert(
            "Cocoon TDX_QUOTE and TDX_USER_CLAIMS extensions must be critical",
        ));
    }
    if key != KeyAlgorithm::Ed25519 || public_key.len() != 32 {
        return Err(Error::UnsupportedKey(format!(
            "Cocoon certificates use Ed25519 keys; this one is {key:?}"
        )));
    }
    // A TDX quote buffer may be padded after the quote's own length.
    let evidence = decode_evidence(quote, true)?;
    Ok(Parts {
        format: CertFormat::Cocoon,
        evidence,
        claims_bytes: claims.to_vec(),
        claims: None,
        gpu: None,
        collateral: None,
    })
}

/// Decodes binary evidence (never text): a TDX quote (v4/v5, TEE type
/// 0x81) or a 1184-byte SNP report. Trailing bytes after a TDX quote are
/// accepted only when `allow_trailing` (Cocoon quote buffers).
pub fn decode_evidence(bytes: &[u8], allow_trailing: bool) -> Result<DecodedEvidence> {
    let looks_tdx = bytes.len() >= 8
        && matches!(u16::from_le_bytes([bytes[0], bytes[1]]), 4 | 5)
        && u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]])
            == chrysalis_attestation::tdx::quote::TEE_TYPE_TDX;
    if looks_tdx {
        let (quote, used) =
            TdxQuote::parse_prefix(bytes).map_err(chrysalis_attestation::Error::from)?;
        let trailing = bytes.len() - used;
        if trailing != 0 && !allow_trailing {
            return Err(Error::cert(format!(
                "{trailing} trailing bytes after the TDX quote in the evidence extension"
            )));
        }
        return Ok(DecodedEvidence {
            evidence: Evidence::Tdx(quote),
            bytes: bytes[..used].to_vec(),
            encoding: InputEncoding::Binary,
            trailing,
        });
    }
    let report = SnpReport::parse(bytes).map_err(chrysalis_attestation::Error::from)?;
    Ok(DecodedEvidence {
        evidence: Evidence::Snp(report),
        bytes: bytes.to_vec(),
        encoding: InputEncoding::Binary,
        trailing: 0,
    })
}

fn key_of(spki: &SubjectPublicKeyInfo<'_>) -> Result<(KeyAlgorithm, Vec<u8>)> {
    let alg = &spki.algorithm;
    let key = spki.subject_public_key.data.to_vec();
    let k = if alg.algorithm == oids::OID_SIG_ED25519 {
        if alg.parameters.is_some() || key.len() != 32 {
            return Err(Error::UnsupportedKey(
                "Ed25519 key with parameters or not 32 bytes".into(),
            ));
        }
        KeyAlgorithm::Ed25519
    } else if alg.algorithm == oids::OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = alg
            .parameters
            .as_ref()
            .and_then(|p| p.clone().oid().ok())
            .ok_or_else(|| Error::UnsupportedKey("EC key without a named curve".into()))?;
        if curve == oids::OID_EC_P256 {
            KeyAlgorithm::EcdsaP256
        } else if curve == oids::OID_NIST_EC_P384 {
            KeyAlgorithm::EcdsaP384
        } else {
            return Err(Error::UnsupportedKey(format!(
                "EC curve {} (P-256 and P-384 are supported)",
                curve.to_id_string()
            )));
        }
    } else {
        return Err(Error::UnsupportedKey(format!(
            "key algorithm {} (ECDSA P-256/P-384 and Ed25519 are supported)",
            alg.algorithm.to_id_string()
        )));
    };
    Ok((k, key))
}

fn signature_alg_of(
    alg: &x509_parser::x509::AlgorithmIdentifier<'_>,
) -> Result<AlgorithmIdentifier> {
    let id = &alg.algorithm;
    // RFC 5758 / RFC 8410: these algorithm identifiers have no parameters.
    if alg.parameters.is_some() {
        return Err(Error::cert(format!(
            "signature algorithm {} must not have parameters",
            id.to_id_string()
        )));
    }
    if *id == oids::OID_SIG_ECDSA_WITH_SHA256 {
        Ok(alg_id::ECDSA_SHA256)
    } else if *id == oids::OID_SIG_ECDSA_WITH_SHA384 {
        Ok(alg_id::ECDSA_SHA384)
    } else if *id == oids::OID_SIG_ED25519 {
        Ok(alg_id::ED25519)
    } else {
        Err(Error::UnsupportedKey(format!(
            "signature algorithm {} (ecdsa-with-SHA256/SHA384 and Ed25519 are supported)",
            id.to_id_string()
        )))
    }
}

fn find_algorithm(
    key: KeyAlgorithm,
    sig: AlgorithmIdentifier,
) -> Result<&'static dyn SignatureVerificationAlgorithm> {
    let key_id = key.alg_id();
    crate::crypto::algorithms()
        .all
        .iter()
        .copied()
        .find(|a| a.public_key_alg_id() == key_id && a.signature_alg_id() == sig)
        .ok_or_else(|| {
            Error::UnsupportedKey(format!(
                "no {key:?} verifier for the certificate's signature algorithm"
            ))
        })
}
