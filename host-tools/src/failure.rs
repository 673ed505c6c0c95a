//! The failure type of the `chrysalis` command: a category (which decides
//! the exit code, [`crate::exit::code`]) and the message to print.

use anyhow::Context as _;
use chrysalis_attestation as att;
use chrysalis_attestation::ErrorCategory;
use chrysalis_ratls as ratls;

use crate::exit;

/// A failure of a `chrysalis` command: its category (the exit code follows from
/// it, in [`exit::code`]) and the message to print. The category is decided
/// where the failure is made, from the typed error of the library that
/// failed (the `From` impls below) or named explicitly — never recovered
/// later by downcasting an erased error.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) category: ErrorCategory,
    pub(crate) error: anyhow::Error,
}

impl Failure {
    /// A failure of the given category.
    pub(crate) fn new(category: ErrorCategory, error: impl Into<anyhow::Error>) -> Self {
        Failure {
            category,
            error: error.into(),
        }
    }

    /// An input or environment problem (exit 1).
    pub(crate) fn io(error: impl Into<anyhow::Error>) -> Self {
        Self::new(ErrorCategory::Io, error)
    }

    /// The exit code of this failure.
    pub(crate) fn code(&self) -> i32 {
        exit::code(self.category)
    }
}

impl From<att::Error> for Failure {
    fn from(e: att::Error) -> Self {
        Self::new(e.category(), e)
    }
}

impl From<ratls::Error> for Failure {
    fn from(e: ratls::Error) -> Self {
        Self::new(e.category(), e)
    }
}

impl From<chrysalis_client::Error> for Failure {
    fn from(e: chrysalis_client::Error) -> Self {
        Self::new(e.category(), e)
    }
}

impl From<chrysalis_releases::Error> for Failure {
    fn from(e: chrysalis_releases::Error) -> Self {
        Self::new(e.category(), e)
    }
}

impl From<chrysalis_gpu::Error> for Failure {
    fn from(e: chrysalis_gpu::Error) -> Self {
        Self::new(e.category(), e)
    }
}

impl From<chrysalis_measurements::Error> for Failure {
    fn from(e: chrysalis_measurements::Error) -> Self {
        use chrysalis_measurements::Error as M;
        let category = match &e {
            M::Io { .. } | M::MissingFile { .. } => ErrorCategory::Io,
            _ => ErrorCategory::Malformed,
        };
        Self::new(category, e)
    }
}

/// `.io_context(..)` on any result: an input or environment failure (exit
/// 1) with a message naming what was being done.
pub(crate) trait IoContext<T> {
    /// Wraps the error as an [`ErrorCategory::Io`] failure with `context`.
    fn io_context(self, context: impl FnOnce() -> String) -> Result<T, Failure>;
}

impl<T, E> IoContext<T> for Result<T, E>
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn io_context(self, context: impl FnOnce() -> String) -> Result<T, Failure> {
        self.with_context(context).map_err(Failure::io)
    }
}

impl<T> IoContext<T> for Option<T> {
    fn io_context(self, context: impl FnOnce() -> String) -> Result<T, Failure> {
        self.ok_or_else(|| Failure::io(anyhow::anyhow!(context())))
    }
}

impl From<serde_json::Error> for Failure {
    /// Encoding our own output as JSON failed (nothing the user gave).
    fn from(e: serde_json::Error) -> Self {
        Self::io(e)
    }
}
