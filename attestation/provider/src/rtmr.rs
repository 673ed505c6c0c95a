//! Extending the TDX runtime measurement register RTMR3 from the guest.
//!
//! Linux ≥ 6.16 exposes the TD's measurement registers under
//! `/sys/devices/virtual/misc/tdx_guest/measurements/` (the "tsm-mr"
//! interface); writing 48 bytes to `rtmr3:sha384` extends RTMR3 with them:
//! `RTMR3 := SHA-384(RTMR3 ‖ digest)`. Older kernels have no upstream way to
//! extend an RTMR from user space, so the call fails with the path it
//! looked for instead of pretending.
//!
//! SEV-SNP has no runtime registers: its launch-time `HOST_DATA` (32 bytes
//! the host sets when it starts the guest) carries a digest of the host's
//! configuration instead, and the agent compares it before serving.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrysalis_attestation::error::{Error, Result};

/// The sysfs directory of the TD's measurement registers.
pub const TDX_MEASUREMENTS_DIR: &str = "/sys/devices/virtual/misc/tdx_guest/measurements";

/// The file that extends RTMR3 (SHA-384 bank).
pub fn rtmr3_path(dir: &Path) -> PathBuf {
    dir.join("rtmr3:sha384")
}

/// Extends RTMR3 with `digest` through the sysfs file under `dir`
/// (normally [`TDX_MEASUREMENTS_DIR`]). One write of exactly 48 bytes, as
/// the kernel requires.
pub fn extend_rtmr3_sysfs(dir: &Path, digest: &[u8; 48]) -> Result<()> {
    let path = rtmr3_path(dir);
    if !path.exists() {
        return Err(Error::Unsupported(format!(
            "{} does not exist: extending RTMR3 needs Linux >= 6.16 with the TDX guest driver \
             (tsm-mr measurement registers)",
            path.display()
        )));
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|e| Error::Io {
            path: path.clone(),
            source: e,
        })?;
    let n = f.write(digest).map_err(|e| Error::Io {
        path: path.clone(),
        source: e,
    })?;
    if n != digest.len() {
        return Err(Error::Io {
            path,
            source: std::io::Error::other(format!("short write: {n} of 48 bytes extended")),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_interface_names_the_path_and_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let e = extend_rtmr3_sysfs(dir.path(), &[0; 48]).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("rtmr3:sha384") && msg.contains("6.16"),
            "{msg}"
        );
    }

    #[test]
    fn writes_exactly_the_digest() {
        // A regular file stands in for the sysfs attribute.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(rtmr3_path(dir.path()), b"").unwrap();
        extend_rtmr3_sysfs(dir.path(), &[7; 48]).unwrap();
        assert_eq!(std::fs::read(rtmr3_path(dir.path())).unwrap(), vec![7; 48]);
    }
}
