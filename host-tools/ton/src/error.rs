//! The crate's error type.

/// Everything that can go wrong in `chrysalis-ton`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A cell or BOC could not be built or parsed.
    #[error("TON cell: {0}")]
    Cell(#[from] tonlib_core::cell::TonCellError),
    /// A wallet message could not be built.
    #[error("TON message: {0}")]
    Message(String),
    /// An address did not parse.
    #[error("TON address {input:?}: {detail}")]
    Address {
        /// What was given.
        input: String,
        /// Why it was refused.
        detail: String,
    },
    /// A field of a registry message is out of range (names the field).
    #[error("{field}: {detail}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A key file is unsafe, malformed, or already exists.
    #[error("key file {path}: {detail}")]
    KeyFile {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// The mnemonic is not a valid 24-word TON mnemonic.
    #[error("mnemonic: {0}")]
    Mnemonic(String),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TON HTTP API could not be reached.
    #[error("TON API {url}: network error: {detail} (check --api and your connection, then retry: the same message is resent)")]
    Network {
        /// The request URL (without the API key).
        url: String,
        /// The transport error.
        detail: String,
    },
    /// The TON HTTP API answered HTTP 429.
    #[error("TON API {url}: rate limited (HTTP 429); pass an API key (--api-key / TON_API_KEY) or wait and retry")]
    RateLimited {
        /// The request URL.
        url: String,
    },
    /// The TON HTTP API answered with an error.
    #[error("TON API {url}: HTTP {status}: {detail}")]
    Api {
        /// The request URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The API's error text.
        detail: String,
    },
    /// The API's answer did not have the expected shape.
    #[error("TON API {url}: unexpected answer: {detail}")]
    BadResponse {
        /// The request URL.
        url: String,
        /// What was missing or wrong.
        detail: String,
    },
    /// The message was sent but no transaction appeared in time.
    #[error("no transaction for message {message_hash} after {waited_s} s; it may still land before valid_until {valid_until}: rerun the same command with --seqno {seqno} --valid-until {valid_until} to resend the identical message, never a new one")]
    NotConfirmed {
        /// Hex hash of the external message.
        message_hash: String,
        /// Seconds waited.
        waited_s: u64,
        /// The wallet seqno used.
        seqno: u32,
        /// The message's expiry (unix seconds).
        valid_until: u32,
    },
    /// A getter failed on chain (TVM exit code).
    #[error("get method {method} failed with TVM exit code {exit_code}")]
    GetMethod {
        /// The getter.
        method: String,
        /// The TVM exit code.
        exit_code: i64,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
