//! Certificate chains: the GPU device chain (leaf first, as NVML returns it
//! and as `hopperCertChain.txt` stores it) up to the pinned NVIDIA Device
//! Identity CA, and the RIM signer chain up to the pinned NVIDIA CoRIM
//! signing root.
//!
//! Every certificate in these chains is ECDSA P-384 signed with SHA-384;
//! signatures are checked with the `p384` crate over the exact TBS bytes,
//! names are compared as DER, and every certificate must be valid at the
//! verification time.

use ::time::OffsetDateTime;
use p384::ecdsa::signature::Verifier;
use p384::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::{Error, Result};

/// DER of the NVIDIA Device Identity CA (`CN=NVIDIA Device Identity CA,
/// O=NVIDIA`), the root of every H100 device certificate chain. Taken from
/// NVIDIA's public nvtrust repository
/// (`guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/certs/verifier_device_root.pem`);
/// its SHA-256 fingerprint is [`NVIDIA_DEVICE_ROOT_SHA256`].
pub const NVIDIA_DEVICE_ROOT_DER: &[u8] = include_bytes!("../roots/nvidia_device_identity_ca.der");
/// SHA-256 fingerprint (hex) of [`NVIDIA_DEVICE_ROOT_DER`].
pub const NVIDIA_DEVICE_ROOT_SHA256: &str =
    "102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48";
/// DER of the NVIDIA CoRIM signing Root CA (`CN=NVIDIA CoRIM signing Root
/// CA, O=NVIDIA, C=US`) that signs the RIM signer chains. From nvtrust
/// (`…/verifier/certs/verifier_RIM_root.pem`); fingerprint
/// [`NVIDIA_RIM_ROOT_SHA256`].
pub const NVIDIA_RIM_ROOT_DER: &[u8] = include_bytes!("../roots/nvidia_corim_signing_root_ca.der");
/// SHA-256 fingerprint (hex) of [`NVIDIA_RIM_ROOT_DER`].
pub const NVIDIA_RIM_ROOT_SHA256: &str =
    "12977b5115acb0381179279fffeb5a8c4d264971ebb32298023a465fa41df5d1";

/// Upper bound on chain length (real device chains have 5 certificates).
pub const MAX_CHAIN_LEN: usize = 10;

/// A certificate chain, leaf first, as DER blobs that all parsed as X.509.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertChain {
    ders: Vec<Vec<u8>>,
}

impl CertChain {
    /// Build from DER certificates, leaf first. Each must parse completely.
    pub fn from_ders(ders: Vec<Vec<u8>>) -> Result<Self> {
        if ders.is_empty() {
            return Err(Error::MalformedCertificate(
                "empty certificate chain".into(),
            ));
        }
        if ders.len() > MAX_CHAIN_LEN {
            return Err(Error::MalformedCertificate(format!(
                "{} certificates, more than {MAX_CHAIN_LEN}",
                ders.len()
            )));
        }
        for (i, d) in ders.iter().enumerate() {
            parse_cert(d).map_err(|e| {
                Error::MalformedCertificate(format!("certificate #{i} of the chain: {e}"))
            })?;
        }
        Ok(CertChain { ders })
    }

    /// Parse PEM text (one or more `CERTIFICATE` blocks, leaf first).
    /// Anything that is not a certificate PEM block is an error.
    pub fn from_pem(text: &[u8]) -> Result<Self> {
        let mut ders = Vec::new();
        for pem in x509_parser::pem::Pem::iter_from_buffer(text) {
            let pem = pem.map_err(|e| Error::MalformedCertificate(format!("PEM: {e}")))?;
            if pem.label != "CERTIFICATE" {
                return Err(Error::MalformedCertificate(format!(
                    "PEM block labelled {:?}, expected CERTIFICATE",
                    pem.label
                )));
            }
            ders.push(pem.contents);
        }
        Self::from_ders(ders)
    }

    /// The DER certificates, leaf first.
    pub fn ders(&self) -> &[Vec<u8>] {
        &self.ders
    }

    /// The chain as PEM text, leaf first.
    pub fn to_pem(&self) -> String {
        use base64::Engine;
        let mut out = String::new();
        for d in &self.ders {
            out.push_str("-----BEGIN CERTIFICATE-----\n");
            let b = base64::engine::general_purpose::STANDARD.encode(d);
            for line in b.as_bytes().chunks(64) {
                out.push_str(std::str::from_utf8(line).unwrap_or_default());
                out.push('\n');
            }
            out.push_str("-----END CERTIFICATE-----\n");
        }
        out
    }
}

/// A chain that verified to a pinned root at a given time. Only
/// [`verify_chain`] constructs it.
#[derive(Debug, Clone)]
pub struct VerifiedChain {
    ders: Vec<Vec<u8>>,
    subjects: Vec<String>,
    leaf_key: VerifyingKey,
}

impl VerifiedChain {
    /// The leaf certificate's P-384 public key.
    pub fn leaf_key(&self) -> &VerifyingKey {
        &self.leaf_key
    }
    /// Subject names, leaf first, ending with the pinned root.
    pub fn subjects(&self) -> &[String] {
        &self.subjects
    }
    /// DER certificates, leaf first, ending with the pinned root.
    pub fn ders(&self) -> &[Vec<u8>] {
        &self.ders
    }
}

pub(crate) fn parse_cert(der: &[u8]) -> std::result::Result<X509Certificate<'_>, String> {
    match X509Certificate::from_der(der) {
        Ok(([], c)) => Ok(c),
        Ok((rest, _)) => Err(format!(
            "{} trailing byte(s) after the certificate",
            rest.len()
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// SHA-256 of `der`, lowercase hex.
pub fn fingerprint_sha256(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The P-384 public key of a certificate.
pub(crate) fn p384_key(cert: &X509Certificate<'_>) -> std::result::Result<VerifyingKey, String> {
    let spki = cert.public_key();
    VerifyingKey::from_sec1_bytes(&spki.subject_public_key.data)
        .map_err(|_| format!("{}: public key is not an ECDSA P-384 point", cert.subject()))
}

/// Check that `child` is signed by `issuer_key` with ECDSA P-384/SHA-384.
pub(crate) fn check_signature(
    child: &X509Certificate<'_>,
    issuer_key: &VerifyingKey,
) -> std::result::Result<(), String> {
    let alg = &child.signature_algorithm.algorithm;
    if *alg != x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA384 {
        return Err(format!(
            "{}: signature algorithm {alg} is not ecdsa-with-SHA384",
            child.subject()
        ));
    }
    let sig = Signature::from_der(&child.signature_value.data).map_err(|_| {
        format!(
            "{}: signature is not a DER ECDSA signature",
            child.subject()
        )
    })?;
    issuer_key
        .verify(child.tbs_certificate.as_ref(), &sig)
        .map_err(|_| {
            format!(
                "{}: signature does not verify with its issuer's key",
                child.subject()
            )
        })
}

fn check_validity(c: &X509Certificate<'_>, at: OffsetDateTime) -> std::result::Result<(), String> {
    let nb = c.validity().not_before.to_datetime();
    let na = c.validity().not_after.to_datetime();
    if at < nb {
        return Err(format!(
            "{}: not valid before {nb} (checked at {at})",
            c.subject()
        ));
    }
    if at > na {
        return Err(format!(
            "{}: expired at {na} (checked at {at})",
            c.subject()
        ));
    }
    Ok(())
}

fn is_ca(c: &X509Certificate<'_>) -> bool {
    matches!(c.basic_constraints(), Ok(Some(bc)) if bc.value.ca)
}

/// Verify `chain` (leaf first) to the pinned root `root_der` at time `at`.
///
/// The chain may end with the root itself (it must then be byte-identical
/// to the pinned one) or with a certificate the root signed. Each
/// certificate must be signed by the next, name its issuer's subject, and be
/// valid at `at`; every issuer must be a CA (basicConstraints cA=TRUE).
pub fn verify_chain(
    chain: &CertChain,
    root_der: &[u8],
    at: OffsetDateTime,
) -> Result<VerifiedChain> {
    let root = parse_cert(root_der).map_err(Error::MalformedCertificate)?;
    let mut ders: Vec<Vec<u8>> = chain.ders.clone();
    if ders.last().map(|d| d.as_slice()) != Some(root_der) {
        ders.push(root_der.to_vec());
    }
    let certs: Vec<X509Certificate<'_>> = ders
        .iter()
        .map(|d| parse_cert(d).map_err(Error::MalformedCertificate))
        .collect::<Result<_>>()?;
    check_validity(&root, at).map_err(Error::Chain)?;
    for i in 0..certs.len() - 1 {
        let (child, issuer) = (&certs[i], &certs[i + 1]);
        if child.issuer().as_raw() != issuer.subject().as_raw() {
            return Err(Error::Chain(format!(
                "{} names issuer {}, but the next certificate is {}",
                child.subject(),
                child.issuer(),
                issuer.subject()
            )));
        }
        if !is_ca(issuer) {
            return Err(Error::Chain(format!(
                "{} issues {} but is not a CA",
                issuer.subject(),
                child.subject()
            )));
        }
        let key = p384_key(issuer).map_err(Error::Chain)?;
        check_signature(child, &key).map_err(Error::Chain)?;
        check_validity(child, at).map_err(Error::Chain)?;
    }
    // The root is self-signed; check it too so a corrupted pin is caught.
    let root_key = p384_key(&root).map_err(Error::Chain)?;
    check_signature(&root, &root_key).map_err(Error::Chain)?;
    let leaf_key = p384_key(&certs[0]).map_err(Error::Chain)?;
    let subjects = certs.iter().map(|c| c.subject().to_string()).collect();
    Ok(VerifiedChain {
        ders,
        subjects,
        leaf_key,
    })
}
