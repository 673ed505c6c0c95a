//! Reading artifact files: whole (with a size limit where the input is
//! untrusted) or streamed through a hash. A missing file is
//! [`Error::MissingFile`] naming the role it was to play. A leaf module.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use sha2::{Digest, Sha256, Sha384};

use super::digest::Digest384;
use crate::error::{Error, Result};

/// Reads a whole file; a missing file is [`Error::MissingFile`] naming
/// `what` it was supposed to be.
pub(crate) fn read_file(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| io_error(path, what, source))
}

/// Reads a whole file of at most `max` bytes.
pub(crate) fn read_file_limited(path: &Path, what: &str, max: u64) -> Result<Vec<u8>> {
    let f = File::open(path).map_err(|source| io_error(path, what, source))?;
    let mut out = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut out)
        .map_err(|source| io_error(path, what, source))?;
    if out.len() as u64 > max {
        return Err(Error::BadArtifact {
            file: path.display().to_string(),
            what: format!("{what} is larger than {max} bytes"),
        });
    }
    Ok(out)
}

fn io_error(path: &Path, what: &str, source: std::io::Error) -> Error {
    if source.kind() == std::io::ErrorKind::NotFound {
        Error::MissingFile {
            what: what.into(),
            path: path.to_path_buf(),
        }
    } else {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

fn stream<D: Digest>(path: &Path, what: &str) -> Result<(D, u64)> {
    let f = File::open(path).map_err(|source| io_error(path, what, source))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut h = D::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = r
            .read(&mut buf)
            .map_err(|source| io_error(path, what, source))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((h, total))
}

/// SHA-256 and size of a file, read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> Result<([u8; 32], u64)> {
    let (h, n) = stream::<Sha256>(path, "file")?;
    Ok((h.finalize().into(), n))
}

/// SHA-384 and size of a file (the initrd digest RTMR2 extends).
pub fn sha384_file(path: &Path) -> Result<(Digest384, u64)> {
    let (h, n) = stream::<Sha384>(path, "file")?;
    Ok((h.finalize().into(), n))
}
