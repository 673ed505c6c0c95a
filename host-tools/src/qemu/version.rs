//! Which QEMU this is, and which one releases are measured for.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::QemuError;

/// The QEMU version Chrysalis measures TDX configurations for: RTMR0 covers
/// QEMU's ACPI tables, which change between versions (the DSDT grew by 67
/// bytes from 9.2.1 to 10.2.1). Debian trixie-backports' build of it is
/// installed by `ci/qemu-pinned.sh`.
pub const PINNED_QEMU_VERSION: &str = "11.1.3";
/// Environment variable naming the pinned QEMU (the wrapper
/// `ci/qemu-pinned.sh` prints).
pub const QEMU_ENV: &str = "CHRYSALIS_QEMU";
/// How to get the pinned QEMU, for messages.
pub const HOW_TO_GET: &str = "run `bash ci/qemu-pinned.sh` (Debian trixie-backports' QEMU 11.1.3, \
     extracted with its libraries) and set CHRYSALIS_QEMU to the path it prints, or pass --qemu PATH";

/// Longest `--version` output read.
const MAX_OUTPUT: u64 = 4096;

/// A QEMU binary's version, from `qemu --version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuVersion {
    /// `MAJOR.MINOR.PATCH`.
    pub version: String,
    /// The whole first line (with the distribution's package version).
    pub line: String,
}

/// Parses the first line of `qemu-system-x86_64 --version`:
/// `QEMU emulator version 11.1.3 (Debian 1:11.1.3+ds-2~bpo13+1)`.
pub fn parse_version(output: &str) -> Option<QemuVersion> {
    let line = output.lines().next()?.trim();
    let rest = line.strip_prefix("QEMU emulator version ")?;
    let version = rest.split_whitespace().next()?;
    let parts: Vec<&str> = version.split('.').collect();
    let numeric = (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    numeric.then(|| QemuVersion {
        version: version.to_string(),
        line: line.to_string(),
    })
}

/// Runs `qemu --version` (10 s at most).
pub fn probe(qemu: &Path) -> Result<QemuVersion, QemuError> {
    let mut child = Command::new(qemu)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| QemuError::Spawn {
            qemu: qemu.to_path_buf(),
            source,
        })?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(QemuError::Timeout {
                    command: "--version".into(),
                    after: Duration::from_secs(10),
                });
            }
        }
    }
    let mut out = String::new();
    if let Some(s) = child.stdout.take() {
        let _ = s.take(MAX_OUTPUT).read_to_string(&mut out);
    }
    parse_version(&out).ok_or_else(|| {
        QemuError::Malformed(format!(
            "{} --version printed {:?}, not \"QEMU emulator version X.Y.Z\"",
            qemu.display(),
            out.lines().next().unwrap_or("")
        ))
    })
}

/// The QEMU to run: `explicit`, else `$CHRYSALIS_QEMU`, else
/// `qemu-system-x86_64` from `PATH`.
pub fn locate(explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(QEMU_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("qemu-system-x86_64"))
}

/// Probes `qemu` and requires version `wanted`.
pub fn require(qemu: &Path, wanted: &str) -> Result<QemuVersion, QemuError> {
    let v = probe(qemu)?;
    if v.version != wanted {
        return Err(QemuError::WrongVersion {
            qemu: qemu.to_path_buf(),
            found: v.version,
            wanted: wanted.to_string(),
            hint: if wanted == PINNED_QEMU_VERSION {
                HOW_TO_GET.to_string()
            } else {
                format!("the measurements were made for QEMU {wanted}")
            },
        });
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_lines() {
        let v = parse_version(
            "QEMU emulator version 11.1.3 (Debian 1:11.1.3+ds-2~bpo13+1)\nCopyright (c) 2003-2026\n",
        )
        .unwrap();
        assert_eq!(v.version, "11.1.3");
        assert!(v.line.contains("bpo13"));
        assert_eq!(
            parse_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)")
                .unwrap()
                .version,
            "7.2.22"
        );
        assert!(parse_version("qemu 11").is_none());
        assert!(parse_version("QEMU emulator version eleven").is_none());
        assert!(parse_version("").is_none());
    }
}
