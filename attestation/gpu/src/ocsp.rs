//! OCSP (RFC 6960) status of the GPU and RIM certificates: requests built
//! and responses decoded with the RustCrypto `x509-ocsp` types, responses
//! verified by signature (ECDSA P-384/SHA-384, by the issuer or by a
//! delegated responder the issuer certified for OCSP signing), matched to
//! the certificate by `CertID` and checked against the verification time.
//!
//! Responses are fetched over HTTP (POST `application/ocsp-request` to the
//! certificate's AIA OCSP URL), cached on disk as the raw DER, and
//! **re-verified on every use**: the cache is untrusted storage, so an
//! offline verification from the cache is as strong as an online one,
//! limited only by the response's `nextUpdate`.
//!
//! No OCSP nonce is sent: a cached response can't carry a fresh nonce, and
//! freshness is bounded by `thisUpdate`/`nextUpdate` instead.

use std::path::{Path, PathBuf};

use ::time::OffsetDateTime;
use der::{Decode, Encode, Reader};
use p384::ecdsa::signature::Verifier;
use p384::ecdsa::Signature;
use sha2::{Digest, Sha256, Sha384};
use x509_ocsp::{BasicOcspResponse, CertStatus, OcspResponse, OcspResponseStatus};
use x509_parser::prelude::X509Certificate;

use crate::certs;
use crate::error::{Error, Result};

/// id-pkix-ocsp-basic.
const OCSP_BASIC: &str = "1.3.6.1.5.5.7.48.1.1";
/// id-sha384.
const SHA384_OID: &str = "2.16.840.1.101.3.4.2.2";
/// id-sha256.
const SHA256_OID: &str = "2.16.840.1.101.3.4.2.1";
/// ecdsa-with-SHA384.
const ECDSA_SHA384_OID: &str = "1.2.840.10045.4.3.3";
/// id-kp-OCSPSigning.
const KP_OCSP_SIGNING: &str = "1.3.6.1.5.5.7.3.9";
/// Clock skew tolerated on `thisUpdate`, in seconds.
pub const CLOCK_SKEW_SECS: i64 = 300;
/// Upper bound on an accepted OCSP response.
pub const MAX_RESPONSE_LEN: usize = 64 * 1024;

/// The status OCSP gave for one certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum CertRevocation {
    /// Not revoked.
    Good,
    /// Revoked at `at` (RFC 3339).
    Revoked {
        /// Revocation time, RFC 3339.
        at: String,
    },
    /// The responder does not know the certificate.
    Unknown,
}

/// Where a verified response came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OcspSourceKind {
    /// Read from the on-disk cache (and re-verified).
    Cache,
    /// Fetched over HTTP now (and verified, then cached).
    Network,
    /// Given directly by the caller.
    Supplied,
}

/// One verified OCSP answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OcspCheck {
    /// Subject of the certificate checked.
    pub subject: String,
    /// Its status.
    pub status: CertRevocation,
    /// `thisUpdate`, RFC 3339.
    pub this_update: String,
    /// `nextUpdate`, RFC 3339.
    pub next_update: String,
    /// Where the response came from.
    pub source: OcspSourceKind,
}

fn oerr(s: impl Into<String>) -> Error {
    Error::Ocsp(s.into())
}

fn malformed(s: impl Into<String>) -> Error {
    Error::MalformedOcsp(s.into())
}

fn cert_id_hashes(alg: &str, issuer: &X509Certificate<'_>) -> Option<(Vec<u8>, Vec<u8>)> {
    let name = issuer.subject().as_raw();
    let key = &issuer.public_key().subject_public_key.data;
    match alg {
        SHA384_OID => Some((Sha384::digest(name).to_vec(), Sha384::digest(key).to_vec())),
        SHA256_OID => Some((Sha256::digest(name).to_vec(), Sha256::digest(key).to_vec())),
        _ => None,
    }
}

/// Build a DER OCSP request for `cert_der` issued by `issuer_der`
/// (CertID hashed with SHA-384, no nonce).
pub fn build_request(cert_der: &[u8], issuer_der: &[u8]) -> Result<Vec<u8>> {
    use x509_ocsp::{CertId, OcspRequest, Request, TbsRequest, Version};
    let cert = certs::parse_cert(cert_der).map_err(Error::MalformedCertificate)?;
    let issuer = certs::parse_cert(issuer_der).map_err(Error::MalformedCertificate)?;
    let (nh, kh) = cert_id_hashes(SHA384_OID, &issuer).ok_or_else(|| oerr("hash"))?;
    let serial = x509_cert::serial_number::SerialNumber::new(cert.raw_serial())
        .map_err(|e| Error::MalformedCertificate(format!("serial: {e}")))?;
    let cert_id = CertId {
        hash_algorithm: spki_alg(SHA384_OID)?,
        issuer_name_hash: der::asn1::OctetString::new(nh).map_err(|e| oerr(e.to_string()))?,
        issuer_key_hash: der::asn1::OctetString::new(kh).map_err(|e| oerr(e.to_string()))?,
        serial_number: serial,
    };
    let req = OcspRequest {
        tbs_request: TbsRequest {
            version: Version::V1,
            requestor_name: None,
            request_list: vec![Request {
                req_cert: cert_id,
                single_request_extensions: None,
            }],
            request_extensions: None,
        },
        optional_signature: None,
    };
    req.to_der()
        .map_err(|e| oerr(format!("encoding the request: {e}")))
}

fn spki_alg(oid: &str) -> Result<x509_cert::spki::AlgorithmIdentifierOwned> {
    Ok(x509_cert::spki::AlgorithmIdentifierOwned {
        oid: der::oid::ObjectIdentifier::new(oid).map_err(|e| oerr(e.to_string()))?,
        parameters: None,
    })
}

/// The raw DER of the first element (tbsResponseData) of a BasicOCSPResponse
/// SEQUENCE: the exact bytes the responder signed.
fn tbs_bytes(basic_der: &[u8]) -> Result<&[u8]> {
    let mut r = der::SliceReader::new(basic_der).map_err(|e| malformed(e.to_string()))?;
    let header = der::Header::decode(&mut r).map_err(|e| malformed(e.to_string()))?;
    if header.tag != der::Tag::Sequence {
        return Err(malformed("BasicOCSPResponse is not a SEQUENCE"));
    }
    r.tlv_bytes().map_err(|e| malformed(e.to_string()))
}

fn gt_to_time(t: &x509_ocsp::OcspGeneralizedTime) -> Result<OffsetDateTime> {
    let secs = t.0.to_unix_duration().as_secs();
    OffsetDateTime::from_unix_timestamp(secs as i64).map_err(|e| malformed(e.to_string()))
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&::time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// Verify a DER OCSP response for `cert_der` (issued by `issuer_der`) at
/// `at`. Returns the status only when the response is authentic, matches the
/// certificate and is current; a revoked status is returned as a value (the
/// caller decides), everything else wrong is an error.
pub fn verify_response(
    response_der: &[u8],
    cert_der: &[u8],
    issuer_der: &[u8],
    at: OffsetDateTime,
    source: OcspSourceKind,
) -> Result<OcspCheck> {
    if response_der.len() > MAX_RESPONSE_LEN {
        return Err(malformed(format!(
            "{} bytes, over the limit",
            response_der.len()
        )));
    }
    let cert = certs::parse_cert(cert_der).map_err(Error::MalformedCertificate)?;
    let issuer = certs::parse_cert(issuer_der).map_err(Error::MalformedCertificate)?;
    let resp = OcspResponse::from_der(response_der).map_err(|e| malformed(e.to_string()))?;
    if resp.response_status != OcspResponseStatus::Successful {
        return Err(oerr(format!(
            "responder answered {:?}",
            resp.response_status
        )));
    }
    let bytes = resp
        .response_bytes
        .ok_or_else(|| malformed("successful response without responseBytes"))?;
    if bytes.response_type.to_string() != OCSP_BASIC {
        return Err(malformed(format!(
            "response type {} is not id-pkix-ocsp-basic",
            bytes.response_type
        )));
    }
    let basic_der = bytes.response.as_bytes();
    let basic = BasicOcspResponse::from_der(basic_der).map_err(|e| malformed(e.to_string()))?;
    let tbs = tbs_bytes(basic_der)?;

    // Who signed: the issuer itself, or a delegated responder certified by it.
    let issuer_key = certs::p384_key(&issuer).map_err(oerr)?;
    let mut signer_key = issuer_key;
    if let Some(list) = &basic.certs {
        if let Some(rc) = list.first() {
            let rc_der = rc.to_der().map_err(|e| malformed(e.to_string()))?;
            if rc_der.as_slice() != issuer_der {
                let rc = certs::parse_cert(&rc_der).map_err(Error::MalformedCertificate)?;
                if rc.issuer().as_raw() != issuer.subject().as_raw() {
                    return Err(oerr(
                        "responder certificate is not issued by the certificate's issuer",
                    ));
                }
                certs::check_signature(&rc, &issuer_key).map_err(oerr)?;
                let eku_ok = matches!(rc.extended_key_usage(), Ok(Some(e))
                    if e.value.ocsp_signing || e.value.other.iter().any(|o| o.to_id_string() == KP_OCSP_SIGNING));
                if !eku_ok {
                    return Err(oerr("responder certificate lacks id-kp-OCSPSigning"));
                }
                let v = rc.validity();
                if at < v.not_before.to_datetime() || at > v.not_after.to_datetime() {
                    return Err(oerr(
                        "responder certificate is not valid at the verification time",
                    ));
                }
                signer_key = certs::p384_key(&rc).map_err(oerr)?;
            }
        }
    }
    if basic.signature_algorithm.oid.to_string() != ECDSA_SHA384_OID {
        return Err(oerr(format!(
            "response signature algorithm {} is not ecdsa-with-SHA384",
            basic.signature_algorithm.oid
        )));
    }
    let sig = Signature::from_der(basic.signature.raw_bytes())
        .map_err(|_| malformed("response signature is not a DER ECDSA signature"))?;
    signer_key
        .verify(tbs, &sig)
        .map_err(|_| oerr("response signature does not verify"))?;

    // Which single response is ours.
    let single = basic
        .tbs_response_data
        .responses
        .iter()
        .find(|s| {
            let alg = s.cert_id.hash_algorithm.oid.to_string();
            let Some((nh, kh)) = cert_id_hashes(&alg, &issuer) else {
                return false;
            };
            s.cert_id.serial_number.as_bytes() == cert.raw_serial()
                && s.cert_id.issuer_name_hash.as_bytes() == nh.as_slice()
                && s.cert_id.issuer_key_hash.as_bytes() == kh.as_slice()
        })
        .ok_or_else(|| oerr(format!("response has no status for {}", cert.subject())))?;
    let this_update = gt_to_time(&single.this_update)?;
    let next_update = single
        .next_update
        .as_ref()
        .ok_or_else(|| oerr("response has no nextUpdate; its freshness cannot be judged"))
        .and_then(gt_to_time)?;
    if this_update > at + ::time::Duration::seconds(CLOCK_SKEW_SECS) {
        return Err(oerr(format!(
            "response thisUpdate {} is after the verification time",
            rfc3339(this_update)
        )));
    }
    if at > next_update {
        return Err(oerr(format!(
            "response for {} is stale: nextUpdate {} is before the verification time {}",
            cert.subject(),
            rfc3339(next_update),
            rfc3339(at)
        )));
    }
    let status = match &single.cert_status {
        CertStatus::Good(_) => CertRevocation::Good,
        CertStatus::Revoked(info) => CertRevocation::Revoked {
            at: rfc3339(gt_to_time(&info.revocation_time)?),
        },
        CertStatus::Unknown(_) => CertRevocation::Unknown,
    };
    Ok(OcspCheck {
        subject: cert.subject().to_string(),
        status,
        this_update: rfc3339(this_update),
        next_update: rfc3339(next_update),
        source,
    })
}

/// The AIA OCSP URL of a certificate, if it names one.
pub fn ocsp_url(cert_der: &[u8]) -> Option<String> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    let cert = certs::parse_cert(cert_der).ok()?;
    for ext in cert.extensions() {
        if let ParsedExtension::AuthorityInfoAccess(aia) = ext.parsed_extension() {
            for d in &aia.accessdescs {
                if d.access_method.to_id_string() == "1.3.6.1.5.5.7.48.1" {
                    if let GeneralName::URI(u) = &d.access_location {
                        return Some(u.to_string());
                    }
                }
            }
        }
    }
    None
}

/// OCSP answers from an on-disk cache, optionally refreshed over HTTP.
#[derive(Debug, Clone)]
pub struct OcspClient {
    cache_dir: Option<PathBuf>,
    offline: bool,
}

impl OcspClient {
    /// A client with an optional cache directory; `offline` forbids HTTP.
    pub fn new(cache_dir: Option<PathBuf>, offline: bool) -> Self {
        OcspClient { cache_dir, offline }
    }

    /// Whether HTTP is forbidden.
    pub fn is_offline(&self) -> bool {
        self.offline
    }

    fn cache_path(&self, cert_der: &[u8]) -> Option<PathBuf> {
        self.cache_dir
            .as_ref()
            .map(|d| d.join(format!("{}.ocsp.der", certs::fingerprint_sha256(cert_der))))
    }

    /// Store a response in the cache (atomically: temp file + rename).
    pub fn store(&self, cert_der: &[u8], response_der: &[u8]) -> Result<()> {
        let Some(path) = self.cache_path(cert_der) else {
            return Ok(());
        };
        write_atomic(&path, response_der)
    }

    /// The verified status of `cert_der` at `at`: from the cache when a
    /// cached response still verifies and is current, else fetched (unless
    /// offline), verified and cached.
    pub fn status(
        &self,
        cert_der: &[u8],
        issuer_der: &[u8],
        at: OffsetDateTime,
    ) -> Result<OcspCheck> {
        let mut cache_problem = None;
        if let Some(path) = self.cache_path(cert_der) {
            match std::fs::read(&path) {
                Ok(bytes) => {
                    match verify_response(&bytes, cert_der, issuer_der, at, OcspSourceKind::Cache) {
                        Ok(c) => return Ok(c),
                        Err(e) => cache_problem = Some(format!("cached response unusable: {e}")),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(path.display().to_string(), e)),
            }
        }
        if self.offline {
            return Err(oerr(cache_problem.unwrap_or_else(|| {
                "no cached OCSP response and offline mode forbids fetching one".to_string()
            })));
        }
        let url = ocsp_url(cert_der).ok_or_else(|| oerr("certificate names no OCSP responder"))?;
        let req = build_request(cert_der, issuer_der)?;
        let body = http_post(&url, &req)?;
        let check = verify_response(&body, cert_der, issuer_der, at, OcspSourceKind::Network)?;
        self.store(cert_der, &body)?;
        Ok(check)
    }
}

fn http_post(url: &str, body: &[u8]) -> Result<Vec<u8>> {
    let herr = |reason: String| Error::Http {
        url: url.to_string(),
        reason,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(15)))
        .build()
        .into();
    let mut resp = agent
        .post(url)
        .header("Content-Type", "application/ocsp-request")
        .send(body)
        .map_err(|e| herr(e.to_string()))?;
    resp.body_mut()
        .with_config()
        .limit(MAX_RESPONSE_LEN as u64)
        .read_to_vec()
        .map_err(|e| herr(e.to_string()))
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir.display().to_string(), e))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(tmp.display().to_string(), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path.display().to_string(), e))
}
