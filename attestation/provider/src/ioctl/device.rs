//! What the SEV-SNP and TDX device providers share: opening a guest device
//! and reading the little-endian fields of the messages it returns.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::path::Path;

use chrysalis_attestation::error::{Error, Result};

/// Opens a guest device read-write, turning "not there" into
/// [`Error::Unsupported`] naming the path.
pub(crate) fn open_device(path: &Path, missing: &str) -> Result<File> {
    match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => Ok(f),
        Err(e)
            if e.kind() == ErrorKind::NotFound
                || matches!(e.raw_os_error(), Some(nix::libc::ENODEV | nix::libc::ENXIO)) =>
        {
            Err(Error::Unsupported(format!(
                "{} does not exist: {missing}",
                path.display()
            )))
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

/// The little-endian u16 at `at`.
pub(crate) fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// The little-endian u32 at `at`.
pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// The little-endian u64 at `at`.
pub(crate) fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
