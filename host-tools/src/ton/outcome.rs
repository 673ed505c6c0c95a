//! Categories of `chrysalis-ton` errors, and how a command's result is
//! printed (JSON or text, errors included).

use chrysalis_attestation::ErrorCategory;
use serde_json::{json, Value};

use crate::client::Failure;
use crate::exit;

/// A failure of the given category.
pub(super) fn fail(category: ErrorCategory, error: anyhow::Error) -> Failure {
    Failure::new(category, error)
}

fn ton_category(e: &chrysalis_ton::Error) -> ErrorCategory {
    use chrysalis_ton::Error as E;
    match e {
        E::Network { .. }
        | E::RateLimited { .. }
        | E::Api { .. }
        | E::BadResponse { .. }
        | E::NotConfirmed { .. }
        | E::GetMethod { .. } => ErrorCategory::Connection,
        E::KeyFile { .. } | E::Io { .. } => ErrorCategory::Io,
        _ => ErrorCategory::Malformed,
    }
}

/// A `chrysalis-ton` error as a failure with its exit code.
pub(super) fn tf(e: chrysalis_ton::Error) -> Failure {
    fail(ton_category(&e), e.into())
}

/// Prints `result` (JSON or text) and returns the exit code.
pub(super) fn report(result: Result<Value, Failure>, json_out: bool) -> i32 {
    match result {
        Ok(v) => {
            // Null: the command printed its own output (dry runs).
            if json_out && !v.is_null() {
                println!("{v}");
            }
            exit::OK
        }
        Err(f) => {
            if json_out {
                println!(
                    "{}",
                    json!({"ok": false, "error": {"exit_code": f.code(), "message": format!("{:#}", f.error)}})
                );
            } else {
                eprintln!("error: {:#}", f.error);
            }
            f.code()
        }
    }
}
