//! The one error type of this crate, classified into the workspace's
//! [`ErrorCategory`].

use time::OffsetDateTime;

/// The workspace's one error category enum (defined by the attestation
/// core); [`Error::category`] sorts this crate's errors into it.
pub use chrysalis_attestation::ErrorCategory;

/// Everything that can go wrong while building or verifying RA-TLS
/// certificates and fresh evidence.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The certificate is not a well-formed X.509 certificate, or a field
    /// of it (extension, key, signature algorithm) is malformed.
    #[error("malformed certificate: {0}")]
    Certificate(String),

    /// A required RA-TLS extension is absent.
    #[error("malformed certificate: no {name} extension (OID {oid})")]
    MissingExtension {
        /// Human name of the extension, e.g. `evidence`.
        name: &'static str,
        /// Its dotted OID.
        oid: String,
    },

    /// The certificate carries a critical extension this verifier does
    /// not understand (X.509 requires rejecting it).
    #[error("malformed certificate: unknown critical extension {0}")]
    UnknownCriticalExtension(String),

    /// The claims DER is malformed or has an unsupported version.
    #[error("malformed claims: {0}")]
    Claims(String),

    /// The certificate's key type is not supported (ECDSA P-256/P-384 and
    /// Ed25519 are; Cocoon certificates must use Ed25519).
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),

    /// The collateral extension (or fresh-evidence collateral) is malformed.
    #[error("malformed collateral: {0}")]
    Collateral(String),

    /// Neither the verifier nor the certificate supplies collateral for
    /// the evidence.
    #[error("no collateral: the {tee} evidence comes without collateral and the verifier was given none (pass collateral in VerifierConfig)")]
    NoCollateral {
        /// TEE of the evidence.
        tee: chrysalis_attestation::Tee,
    },

    /// The certificate's notAfter is before the verification time.
    #[error("certificate expired at {not_after} (verification time {now})")]
    Expired {
        /// Certificate notAfter.
        not_after: OffsetDateTime,
        /// Verification time.
        now: OffsetDateTime,
    },

    /// The certificate's notBefore is after the verification time.
    #[error("certificate not valid before {not_before} (verification time {now})")]
    NotYetValid {
        /// Certificate notBefore.
        not_before: OffsetDateTime,
        /// Verification time.
        now: OffsetDateTime,
    },

    /// The certificate's self-signature does not verify with its own key.
    #[error("certificate signature does not verify with its own key: {0}")]
    BadSignature(String),

    /// The evidence's report_data is not SHA-512 of the claims: the
    /// evidence was produced for other claims (e.g. a swapped evidence
    /// extension).
    #[error("evidence not bound to the claims: report_data {report_data} but SHA-512(claims) = {expected}")]
    EvidenceNotBound {
        /// Hex of the evidence's report_data.
        report_data: String,
        /// Hex of SHA-512 of the claims.
        expected: String,
    },

    /// The claims (bound in the evidence) name another public key than the
    /// certificate's: the certificate's key is not the attested one.
    #[error("key not bound in evidence: {0}")]
    KeyNotBound(String),

    /// The claims contradict the evidence or another extension (TEE type,
    /// purpose, GPU evidence digest).
    #[error("claims do not match: {0}")]
    ClaimsMismatch(String),

    /// Fresh evidence answers another nonce than the one asked for.
    #[error("nonce mismatch: asked for {expected}, evidence is bound to {actual}")]
    NonceMismatch {
        /// Hex of the nonce the client sent.
        expected: String,
        /// Hex of the nonce in the claims (empty when absent).
        actual: String,
    },

    /// Fresh evidence is bound to another key than the connection's
    /// certificate.
    #[error(
        "key mismatch: fresh evidence is bound to another public key than the certificate's ({0})"
    )]
    KeyMismatch(String),

    /// The nonce in a request is missing, not hex, empty or too long.
    #[error("invalid nonce: {0}")]
    InvalidNonce(String),

    /// Fresh-evidence JSON could not be decoded.
    #[error("malformed fresh evidence: {0}")]
    FreshEvidence(String),

    /// A batched fresh-evidence answer's inclusion proof does not lead from
    /// the client's nonce to the window's root.
    #[error("the nonce is not in the window's tree (proof leads to {computed}, root is {root})")]
    NotInBatch {
        /// Root computed from the nonce and proof (hex).
        computed: String,
        /// The window's root (hex).
        root: String,
    },

    /// Fresh evidence older than the client's bound (by its claims'
    /// `createdAt`, the TEE's clock), or dated too far in the future.
    #[error("the evidence is {age_secs} s old; at most {max_secs} s accepted")]
    StaleEvidence {
        /// Age in seconds (negative: dated in the future).
        age_secs: i64,
        /// The bound in seconds.
        max_secs: i64,
    },

    /// The attestation core failed (decoding, verification, collateral).
    #[error(transparent)]
    Attestation(#[from] chrysalis_attestation::Error),

    /// The evidence is authentic but the policy rejects it; every failed
    /// rule is listed.
    #[error("rejected by policy: {}", reasons.join("; "))]
    Rejected {
        /// Every failed rule, in the policy's order.
        reasons: Vec<String>,
        /// Who the node is: its verified (authentic, but not accepted)
        /// identity, so that a rejection can name the node first.
        node: Option<Box<RejectedNode>>,
    },

    /// TLS 1.2 was offered or attempted; RA-TLS is TLS 1.3 only.
    #[error("TLS 1.2 is not supported: RA-TLS requires TLS 1.3")]
    Tls12NotSupported,

    /// The TLS handshake signature does not verify with the certificate's
    /// key (the peer does not hold the attested key).
    #[error("handshake signature invalid: {0}")]
    HandshakeSignature(String),

    /// A rustls error (configuration or connection).
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),

    /// Key generation or certificate signing failed.
    #[error("key/certificate generation: {0}")]
    Generation(String),

    /// The evidence provider failed (no TEE device, kernel error).
    #[error("evidence provider {provider}: {source}")]
    Provider {
        /// Provider name ("tsm", "ioctl", "sim").
        provider: &'static str,
        /// What it reported.
        source: chrysalis_attestation::Error,
    },
}

/// The verified identity of a node the policy rejected (authentic evidence,
/// not accepted): what a client prints before the reasons.
#[derive(Debug, Clone)]
pub struct RejectedNode {
    /// The registers and launch identity the evidence proved.
    pub identity: chrysalis_attestation::Identity,
    /// The TCB status the verifier derived.
    pub tcb_status: chrysalis_attestation::TcbStatus,
    /// True when the evidence chained to a simulated root.
    pub simulated: bool,
}

impl Error {
    /// The family of this error.
    pub fn category(&self) -> ErrorCategory {
        match self {
            Error::Certificate(_)
            | Error::MissingExtension { .. }
            | Error::UnknownCriticalExtension(_)
            | Error::Claims(_)
            | Error::UnsupportedKey(_)
            | Error::Collateral(_)
            | Error::NoCollateral { .. }
            | Error::InvalidNonce(_)
            | Error::FreshEvidence(_) => ErrorCategory::Malformed,
            Error::Expired { .. }
            | Error::NotYetValid { .. }
            | Error::BadSignature(_)
            | Error::EvidenceNotBound { .. }
            | Error::KeyNotBound(_)
            | Error::ClaimsMismatch(_)
            | Error::NonceMismatch { .. }
            | Error::KeyMismatch(_)
            | Error::HandshakeSignature(_)
            | Error::NotInBatch { .. }
            | Error::StaleEvidence { .. } => ErrorCategory::Verification,
            Error::Rejected { .. } => ErrorCategory::Rejected,
            Error::Attestation(e) => e.category(),
            Error::Tls12NotSupported | Error::Tls(_) => ErrorCategory::Connection,
            Error::Generation(_) | Error::Provider { .. } => ErrorCategory::Io,
        }
    }

    /// The reasons and the node's verified identity, when this is a policy
    /// rejection ([`Error::Rejected`]).
    pub fn rejection(&self) -> Option<(&[String], Option<&RejectedNode>)> {
        match self {
            Error::Rejected { reasons, node } => Some((reasons.as_slice(), node.as_deref())),
            _ => None,
        }
    }

    /// Finds this crate's error inside an error returned by a TLS
    /// connection (a `std::io::Error` from tokio-rustls, a `rustls::Error`
    /// from a connection object), where rustls wrapped it as
    /// `InvalidCertificate(Other(..))` or `Other(..)`. `None` when the
    /// failure did not come from an RA-TLS verifier (e.g. a protocol
    /// version mismatch).
    pub fn find_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = cur {
            if let Some(ours) = e.downcast_ref::<Error>() {
                return Some(ours);
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if let Some(inner) = io.get_ref() {
                    cur = Some(inner as &(dyn std::error::Error + 'static));
                    continue;
                }
            }
            if let Some(tls) = e.downcast_ref::<rustls::Error>() {
                let other = match tls {
                    rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o)) => o,
                    rustls::Error::Other(o) => o,
                    _ => return None,
                };
                return other.0.downcast_ref::<Error>();
            }
            cur = e.source();
        }
        None
    }

    /// Wraps this error for rustls so that it travels through a handshake
    /// and can be found again with [`Error::find_in`]. Certificate problems
    /// become `InvalidCertificate` (the peer gets a `bad_certificate`
    /// alert); the rest become `Other`.
    pub(crate) fn into_rustls(self) -> rustls::Error {
        let other = rustls::OtherError(std::sync::Arc::new(self));
        match other.0.downcast_ref::<Error>().map(Error::category) {
            Some(ErrorCategory::Connection) | Some(ErrorCategory::Io) | None => {
                rustls::Error::Other(other)
            }
            _ => rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)),
        }
    }

    pub(crate) fn cert(detail: impl std::fmt::Display) -> Self {
        Error::Certificate(detail.to_string())
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
