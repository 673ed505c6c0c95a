//! Why dcap-qvl refused a quote, found by typed checks instead of by reading
//! its messages.
//!
//! dcap-qvl (pinned to 0.7.1 in Cargo.lock) reports every failure as one
//! `anyhow` message. The category of a failure decides an exit code and a
//! client's typed exception, so it must not depend on the wording of another
//! crate's messages. When dcap-qvl refuses a quote, [`diagnose`] re-checks
//! the quote itself, in the order dcap-qvl verifies, and returns the first
//! check that fails as this crate's typed error:
//!
//! 1. every certificate of the PCK chain listed in a collateral CRL →
//!    [`Error::Revoked`];
//! 2. a PCK chain certificate outside its validity window →
//!    [`Error::StaleCollateral`];
//! 3. the TCB info's and the QE identity's ECDSA P-256 signatures by the
//!    leaf of their issuer chains → step `TCB info` / `QE identity`;
//! 4. the QE report's ECDSA P-256 signature by the PCK leaf key, and its
//!    binding of the attestation key → step `QE report`;
//! 5. the quote's ECDSA P-256 signature by the attestation key → step
//!    `quote signature`;
//! 6. TD attributes dcap-qvl refuses (SEPT_VE_DISABLE clear, MIGRATABLE,
//!    SERVTD_EXT, reserved bits) → [`Error::Rejected`], naming the bit;
//! 7. no TCB level of the (signed) TCB info matched the platform, as
//!    dcap-qvl's own typed [`TcbLevel::shortfalls`] computes →
//!    [`Error::Rejected`] (authentic but out of date);
//! 8. anything else (chain signatures, module identity) →
//!    step `quote`, with dcap-qvl's text as the detail.
//!
//! The diagnosis runs only after dcap-qvl has refused the quote, so it can
//! never turn a refusal into an acceptance: it only names the refusal.
//!
//! [`TcbLevel::shortfalls`]: dcap_qvl::tcb_info::TcbLevel::shortfalls

use dcap_qvl::tcb_info::TcbInfo;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::prelude::FromDer;

use super::collateral::TdxCollateral;
use super::quote::TdxQuote;
use crate::error::Error;

/// Step name of a TCB info whose signature does not verify.
pub const STEP_TCB_INFO: &str = "TCB info";
/// Step name of a QE identity whose signature does not verify.
pub const STEP_QE_IDENTITY: &str = "QE identity";
/// Step name of a QE report failure (signature or key binding).
pub const STEP_QE_REPORT: &str = "QE report";
/// Step name of a failed quote signature.
pub const STEP_QUOTE_SIGNATURE: &str = "quote signature";
/// Step name of any other failure dcap-qvl reported.
pub const STEP_QUOTE: &str = "quote";

/// The typed reason dcap-qvl refused `quote`; `qvl_detail` (dcap-qvl's own
/// text) is kept as the human detail, never inspected.
pub(super) fn diagnose(
    quote: &TdxQuote,
    chain: &[Vec<u8>],
    collateral: &TdxCollateral,
    now: OffsetDateTime,
    qvl_detail: String,
) -> Error {
    if let Some(what) = revoked_certificate(chain, collateral) {
        return Error::Revoked(format!("{what}: {qvl_detail}"));
    }
    if let Some(what) = certificate_outside_validity(chain, now) {
        return Error::StaleCollateral(format!("{what}; fetch fresh collateral ({qvl_detail})"));
    }
    let v3 = &collateral.v3;
    if let Some(why) = collateral_signature_problem(
        &v3.tcb_info_issuer_chain,
        &v3.tcb_info,
        &v3.tcb_info_signature,
    ) {
        return Error::verification(STEP_TCB_INFO, format!("{why} ({qvl_detail})"));
    }
    if let Some(why) = collateral_signature_problem(
        &v3.qe_identity_issuer_chain,
        &v3.qe_identity,
        &v3.qe_identity_signature,
    ) {
        return Error::verification(STEP_QE_IDENTITY, format!("{why} ({qvl_detail})"));
    }
    if let Some(why) = qe_report_problem(quote, chain) {
        return Error::verification(STEP_QE_REPORT, format!("{why} ({qvl_detail})"));
    }
    if let Some(why) = quote_signature_problem(quote) {
        return Error::verification(STEP_QUOTE_SIGNATURE, format!("{why} ({qvl_detail})"));
    }
    if let Some(why) = td_attributes_problem(quote) {
        return Error::Rejected(format!("{why} ({qvl_detail})"));
    }
    if no_tcb_level_matches(quote, chain, collateral) {
        return Error::Rejected(
            "platform TCB is older than every level in the TCB info (TCB not supported, out of date)"
                .into(),
        );
    }
    Error::verification(STEP_QUOTE, qvl_detail)
}

/// TD attributes dcap-qvl refuses in an authentic quote (its checks with
/// debug allowed: reserved bits, MIGRATABLE, SERVTD_EXT, SEPT_VE_DISABLE
/// clear), named. The host chose these bits; the quote is authentic but the
/// TD is not one a client can trust, hence a rejection, not a verification
/// failure.
fn td_attributes_problem(quote: &TdxQuote) -> Option<String> {
    use super::quote::td_attributes::{value, MIGRATABLE, SEPT_VE_DISABLE};
    // Intel TDX module ABI 348551-008US table 3.23: bits that must be zero.
    const RESERVED: u64 = 0b1110 | 0xff80 | (0b1111 << 23) | (0x3fff_ffff << 32);
    const SERVTD_EXT: u64 = 1 << 17;
    let attrs = value(&quote.td_report().td_attributes);
    let named = |what: &str| format!("TD attributes {attrs:#018x}: {what}");
    if attrs & SEPT_VE_DISABLE == 0 {
        return Some(named(
            "SEPT_VE_DISABLE (bit 28) is clear: the host can make the TD take #VE on pending \
             private pages and steer its exception handler",
        ));
    }
    if attrs & MIGRATABLE != 0 {
        return Some(named(
            "MIGRATABLE (bit 29) is set: a migration TD can export this TD's state",
        ));
    }
    if attrs & SERVTD_EXT != 0 {
        return Some(named("SERVTD_EXT (bit 17) is set: service TDs are bound"));
    }
    if attrs & RESERVED != 0 {
        return Some(named(&format!(
            "reserved bits {:#x} are set",
            attrs & RESERVED
        )));
    }
    None
}

/// Whether no level of the TCB info matches the platform's SVNs (the PCK
/// certificate's CPU SVN and PCE SVN, the TD report's TEE_TCB_SVN).
pub(super) fn no_tcb_level_matches(
    quote: &TdxQuote,
    chain: &[Vec<u8>],
    collateral: &TdxCollateral,
) -> bool {
    let Some(leaf) = chain.first() else {
        return false;
    };
    let Ok(pck) = dcap_qvl::intel::parse_pck_extension(leaf) else {
        return false;
    };
    let Ok(info) = serde_json::from_str::<TcbInfo>(&collateral.v3.tcb_info) else {
        return false;
    };
    let tee_tcb_svn = quote.td_report().tee_tcb_svn;
    !info.tcb_levels.iter().any(|level| {
        level
            .shortfalls(&pck.cpu_svn, pck.pce_svn, Some(&tee_tcb_svn))
            .is_ok_and(|s| s.is_empty())
    })
}

/// The first chain certificate whose serial a CRL of the collateral lists
/// (under the same issuer).
fn revoked_certificate(chain: &[Vec<u8>], collateral: &TdxCollateral) -> Option<String> {
    use x509_parser::revocation_list::CertificateRevocationList;
    let crls: Vec<(&str, CertificateRevocationList<'_>)> = [
        ("PCK CRL", collateral.v3.pck_crl.as_slice()),
        ("root CA CRL", collateral.v3.root_ca_crl.as_slice()),
    ]
    .into_iter()
    .filter_map(|(name, der)| {
        CertificateRevocationList::from_der(der)
            .ok()
            .map(|(_, c)| (name, c))
    })
    .collect();
    for der in chain {
        let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(der) else {
            continue;
        };
        for (name, crl) in &crls {
            if crl.issuer() != cert.issuer() {
                continue;
            }
            if crl
                .iter_revoked_certificates()
                .any(|r| r.raw_serial() == cert.raw_serial())
            {
                return Some(format!(
                    "certificate \"{}\" (serial {}) is listed in the {name}",
                    cert.subject(),
                    cert.raw_serial_as_string()
                ));
            }
        }
    }
    None
}

/// The first chain certificate not valid at `now`.
fn certificate_outside_validity(chain: &[Vec<u8>], now: OffsetDateTime) -> Option<String> {
    for der in chain {
        let Ok((_, cert)) = x509_parser::certificate::X509Certificate::from_der(der) else {
            continue;
        };
        let v = cert.validity();
        let (from, to) = (v.not_before.to_datetime(), v.not_after.to_datetime());
        if now < from {
            return Some(format!(
                "certificate \"{}\" is not valid until {from}",
                cert.subject()
            ));
        }
        if now > to {
            return Some(format!(
                "certificate \"{}\" expired at {to}",
                cert.subject()
            ));
        }
    }
    None
}

/// Checks the QE report: signed by the PCK leaf key, and its report data
/// binds the attestation key (SHA-256(key ‖ auth data) in the first 32
/// bytes, zeros after).
fn qe_report_problem(quote: &TdxQuote, chain: &[Vec<u8>]) -> Option<String> {
    let qe = quote.qe_report_data()?;
    let leaf = chain.first()?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(leaf).ok()?;
    let key = match VerifyingKey::from_sec1_bytes(cert.public_key().subject_public_key.as_ref()) {
        Ok(k) => k,
        Err(_) => return Some("the PCK certificate's key is not a P-256 key".into()),
    };
    let Ok(sig) = Signature::from_slice(&qe.qe_report_signature) else {
        return Some("the QE report signature is not a valid P-256 signature".into());
    };
    if key.verify(&qe.qe_report.to_bytes(), &sig).is_err() {
        return Some("the QE report's signature by the PCK key does not verify".into());
    }
    let mut h = Sha256::new();
    h.update(quote.signature.attestation_key);
    h.update(&qe.qe_auth_data);
    let want = h.finalize();
    let rd = &qe.qe_report.report_data;
    if rd[..32] != want[..] || rd[32..].iter().any(|b| *b != 0) {
        return Some("the QE report does not bind the attestation key".into());
    }
    None
}

/// Checks the quote's signature over header ‖ body by the attestation key.
fn quote_signature_problem(quote: &TdxQuote) -> Option<String> {
    let mut point = [0u8; 65];
    point[0] = 0x04;
    point[1..].copy_from_slice(&quote.signature.attestation_key);
    let Ok(key) = VerifyingKey::from_sec1_bytes(&point) else {
        return Some("the attestation key is not a P-256 point".into());
    };
    let Ok(sig) = Signature::from_slice(&quote.signature.signature) else {
        return Some("the quote signature is not a valid P-256 signature".into());
    };
    if key.verify(&quote.signed_bytes(), &sig).is_err() {
        return Some("the quote's signature by the attestation key does not verify".into());
    }
    None
}

/// Checks a signed collateral JSON body (TCB info, QE identity): the raw
/// P-256 signature (r ‖ s) over the exact body text by the leaf
/// certificate of its issuer chain.
fn collateral_signature_problem(
    issuer_chain: &str,
    body: &str,
    signature: &[u8],
) -> Option<String> {
    let chain = super::pem::pem_certificates(issuer_chain.as_bytes()).ok()?;
    let leaf = chain.first()?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(leaf).ok()?;
    let Ok(key) = VerifyingKey::from_sec1_bytes(cert.public_key().subject_public_key.as_ref())
    else {
        return Some("the signing certificate's key is not a P-256 key".into());
    };
    let Ok(sig) = Signature::from_slice(signature) else {
        return Some("the signature is not a valid P-256 signature".into());
    };
    if key.verify(body.as_bytes(), &sig).is_err() {
        return Some(format!(
            "its signature by \"{}\" does not verify over the body",
            cert.subject()
        ));
    }
    None
}
