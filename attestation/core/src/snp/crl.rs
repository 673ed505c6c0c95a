//! AMD's certificate revocation list for one product, checked when cached.
//!
//! AMD's KDS serves, per product, a CRL signed by the ARK
//! (`…/vcek/v1/{product}/crl`, RSASSA-PSS with SHA-384 like the
//! certificates) listing revoked ASKs/ASVKs. `attest collateral fetch`
//! caches it as `crl.der`; when a verification is given one, it must be
//! signed by the chain's ARK, be within its validity window (a stale CRL
//! fails closed, as stale TDX collateral does), and must not list the
//! chain's ASK/ASVK.

use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::error::{Error, Result};
use crate::timefmt::{format_rfc3339, human_duration};

/// The step name of a CRL that does not verify.
pub const STEP_CRL: &str = "SNP CRL";

/// The CRLs in a blob (DER, or PEM `X509 CRL` blocks) and whether the blob
/// also holds certificates (PEM `CERTIFICATE` blocks, or DER that is not a
/// CRL).
pub(crate) fn decode_crls(blob: &[u8]) -> Result<(Vec<Vec<u8>>, bool)> {
    let is_pem = blob
        .windows(b"-----BEGIN".len())
        .any(|w| w == b"-----BEGIN");
    if !is_pem {
        return Ok(match CertificateRevocationList::from_der(blob) {
            Ok(([], _)) => (vec![blob.to_vec()], false),
            _ => (Vec::new(), true),
        });
    }
    let mut crls = Vec::new();
    let mut certificates = false;
    for pem in x509_parser::pem::Pem::iter_from_buffer(blob) {
        let pem = pem.map_err(|e| Error::MalformedCollateral(format!("bad PEM: {e}")))?;
        match pem.label.as_str() {
            "X509 CRL" => {
                parse(&pem.contents)?;
                crls.push(pem.contents);
            }
            "CERTIFICATE" => certificates = true,
            _ => {}
        }
    }
    let certificates = certificates || crls.is_empty();
    Ok((crls, certificates))
}

fn parse(der: &[u8]) -> Result<CertificateRevocationList<'_>> {
    match CertificateRevocationList::from_der(der) {
        Ok(([], crl)) => Ok(crl),
        Ok((rest, _)) => Err(Error::MalformedCollateral(format!(
            "AMD CRL has {} trailing bytes after the DER structure",
            rest.len()
        ))),
        Err(e) => Err(Error::MalformedCollateral(format!(
            "AMD CRL is not X.509 CRL DER: {e}"
        ))),
    }
}

/// Checks `crl_der` against the chain's ARK at `now` and that none of
/// `certs` (`(name, DER)`, e.g. the ASK and the VCEK) is listed.
pub(crate) fn check(
    crl_der: &[u8],
    ark_der: &[u8],
    certs: &[(&str, &[u8])],
    now: OffsetDateTime,
) -> Result<()> {
    let crl = parse(crl_der)?;
    let (_, ark) = X509Certificate::from_der(ark_der)
        .map_err(|e| Error::MalformedCollateral(format!("ARK certificate: {e}")))?;
    if crl.issuer() != ark.subject() {
        return Err(Error::verification(
            STEP_CRL,
            format!(
                "the CRL is issued by \"{}\", not by the chain's ARK \"{}\"",
                crl.issuer(),
                ark.subject()
            ),
        ));
    }
    let key = rsa::RsaPublicKey::from_public_key_der(ark.tbs_certificate.subject_pki.raw)
        .map_err(|e| Error::MalformedCollateral(format!("ARK public key is not RSA: {e}")))?;
    let sig = rsa::pss::Signature::try_from(crl.signature_value.data.as_ref())
        .map_err(|e| Error::verification(STEP_CRL, format!("CRL signature: {e}")))?;
    rsa::pss::VerifyingKey::<sha2::Sha384>::new(key)
        .verify(crl.tbs_cert_list.as_ref(), &sig)
        .map_err(|_| {
            Error::verification(
                STEP_CRL,
                "the CRL's RSASSA-PSS SHA-384 signature does not verify with the ARK's key",
            )
        })?;

    let this_update = crl.last_update().to_datetime();
    if now < this_update {
        return Err(Error::StaleCollateral(format!(
            "AMD CRL is not valid yet: thisUpdate {} is {} from now",
            format_rfc3339(this_update),
            human_duration(this_update - now)
        )));
    }
    if let Some(next) = crl.next_update().map(|t| t.to_datetime()) {
        if now > next {
            return Err(Error::StaleCollateral(format!(
                "AMD CRL expired {} ago (nextUpdate {}); fetch it again (attest collateral fetch)",
                human_duration(now - next),
                format_rfc3339(next)
            )));
        }
    }

    for (name, der) in certs {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| Error::MalformedCollateral(format!("{name} certificate: {e}")))?;
        // A CRL lists serials of the certificates its issuer issued: the
        // ARK's CRL covers the ASK/ASVK, not a VCEK (issued by the ASK),
        // whose serial could coincide with an unrelated revoked one.
        if cert.issuer() != crl.issuer() {
            continue;
        }
        if crl
            .iter_revoked_certificates()
            .any(|r| r.raw_serial() == cert.raw_serial())
        {
            return Err(Error::Revoked(format!(
                "{name} \"{}\" (serial {}) is on AMD's CRL for this product (thisUpdate {})",
                cert.subject(),
                hex::encode(cert.raw_serial()),
                format_rfc3339(this_update)
            )));
        }
    }
    Ok(())
}
