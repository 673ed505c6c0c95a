//! The exit codes of the `chrysalis` command: the only place they are
//! defined. Libraries return typed errors classified into the workspace's
//! one [`ErrorCategory`]; [`code`] maps a category onto its exit code.

use chrysalis_attestation::{Error, ErrorCategory};

/// Accepted / success.
pub const OK: i32 = 0;
/// I/O, usage or environment problem.
pub const IO: i32 = 1;
/// Malformed input (evidence, collateral or policy could not be decoded).
pub const MALFORMED: i32 = 2;
/// Cryptographic verification failed (signatures, chain, expired/revoked collateral).
pub const VERIFICATION: i32 = 3;
/// Authentic but rejected by policy or TCB status.
pub const REJECTED: i32 = 4;
/// The TLS connection failed for a reason other than the peer's certificate.
pub const CONNECTION: i32 = 5;
/// A build or reproduction cannot start: an input it is pinned to (a locked
/// package, the recorded commit, the recorded toolchain) is not available
/// here. Each missing input is named; nothing was built.
pub const UNAVAILABLE: i32 = 6;
/// Standard output was closed by its reader (`chrysalis … | head`): the
/// command stopped there, quietly, and whatever it had not printed yet —
/// a verdict included — was never reached. 141 is what a shell reports for
/// a tool killed by SIGPIPE, so `set -o pipefail` scripts see the usual
/// value.
pub const STDOUT_CLOSED: i32 = 141;

/// The exit code of an error category. Exhaustive on purpose: a new
/// category does not compile until it has a code here (and in the README).
pub fn code(category: ErrorCategory) -> i32 {
    match category {
        ErrorCategory::Malformed => MALFORMED,
        ErrorCategory::Verification => VERIFICATION,
        ErrorCategory::Rejected => REJECTED,
        ErrorCategory::Connection => CONNECTION,
        ErrorCategory::Io => IO,
    }
}

/// The exit code for an attestation-core error.
pub fn code_for(e: &Error) -> i32 {
    code(e.category())
}

/// The category name used in `--json` output.
pub fn category_name(e: &Error) -> &'static str {
    e.category().name()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_has_its_documented_code() {
        assert_eq!(code(ErrorCategory::Io), 1);
        assert_eq!(code(ErrorCategory::Malformed), 2);
        assert_eq!(code(ErrorCategory::Verification), 3);
        assert_eq!(code(ErrorCategory::Rejected), 4);
        assert_eq!(code(ErrorCategory::Connection), 5);
    }
}
