//! Expected launch measurements of a Chrysalis image, computed from its
//! artifacts, and replay of the event logs that explain them.
//!
//! * [`tdx`] — Intel TDX: MRTD from a TDVF (OVMF) image, RTMR0–2 for QEMU
//!   direct kernel boot, the Chrysalis RTMR3 rule, and CCEL / TCG2 and dstack
//!   JSON event-log parsing, replay and comparison.
//! * [`snp`] — AMD SEV-SNP launch digest.
//! * [`verity`] — dm-verity root hashes.
//!
//! All digests are raw bytes; JSON output writes them as lowercase hex.

#![forbid(unsafe_code)]

pub mod error;
pub mod manifest;
pub mod snp;
pub mod tdx;
pub mod verity;

pub use error::{Error, Result};
