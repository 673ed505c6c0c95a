//! Shared helpers for Chrysalis's cross-crate tests.
//!
//! Real attestation vectors live in `../shared/vectors` beside the repository
//! (see its MANIFEST.md); they are never copied into the repository. Tests
//! that need them call [`vectors`] and skip with a clear message when the
//! directory is absent, so a fresh clone still passes.

use std::path::PathBuf;

/// The vectors directory, or `None` (after printing why the test is skipped).
pub fn vectors() -> Option<PathBuf> {
    let dir = std::env::var_os("CHRYSALIS_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"));
    if dir.join("MANIFEST.md").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: attestation vectors not found at {} (set CHRYSALIS_VECTORS or place ../shared beside the repository)",
            dir.display()
        );
        None
    }
}

/// Parses an RFC 3339 time for tests.
pub fn at(s: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .expect("test time")
}
