//! The one error type of the simulator's configuration: what was wrong
//! with a `--sim-set FIELD=VALUE`, a `--sim-release`/`--sim-configuration`
//! choice, or the simulated hardware behind them.

use chrysalis_attestation::{ErrorCategory, Tee};

/// What went wrong configuring the simulated TEE.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `--sim-set` argument without `=`.
    #[error("--sim-set {input:?}: expected FIELD=VALUE (e.g. rtmr0=<96 hex digits> or vmpl=1)")]
    MissingEquals {
        /// The argument as given.
        input: String,
    },
    /// A field name no TD report or SNP report has (or one the simulator
    /// cannot set).
    #[error("--sim-set: unknown field {field:?}; fields: {known}")]
    UnknownField {
        /// The name given.
        field: String,
        /// Every settable field, comma-separated.
        known: String,
    },
    /// A byte field whose value is not hex, or not exactly its length.
    #[error(
        "--sim-set {field}: expected {expected} bytes ({} hex digits, report byte order, no 0x), {got}",
        expected * 2
    )]
    WrongLength {
        /// The field.
        field: &'static str,
        /// Its length in bytes.
        expected: usize,
        /// What was given instead (e.g. `got 3 bytes`, `got 95 hex digits`).
        got: String,
    },
    /// An integer field whose value is not decimal or `0x`-hex, or does
    /// not fit.
    #[error(
        "--sim-set {field}: {value:?} is not a {bits}-bit unsigned integer (decimal without leading zeros, e.g. 17, or 0x-hex, e.g. 0x11)"
    )]
    BadInteger {
        /// The field.
        field: &'static str,
        /// Its width in bits.
        bits: u32,
        /// The value given.
        value: String,
    },
    /// A field of the other TEE's report.
    #[error(
        "--sim-set {field}: a field of the {field_tee} report, but this simulator plays {tee}"
    )]
    WrongTee {
        /// The field.
        field: &'static str,
        /// The TEE whose report has it.
        field_tee: Tee,
        /// The TEE simulated.
        tee: Tee,
    },
    /// The chosen configuration has no values for the TEE asked for, or
    /// none at all.
    #[error("{label}: {message}")]
    Configuration {
        /// `release / configuration`.
        label: String,
        /// What is missing.
        message: String,
    },
    /// A register value in a published `measurements.json` is not hex of
    /// the right length (a defect of the release).
    #[error("{label}: {register} in measurements.json is not {len} bytes of hex")]
    BadPublishedValue {
        /// `release / configuration`.
        label: String,
        /// The register.
        register: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// No such release or configuration.
    #[error(transparent)]
    Release(#[from] chrysalis_releases::Error),
    /// The simulated hardware could not be created.
    #[error(transparent)]
    Attestation(#[from] chrysalis_attestation::Error),
}

impl Error {
    /// The category scripts see: a bad `--sim-set` or release choice is
    /// malformed input; the rest keep their own category.
    pub fn category(&self) -> ErrorCategory {
        match self {
            Error::Release(e) => e.category(),
            Error::Attestation(e) => e.category(),
            _ => ErrorCategory::Malformed,
        }
    }
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
