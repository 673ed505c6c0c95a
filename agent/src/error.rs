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

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
