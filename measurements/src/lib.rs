//! Expected launch measurements of a Chrysalis image, computed from its
//! artifacts, and replay of the event logs that explain them.
//!
//! * [`tdx`] — Intel TDX: MRTD from a TDVF (OVMF) image, RTMR0–2 for QEMU
//!   direct kernel boot, the Chrysalis RTMR3 rule, and CCEL / TCG2 and dstack
//!   JSON event-log parsing, replay and comparison ([`tdx::eventlog`], split
//!   into its TCG2 parser, dstack JSON format, descriptions and comparison).
//!   Shared leaves: [`tdx::digest`] (SHA-384, register extension) and
//!   [`tdx::event`] (registers, predicted events).
//! * [`snp`] — AMD SEV-SNP launch digest.
//! * [`verity`] — dm-verity root hashes.
//! * [`manifest`] — the published measurements manifest of a release.
//!
//! Shared by TDX and SNP:
//!
//! * [`ovmf_footer`] — the OVMF GUIDed footer table, the one parser through
//!   which TDX finds the TDVF metadata and SNP the SEV metadata, reset block
//!   and kernel hashes page;
//! * [`guid`] — EFI GUIDs in their mixed-endian wire form;
//! * a bounds-checked little-endian byte reader (private).
//!
//! The RTMR3 runtime events (names, digest rule, canonical JSON) are a wire
//! format the agent shares; they are defined in
//! `chrysalis_attestation::runtime_events` and re-exported by [`tdx::rtmr`].
//!
//! All digests are raw bytes; JSON output writes them as lowercase hex.

#![forbid(unsafe_code)]

pub mod error;
pub mod guid;
pub use chrysalis_releases::manifest;
pub mod ovmf_footer;
mod reader;
pub mod snp;
pub mod tdx;
pub mod verity;

pub use error::{Error, Result};
