//! Errors of the release catalogue.

use chrysalis_attestation::ErrorCategory;

/// What went wrong reading or selecting releases.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `measurements.json` is not valid (the message names the file and
    /// the field).
    #[error("{origin}: {message}")]
    InvalidManifest {
        /// Where the manifest came from (release name or path).
        origin: String,
        /// What is wrong with it.
        message: String,
    },
    /// `--release NAME` names no published release.
    #[error("no published release named {name:?} (published: {known})")]
    UnknownRelease {
        /// The name asked for.
        name: String,
        /// The names that exist, comma-separated.
        known: String,
    },
    /// A configuration name that the release does not have.
    #[error("release {release} has no configuration {name:?} (it has: {known})")]
    UnknownConfiguration {
        /// The release.
        release: String,
        /// The name asked for.
        name: String,
        /// The names that exist, comma-separated.
        known: String,
    },
    /// A file or directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The category scripts see (exit codes are the CLI's business).
    pub fn category(&self) -> ErrorCategory {
        match self {
            Error::InvalidManifest { .. } => ErrorCategory::Malformed,
            Error::UnknownRelease { .. } | Error::UnknownConfiguration { .. } => ErrorCategory::Io,
            Error::Io { .. } => ErrorCategory::Io,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
