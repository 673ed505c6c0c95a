//! Errors of the agent library (start-up and background tasks). Errors
//! answered to HTTP clients are [`crate::api_error::ApiError`].

/// What went wrong, naming the setting, file or address involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid (message names the key or flag).
    #[error("configuration: {0}")]
    Config(String),
    /// An I/O operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A listening socket could not be bound:
    /// `cannot listen on ADDR: address already in use`.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why, in lower case without the OS error number.
        reason: String,
    },
    /// The evidence provider could not be opened or failed.
    #[error("evidence provider {provider}: {message}")]
    Provider {
        /// Provider name.
        provider: String,
        /// The cause.
        message: String,
    },
    /// Building the RA-TLS identity or TLS configuration failed.
    #[error("TLS identity: {0}")]
    Identity(String),
}

impl Error {
    /// The error for a listener that could not be bound to `addr`.
    pub fn listen(addr: std::net::SocketAddr, e: &std::io::Error) -> Self {
        use std::io::ErrorKind;
        let reason = match e.kind() {
            ErrorKind::AddrInUse => "address already in use".to_string(),
            ErrorKind::AddrNotAvailable => "address not available on this machine".to_string(),
            ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => {
                // "Some text (os error N)" -> "some text".
                let text = e.to_string();
                let text = text
                    .rsplit_once(" (os error")
                    .map_or(text.as_str(), |(t, _)| t)
                    .to_string();
                let mut c = text.chars();
                match c.next() {
                    Some(f) => f.to_lowercase().chain(c).collect(),
                    None => text,
                }
            }
        };
        Self::Listen { addr, reason }
    }
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_errors_name_the_address_and_the_cause_once() {
        let addr: std::net::SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let e = Error::listen(addr, &std::io::Error::from(std::io::ErrorKind::AddrInUse));
        assert_eq!(
            e.to_string(),
            "cannot listen on 127.0.0.1:8443: address already in use"
        );
        assert!(std::error::Error::source(&e).is_none());
        let os = std::io::Error::from_raw_os_error(99);
        let e = Error::listen(addr, &os).to_string();
        assert!(!e.contains("os error"), "{e}");
    }
}
