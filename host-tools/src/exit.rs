//! Mapping of outcomes onto the documented exit codes.

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

/// The exit code for a library error.
pub fn code_for(e: &Error) -> i32 {
    match e.category() {
        ErrorCategory::Malformed => MALFORMED,
        ErrorCategory::Verification => VERIFICATION,
        ErrorCategory::Rejected => REJECTED,
        _ => IO,
    }
}

/// The category name used in `--json` output.
pub fn category_name(e: &Error) -> &'static str {
    match e.category() {
        ErrorCategory::Malformed => "malformed",
        ErrorCategory::Verification => "verification",
        ErrorCategory::Rejected => "rejected",
        _ => "io",
    }
}
