//! The one error type of this crate and the families the Python exceptions
//! are built from.

use std::time::Duration;

use chrysalis_ratls::ErrorCategory;

/// Which Python exception an [`Error`] becomes (see `chrysalis/__init__.py`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The peer's certificate, evidence, claims or collateral could not be
    /// decoded, or it carries no RA-TLS evidence at all
    /// (`chrysalis.MalformedEvidence`, a `VerificationFailed`).
    Malformed,
    /// A cryptographic check failed: signature, chain, stale collateral,
    /// expired certificate, key not bound, handshake signature
    /// (`chrysalis.VerificationFailed`).
    Verification,
    /// The evidence is authentic but the policy rejects it
    /// (`chrysalis.PolicyRejected`).
    Rejected,
    /// The TCP connection or the TLS protocol failed for reasons other than
    /// the peer's evidence (`chrysalis.ConnectionFailed`).
    Connection,
    /// A connect, handshake, read or write took longer than allowed
    /// (`chrysalis.ConnectionTimedOut`, a `ConnectionFailed`).
    Timeout,
    /// The policy file or text is unreadable or invalid
    /// (`chrysalis.InvalidPolicy`).
    InvalidPolicy,
    /// A caller's argument is unusable: URL, host name, timeout
    /// (Python `ValueError`).
    InvalidArgument,
}

/// Everything that can go wrong in the client.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The RA-TLS verifier refused the peer (from inside the handshake or
    /// an offline verification). `category` is the verifier's family;
    /// `reasons` lists every failed policy rule when it is `Rejected`.
    #[error("{peer}: {message}")]
    Verification {
        /// `HOST:PORT` of the peer, or `certificate` offline.
        peer: String,
        /// The verifier's error family.
        category: ErrorCategory,
        /// The verifier's message (what was wrong).
        message: String,
        /// Every failed policy rule (empty unless rejected by policy).
        reasons: Vec<String>,
    },

    /// The policy could not be read or is invalid.
    #[error("invalid policy: {0}")]
    Policy(String),

    /// The URL, host, port or another argument is unusable.
    #[error("invalid argument: {0}")]
    Argument(String),

    /// Resolving or connecting to the peer failed.
    #[error("connect to {peer}: {source}")]
    Connect {
        /// `HOST:PORT`.
        peer: String,
        /// What the system reported.
        source: std::io::Error,
    },

    /// A step took longer than its limit.
    #[error("{peer}: {what} timed out after {after:?}")]
    Timeout {
        /// `HOST:PORT`.
        peer: String,
        /// `connect`, `TLS handshake`, `read` or `write`.
        what: &'static str,
        /// The limit.
        after: Duration,
    },

    /// TLS failed for a reason that is not the peer's evidence (protocol
    /// version, alert from the peer, corrupt record).
    #[error("{peer}: TLS: {source}")]
    Tls {
        /// `HOST:PORT`.
        peer: String,
        /// The rustls error.
        source: rustls::Error,
    },

    /// Reading or writing the connection failed.
    #[error("{peer}: {what}: {source}")]
    Io {
        /// `HOST:PORT`.
        peer: String,
        /// `read`, `write` or `TLS handshake`.
        what: &'static str,
        /// What the system reported.
        source: std::io::Error,
    },

    /// The connection is closed (by `close()` or after an error).
    #[error("{peer}: the connection is closed")]
    Closed {
        /// `HOST:PORT`.
        peer: String,
    },
}

impl Error {
    /// A node-verification failure for `peer`: a rejection keeps every
    /// reason; the category decides the Python exception.
    pub fn from_client(peer: &str, e: &chrysalis_client::Error) -> Self {
        if let chrysalis_client::Error::TimedOut { after, .. } = e {
            return Error::Timeout {
                peer: peer.to_owned(),
                what: "TLS handshake",
                after: *after,
            };
        }
        let reasons = e
            .rejected_node()
            .map(|(r, _)| r.to_vec())
            .unwrap_or_default();
        Error::Verification {
            peer: peer.to_owned(),
            category: e.category(),
            message: e.to_string(),
            reasons,
        }
    }

    /// The Python exception family.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Verification { category, .. } => match category {
                ErrorCategory::Malformed => ErrorKind::Malformed,
                ErrorCategory::Verification => ErrorKind::Verification,
                ErrorCategory::Rejected => ErrorKind::Rejected,
                // TLS 1.2 offered, key generation: not about the evidence.
                ErrorCategory::Connection | ErrorCategory::Io => ErrorKind::Connection,
            },
            Error::Policy(_) => ErrorKind::InvalidPolicy,
            Error::Argument(_) => ErrorKind::InvalidArgument,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Connect { .. } | Error::Tls { .. } | Error::Io { .. } | Error::Closed { .. } => {
                ErrorKind::Connection
            }
        }
    }

    /// Every failed policy rule (empty unless the policy rejected the peer).
    pub fn reasons(&self) -> &[String] {
        match self {
            Error::Verification { reasons, .. } => reasons,
            _ => &[],
        }
    }

    /// The verifier's error as ours, for `peer`.
    pub fn from_ratls(peer: &str, e: &chrysalis_ratls::Error) -> Self {
        let reasons = match e {
            chrysalis_ratls::Error::Rejected { reasons, .. } => reasons.clone(),
            _ => Vec::new(),
        };
        Error::Verification {
            peer: peer.to_string(),
            category: e.category(),
            message: e.to_string(),
            reasons,
        }
    }

    /// Classifies an I/O error from a TLS stream during `what`: the RA-TLS
    /// verifier's own error when it is inside, a timeout when the socket's
    /// deadline passed, a TLS error, or plain I/O.
    pub fn from_io(peer: &str, what: &'static str, e: std::io::Error, limit: Duration) -> Self {
        if let Some(ours) = chrysalis_ratls::Error::find_in(&e) {
            return Error::from_ratls(peer, ours);
        }
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            return Error::Timeout {
                peer: peer.to_string(),
                what,
                after: limit,
            };
        }
        if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
            return Error::Tls {
                peer: peer.to_string(),
                source: tls.clone(),
            };
        }
        Error::Io {
            peer: peer.to_string(),
            what,
            source: e,
        }
    }

    /// Classifies a rustls error (sans-I/O session).
    pub fn from_rustls(peer: &str, e: rustls::Error) -> Self {
        if let Some(ours) = chrysalis_ratls::Error::find_in(&e) {
            return Error::from_ratls(peer, ours);
        }
        Error::Tls {
            peer: peer.to_string(),
            source: e,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_keeps_every_reason_and_maps_to_rejected() {
        let e = chrysalis_ratls::Error::Rejected {
            reasons: vec!["simulated".into(), "debug".into()],
            node: None,
        };
        let ours = Error::from_ratls("h:1", &e);
        assert_eq!(ours.kind(), ErrorKind::Rejected);
        assert_eq!(ours.reasons(), ["simulated", "debug"]);
        assert!(ours
            .to_string()
            .starts_with("h:1: rejected by policy: simulated; debug"));
    }

    #[test]
    fn verifier_error_is_found_inside_io_and_rustls_wrappers() {
        let inner = chrysalis_ratls::Error::KeyNotBound("other key".into());
        let other = rustls::OtherError(std::sync::Arc::new(inner));
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other));
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls.clone());
        let a = Error::from_io("h:1", "TLS handshake", io, Duration::from_secs(1));
        assert_eq!(a.kind(), ErrorKind::Verification);
        assert!(
            a.to_string()
                .contains("key not bound in evidence: other key"),
            "{a}"
        );
        let b = Error::from_rustls("h:1", tls);
        assert_eq!(b.kind(), ErrorKind::Verification);
    }

    #[test]
    fn io_errors_are_timeouts_tls_or_io() {
        let t = Error::from_io(
            "h:1",
            "read",
            std::io::Error::from(std::io::ErrorKind::WouldBlock),
            Duration::from_secs(2),
        );
        assert_eq!(t.kind(), ErrorKind::Timeout);
        assert_eq!(t.to_string(), "h:1: read timed out after 2s");
        let tls = Error::from_io(
            "h:1",
            "read",
            std::io::Error::new(std::io::ErrorKind::InvalidData, rustls::Error::DecryptError),
            Duration::from_secs(2),
        );
        assert!(matches!(tls, Error::Tls { .. }), "{tls:?}");
        let io = Error::from_io(
            "h:1",
            "write",
            std::io::Error::from(std::io::ErrorKind::BrokenPipe),
            Duration::from_secs(2),
        );
        assert_eq!(io.kind(), ErrorKind::Connection);
    }
}
