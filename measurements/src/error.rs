//! The crate's one error type. Every message names what was wrong: the file,
//! the field, the offset.

use std::path::PathBuf;

/// Everything that can go wrong computing or replaying measurements.
///
/// Shared by the TDX, SEV-SNP and dm-verity modules; each appends its own
/// variants at the end.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A file the computation needs does not exist.
    #[error("missing {what}: {} does not exist", path.display())]
    MissingFile {
        /// What the file was supposed to be ("kernel", "firmware", …).
        what: String,
        /// Where it was looked for.
        path: PathBuf,
    },

    /// An artifact (firmware, kernel, initrd, …) is not what it must be.
    #[error("{file}: {what}")]
    BadArtifact {
        /// The file, or a name for in-memory input.
        file: String,
        /// What is wrong or missing, e.g. "firmware has no TDVF metadata".
        what: String,
    },

    /// A parameter or configuration value is invalid.
    #[error("invalid input: {0}")]
    BadInput(String),

    // ---- TDX (src/tdx) ----
    /// An event log (TCG2 / CCEL binary or dstack JSON) is malformed.
    #[error("event log {source_name}: {what} (at byte {offset})")]
    EventLog {
        /// The log's file name, or a name for in-memory input.
        source_name: String,
        /// Byte offset in the log where the problem was found (0 for JSON).
        offset: usize,
        /// What is wrong.
        what: String,
    },

    /// The requested computation needs an input that was not supplied
    /// (e.g. RTMR0 without QEMU's ACPI tables).
    #[error("{0}")]
    NotComputable(String),
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
