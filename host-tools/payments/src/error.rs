//! The crate's error type.

/// Everything that can go wrong with a receipt or a voucher.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A TON cell or BOC could not be built or parsed.
    #[error("TON cell: {0}")]
    Cell(#[from] tonlib_core::cell::TonCellError),
    /// The encoded form is malformed (names what was wrong).
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// Which wire format.
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A field is out of range.
    #[error("{field}: {detail}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A signature does not verify under the given key.
    #[error("{what}: signature does not verify under {key}")]
    BadSignature {
        /// What was signed (receipt or voucher).
        what: &'static str,
        /// Which key (hex prefix or description).
        key: String,
    },
    /// The public key is of a type receipts cannot be signed with.
    #[error("public key: {0}")]
    UnsupportedKey(String),
    /// Signing failed.
    #[error("signing: {0}")]
    Signing(String),
    /// A receipt that verifies but does not match what was asked,
    /// received or agreed (the client refuses to pay it).
    #[error("usage receipt refused: {0}")]
    Refused(String),
    /// A receipt that charges more than the channel's price, or more
    /// tokens than the answer reported.
    #[error("usage receipt refused (overcharge): {0}")]
    Overcharge(String),
    /// The channel cannot pay (wrong machine key, deposit used up).
    #[error("channel: {0}")]
    Channel(String),
    /// A channel file could not be read or written.
    #[error("channel file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn malformed(what: &'static str, detail: impl Into<String>) -> Error {
    Error::Malformed {
        what,
        detail: detail.into(),
    }
}
