//! Running the pinned QEMU for what the measurements need from it, without
//! booting anything: its version, and the ACPI tables it hands a TD for the
//! exact argv `chrysalis launch` uses ([`acpi`]).
//!
//! * [`qtest`]: a bounded, time-limited client of QEMU's qtest protocol;
//! * [`fw_cfg`]: the fw_cfg DMA interface read through it;
//! * [`acpi`]: launch argv → qtest argv, and the three ACPI blobs;
//! * [`version`]: `qemu --version` and the version releases are measured for.

pub mod acpi;
pub mod fw_cfg;
pub mod qtest;
pub mod version;

use std::path::PathBuf;
use std::time::Duration;

use chrysalis_attestation::ErrorCategory;

use crate::failure::Failure;

/// Everything that can go wrong running QEMU for measurements.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QemuError {
    /// The binary could not be started at all.
    #[error("cannot run {}: {source} (get the pinned QEMU with `bash ci/qemu-pinned.sh` and set CHRYSALIS_QEMU to the path it prints)", qemu.display())]
    Spawn {
        /// The binary.
        qemu: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// QEMU started but did not answer (it rejected its arguments).
    #[error("{} did not start under qtest ({cause}); its stderr: {stderr}", qemu.display())]
    Start {
        /// The binary.
        qemu: PathBuf,
        /// QEMU's last words.
        stderr: String,
        /// The protocol failure.
        cause: String,
    },
    /// No answer within the deadline.
    #[error("QEMU did not answer {command:?} within {after:?}")]
    Timeout {
        /// The qtest command.
        command: String,
        /// The deadline.
        after: Duration,
    },
    /// An answer that does not follow the qtest protocol.
    #[error("qtest: {0}")]
    Protocol(String),
    /// fw_cfg or ACPI data that does not have the expected shape.
    #[error("{0}")]
    Malformed(String),
    /// The launch argv holds something the ACPI generator does not know how
    /// to carry over (launch changed: classify the new option).
    #[error("launch argv: {0}")]
    Argv(String),
    /// The QEMU found is not the version asked for.
    #[error("{} is QEMU {found}, but {wanted} is required: {hint}", qemu.display())]
    WrongVersion {
        /// The binary.
        qemu: PathBuf,
        /// Its version.
        found: String,
        /// The version required.
        wanted: String,
        /// How to get the right one.
        hint: String,
    },
    /// A scratch file could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl From<QemuError> for Failure {
    fn from(e: QemuError) -> Self {
        let category = match &e {
            QemuError::Argv(_) | QemuError::Malformed(_) | QemuError::Protocol(_) => {
                ErrorCategory::Malformed
            }
            _ => ErrorCategory::Io,
        };
        Failure::new(category, e)
    }
}
