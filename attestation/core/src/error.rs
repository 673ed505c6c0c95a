//! The one error type of this crate.
//!
//! Errors fall into three families that callers (the CLI's exit codes, the
//! RA-TLS verifiers) must tell apart: the input was malformed, a
//! cryptographic or collateral check failed, or the evidence is authentic
//! but not acceptable. [`Error::category`] gives that family.

use std::path::PathBuf;

/// Where in a byte string a parser gave up, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{structure}.{field} at offset {offset}: {reason}")]
pub struct ParseError {
    /// The wire structure being parsed, e.g. `TdxQuote` or `SnpReport`.
    pub structure: &'static str,
    /// The field that could not be read, e.g. `header.version`.
    pub field: &'static str,
    /// Byte offset of that field from the start of the input.
    pub offset: usize,
    /// What was wrong with it.
    pub reason: String,
}

/// Which family an error belongs to. The one category enum of the
/// workspace: the RA-TLS, GPU and Python crates classify their errors into
/// it too, and only the `chrysalis` command maps it onto exit codes (its
/// `exit` module; the README documents them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCategory {
    /// The input could not be decoded: evidence, certificate, collateral,
    /// policy, GPU report or RIM.
    Malformed,
    /// A signature, certificate chain, CRL, nonce or collateral validity
    /// check failed, or the evidence is not bound to what it should be.
    Verification,
    /// The evidence is authentic but a policy or TCB rule rejects it.
    Rejected,
    /// A TLS connection failed for reasons other than the peer's
    /// certificate (protocol version, handshake I/O, time-out).
    Connection,
    /// A file, network, driver or local environment operation failed (no
    /// TEE interface, key generation, unreadable file).
    Io,
}

impl ErrorCategory {
    /// The family's name as used in `--json` output
    /// (`{"category": NAME, "message": ...}`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorCategory::Malformed => "malformed",
            ErrorCategory::Verification => "verification",
            ErrorCategory::Rejected => "rejected",
            ErrorCategory::Connection => "connection",
            ErrorCategory::Io => "io",
        }
    }
}

/// Everything that can go wrong while handling evidence.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A wire structure (quote, report, certificate data) is malformed.
    #[error("malformed evidence: {0}")]
    Parse(#[from] ParseError),

    /// An input file or value is not in any accepted encoding.
    #[error("malformed input: {0}")]
    Encoding(String),

    /// Collateral (PCCS JSON, CRLs, certificates) could not be decoded.
    #[error("malformed collateral: {0}")]
    MalformedCollateral(String),

    /// A policy file could not be read or is invalid.
    #[error("invalid policy: {0}")]
    InvalidPolicy(String),

    /// A signature or certificate-chain check failed.
    #[error("verification failed at {step}: {detail}")]
    Verification {
        /// The step of the verification that failed (e.g. `quote signature`).
        step: &'static str,
        /// Human-readable details.
        detail: String,
    },

    /// Collateral is outside its validity window (fails closed).
    #[error("stale collateral: {0}")]
    StaleCollateral(String),

    /// A certificate in the chain is revoked.
    #[error("revoked: {0}")]
    Revoked(String),

    /// The evidence is authentic but not acceptable (TCB status, debug, ...).
    #[error("rejected: {0}")]
    Rejected(String),

    /// The requested operation is not supported for this kind of evidence or
    /// on this machine (e.g. no TEE device).
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// File system error, with the path it concerned.
    #[error("{path}: {source}")]
    Io {
        /// The path being read or written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A network fetch failed (collateral, certificates).
    #[error("fetch {url}: {detail}")]
    Fetch {
        /// The URL that was requested.
        url: String,
        /// What went wrong.
        detail: String,
    },
}

impl Error {
    /// The family of this error, for exit codes and typed client errors.
    pub fn category(&self) -> ErrorCategory {
        match self {
            Error::Parse(_) | Error::Encoding(_) | Error::MalformedCollateral(_) => {
                ErrorCategory::Malformed
            }
            Error::InvalidPolicy(_) => ErrorCategory::Malformed,
            Error::Verification { .. } | Error::StaleCollateral(_) | Error::Revoked(_) => {
                ErrorCategory::Verification
            }
            Error::Rejected(_) => ErrorCategory::Rejected,
            Error::Unsupported(_) | Error::Io { .. } | Error::Fetch { .. } => ErrorCategory::Io,
        }
    }

    /// Shorthand for an [`Error::Verification`].
    pub fn verification(step: &'static str, detail: impl std::fmt::Display) -> Self {
        Error::Verification {
            step,
            detail: detail.to_string(),
        }
    }

    /// Shorthand for an [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
