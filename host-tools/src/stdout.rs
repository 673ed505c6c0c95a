//! Standard output of `chrysalis`, for the `println!`/`print!` macros that
//! main.rs defines in place of std's.
//!
//! Why: std's `println!` panics when the reader of a pipe has gone
//! (`chrysalis completions bash | head -1`), which prints a backtrace and
//! exits 101. Here a closed standard output unwinds with a typed payload
//! ([`Closed`]) — so destructors run (temporary directories are removed,
//! nothing half-written is left behind) — and [`run`] turns it into
//! [`exit::STDOUT_CLOSED`] without a word. Never exit 0 there: the command
//! stopped where it was, so a verdict it had not printed yet was never
//! reached.

use std::fmt;
use std::io::{self, Write};
use std::panic::{self, AssertUnwindSafe};

use crate::exit;

/// Payload of the unwind a closed standard output starts.
pub struct Closed;

/// Writes formatted text, with a newline after it when `newline`.
pub fn write_fmt(args: fmt::Arguments<'_>, newline: bool) {
    let mut out = io::stdout().lock();
    let r = out.write_fmt(args).and_then(|()| {
        if newline {
            out.write_all(b"\n")
        } else {
            Ok(())
        }
    });
    settle(r);
}

/// Writes bytes as they are and flushes them.
pub fn write_bytes(bytes: &[u8]) {
    let mut out = io::stdout().lock();
    settle(out.write_all(bytes).and_then(|()| out.flush()));
}

fn settle(r: io::Result<()>) {
    match r {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => panic::panic_any(Closed),
        Err(e) => panic!("failed printing to stdout: {e}"),
    }
}

/// Runs a command: its exit code, or [`exit::STDOUT_CLOSED`] when its
/// standard output was closed under it. Every other panic goes on as before
/// (with the usual message).
pub fn run(command: impl FnOnce() -> i32) -> i32 {
    let default_hook = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<Closed>().is_none() {
            default_hook(info)
        }
    }));
    match panic::catch_unwind(AssertUnwindSafe(command)) {
        Ok(code) => code,
        Err(payload) if payload.downcast_ref::<Closed>().is_some() => exit::STDOUT_CLOSED,
        Err(payload) => panic::resume_unwind(payload),
    }
}
