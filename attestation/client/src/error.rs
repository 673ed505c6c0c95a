//! Errors of node verification.

use chrysalis_attestation::ErrorCategory;

/// Why a node could not be verified (or was refused).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL is not `https://HOST:PORT`.
    #[error("{url}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// TCP connect failed or timed out, or the HTTP exchange broke.
    #[error("{what}: {reason}")]
    Connection {
        /// What was being done (e.g. `connect to 127.0.0.1:8443`).
        what: String,
        /// The underlying failure.
        reason: String,
    },
    /// RA-TLS: the evidence did not verify, did not bind the key, or the
    /// policy rejected it.
    #[error(transparent)]
    RaTls(#[from] chrysalis_ratls::Error),
    /// The TLS handshake failed: the RA-TLS verifier's error travels inside
    /// (found with [`chrysalis_ratls::Error::find_in`]), or the network
    /// broke.
    #[error("{}", handshake_message(.0))]
    Handshake(#[source] std::io::Error),
    /// The evidence bound to our nonce names another configuration than the
    /// certificate's evidence did.
    #[error("the node's fresh evidence matches {fresh} but its certificate matched {certificate}")]
    IdentityChanged {
        /// What the certificate's evidence matched.
        certificate: String,
        /// What the fresh evidence matched.
        fresh: String,
    },
    /// The TLS handshake did not complete in time.
    #[error("{what} timed out after {after:?}")]
    TimedOut {
        /// What was being done (e.g. `127.0.0.1:8443: TLS handshake`).
        what: String,
        /// The limit.
        after: std::time::Duration,
    },
    /// The node answered the fresh-evidence request with something else.
    #[error("fresh evidence request answered HTTP {status}: {body}")]
    FreshEvidenceRefused {
        /// The HTTP status.
        status: u16,
        /// The body (lossy UTF-8, truncated).
        body: String,
    },
    /// GPU evidence is required but missing, or did not verify.
    #[error("GPU evidence: {0}")]
    Gpu(#[from] chrysalis_gpu::Error),
    /// GPU evidence is required (a gpu release, or a GPU policy) but the
    /// node committed to none, or served none.
    #[error("{0}")]
    GpuEvidenceMissing(String),
    /// Selecting releases failed (unknown `--release`, bad manifest).
    #[error(transparent)]
    Releases(#[from] chrysalis_releases::Error),
    /// A policy file could not be loaded.
    #[error(transparent)]
    Policy(#[from] chrysalis_attestation::Error),
    /// The node's RTMR3 event log is missing where required, does not
    /// replay to the verified RTMR3, or holds an event the configuration
    /// does not allow.
    #[error("RTMR3 event log: {0}")]
    RuntimeLog(String),
    /// The platform has no secure random source (for the nonce).
    #[error("no secure random source for the nonce")]
    NoRandom,
}

impl Error {
    /// The category scripts see.
    pub fn category(&self) -> ErrorCategory {
        match self {
            Error::BadUrl { .. } => ErrorCategory::Malformed,
            Error::Connection { .. } | Error::TimedOut { .. } => ErrorCategory::Connection,
            Error::RaTls(e) => e.category(),
            Error::Handshake(e) => chrysalis_ratls::Error::find_in(e)
                .map(chrysalis_ratls::Error::category)
                .unwrap_or(ErrorCategory::Connection),
            Error::IdentityChanged { .. } => ErrorCategory::Verification,
            Error::FreshEvidenceRefused { .. } => ErrorCategory::Verification,
            Error::Gpu(e) => e.category(),
            Error::GpuEvidenceMissing(_) => ErrorCategory::Rejected,
            Error::RuntimeLog(_) => ErrorCategory::Rejected,
            Error::Releases(e) => e.category(),
            Error::Policy(e) => e.category(),
            Error::NoRandom => ErrorCategory::Io,
        }
    }

    /// The verified identity of a node the policy rejected, if that is what
    /// happened (to name the node before the reasons).
    pub fn rejected_node(&self) -> Option<(&[String], Option<&chrysalis_ratls::RejectedNode>)> {
        let ratls = match self {
            Error::RaTls(e) => Some(e),
            Error::Handshake(e) => chrysalis_ratls::Error::find_in(e),
            _ => None,
        };
        ratls.and_then(chrysalis_ratls::Error::rejection)
    }
}

/// A handshake failure in the RA-TLS error's own words when it holds one
/// (rustls wraps it as `InvalidCertificate(Other(..))`, whose display is a
/// debug dump).
fn handshake_message(e: &std::io::Error) -> String {
    match chrysalis_ratls::Error::find_in(e) {
        Some(r) => r.to_string(),
        None => format!("TLS handshake: {e}"),
    }
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
