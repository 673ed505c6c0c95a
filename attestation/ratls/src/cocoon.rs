//! Telegram Cocoon RA-TLS certificates: read, verify, and build (for tests).
//!
//! Layout, from Cocoon's `docs/ra-tls.md` and `tee/cocoon/tdx.cpp`
//! (`generate_tdx_self_signed_cert`, `UserClaims::serialize`, `Verifier`),
//! repository TelegramMessenger/cocoon at b75d444:
//!
//! * self-signed X.509 v3 with an **Ed25519** key;
//! * extension `1.3.6.1.4.1.12345.1` (`TDX_QUOTE`), critical: the extnValue
//!   OCTET STRING holds the raw TDX quote bytes directly (OpenSSL
//!   `ASN1_OCTET_STRING_set` on the quote, no inner DER);
//! * extension `1.3.6.1.4.1.12345.2` (`TDX_USER_CLAIMS`), critical: the
//!   extnValue OCTET STRING holds the serialised `UserClaims`, which today
//!   is exactly the certificate's raw 32-byte Ed25519 public key;
//! * the quote's report_data = SHA-512(serialised claims) (64 bytes);
//! * standard extensions: basicConstraints CA:FALSE (critical), keyUsage
//!   digitalSignature (critical), extKeyUsage serverAuth+clientAuth
//!   (critical), subjectAltName.
//!
//! Cocoon's own verifier rebuilds the claims from the certificate's key and
//! ignores the extension's bytes; this one requires the extension to equal
//! the key, which is the same condition for every certificate Cocoon
//! writes. Cocoon certificates carry no creation time and no collateral:
//! the verifier needs collateral of its own
//! ([`crate::VerifierConfig::with_collateral`]), and a policy with
//! `max_evidence_age` rejects them.

use std::time::Duration;

use chrysalis_attestation::provider::EvidenceProvider;
use time::OffsetDateTime;

use crate::error::Result;
use crate::identity::{evidence_for, whole_seconds, window, RaTlsIdentity};
use crate::oid;
use crate::x509::{
    build_certificate as build_x509, CertExtension, CertKey, CertificateParams, KeyType, SanEntry,
};

/// Cocoon's certificate lifetime (1 day).
pub const COCOON_VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// The serialised Cocoon user claims for a key: its raw Ed25519 public key.
pub fn user_claims(key: &CertKey) -> Vec<u8> {
    key.public_key_raw().to_vec()
}

/// Builds a Cocoon-format certificate for `key` from raw parts, exactly as
/// Cocoon lays it out. Nothing is checked, so tests can build tampered
/// certificates (a quote for other claims, claims for another key).
pub fn build_certificate(
    key: &CertKey,
    quote: &[u8],
    claims: &[u8],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<Vec<u8>> {
    build_x509(
        key,
        &CertificateParams {
            common_name: "cocoon-worker".into(),
            subject_alt_names: vec![
                SanEntry::Dns("localhost".into()),
                SanEntry::Ip(std::net::Ipv4Addr::LOCALHOST.into()),
            ],
            not_before,
            not_after,
            critical_ext_key_usage: true,
            extensions: vec![
                CertExtension {
                    oid: oid::COCOON_QUOTE.to_vec(),
                    critical: true,
                    value: quote.to_vec(),
                },
                CertExtension {
                    oid: oid::COCOON_CLAIMS.to_vec(),
                    critical: true,
                    value: claims.to_vec(),
                },
            ],
        },
    )
}

/// Test support: a Cocoon-format identity with evidence from `provider`
/// (e.g. a simulated TDX), valid for `validity` from now.
pub fn build_test_certificate(
    provider: &dyn EvidenceProvider,
    validity: Duration,
) -> Result<RaTlsIdentity> {
    let key = CertKey::generate(KeyType::Ed25519)?;
    let claims = user_claims(&key);
    let quote = evidence_for(provider, &claims)?;
    let created = whole_seconds(OffsetDateTime::now_utc())?;
    let (not_before, not_after) = window(created, validity)?;
    let der = build_certificate(&key, &quote, &claims, not_before, not_after)?;
    RaTlsIdentity::assemble(key, der)
}
