//! Intel TDX: expected MRTD and RTMR values of a TD computed from its boot
//! artifacts, and replay of the event logs that explain them.
//!
//! # What is modelled
//!
//! A TD booted by **QEMU** with **TDVF** (OVMF built with TDX support) and a
//! directly loaded Linux kernel (`-bios OVMF.fd -kernel … -initrd …
//! -append …`). The computation follows what each component does:
//!
//! * **MRTD** ([`tdvf`]): the TDX module's build-time hash of the pages QEMU
//!   adds from the TDVF metadata sections (`TDH.MEM.PAGE.ADD`, and
//!   `TDH.MR.EXTEND` for sections with the `MR.EXTEND` attribute). QEMU 8.x
//!   (with the KVM TDX patches of that era) adds all pages of a section before
//!   extending them ([`PageAddOrder::TwoPass`]); QEMU ≥ 9 extends each page
//!   right after adding it ([`PageAddOrder::SinglePass`]).
//! * **RTMR0** ([`rtmr::rtmr0_events`]): TDVF's measurements of the TD HOB
//!   that QEMU builds ([`hob`]), the configuration firmware volume (CFV), the
//!   Secure Boot variables, a separator, QEMU's three ACPI `fw_cfg` blobs and
//!   the boot variables. The ACPI tables depend on the QEMU version and the
//!   device layout (vCPUs, memory, GPUs, …); they are an **input**
//!   ([`rtmr::AcpiTables`], from a file or [`GeneratedAcpi`]: the `chrysalis`
//!   command generates them by running the pinned QEMU for the launch argv —
//!   process spawning stays out of this crate) and RTMR0 is computed only
//!   when they are supplied; [`acpi`] lists the tables inside the blob.
//! * **RTMR1** ([`rtmr::rtmr1_events`]): the Authenticode SHA-384 ([`pe`]) of
//!   the kernel *after* QEMU patched its setup header ([`kernel`]; the patch
//!   depends on memory size, initrd size and command line), then the EFI boot
//!   events.
//! * **RTMR2** ([`rtmr::rtmr2_events`]): the command line OVMF passes to the
//!   kernel (UTF-16LE with a NUL; ` initrd=initrd` appended when there is an
//!   initrd) and the initrd.
//! * **RTMR3** ([`rtmr::rtmr3_expected`]): what the Chrysalis agent extends at
//!   boot (the static configuration, then a boot marker). The event names,
//!   digest rule and canonical JSON are a wire format shared with the agent,
//!   defined in `chrysalis_attestation::runtime_events`; [`rtmr`] re-exports
//!   them and adapts the events to [`MeasuredEvent`].
//!
//! [`eventlog`] parses CCEL / TCG2 crypto-agile logs and dstack JSON logs,
//! replays them and finds the first event where a log departs from a
//! prediction. [`measure`] ties everything together for a set of files.
//!
//! # Module layering
//!
//! Data flows one way; no module imports one that imports it:
//!
//! * leaves: [`acpi`] (the table list of QEMU's tables blob), [`digest`]
//!   (SHA-384, extension, hex forms), [`event`]
//!   ([`Register`], [`MeasuredEvent`]) and the private file readers;
//! * [`metadata`] (TDVF section list) ← [`hob`] ← [`kernel`];
//!   [`tdvf`] (MRTD) uses [`metadata`] and [`hob`];
//! * [`rtmr`] uses [`kernel`], [`pe`] and the event-type names of
//!   [`eventlog`]; [`measure()`] sits on top of everything;
//! * [`eventlog`] (`tcg2`, `dstack`, `describe`, `compare`) uses only the
//!   leaves.
//!
//! All registers are SHA-384 values: 48 raw bytes, written as lowercase hex in
//! JSON. A register is extended as `RTMR := SHA-384(RTMR ‖ digest)` starting
//! from 48 zero bytes.

pub mod acpi;
pub mod digest;
pub mod event;
pub mod eventlog;
mod files;
pub mod hob;
pub mod kernel;
mod measure;
pub mod metadata;
pub mod pe;
pub mod rtmr;
pub mod tdvf;

pub use crate::guid;
pub use digest::{extend, parse_hex48, replay_digests, sha384, Digest384};
pub use event::{replay_events, MeasuredEvent, Register};
pub use files::{sha256_file, sha384_file};
pub use measure::{
    artifact_digests, measure, ArtifactDigest, GeneratedAcpi, MeasurementModel, TdxInputs,
    TdxMeasurements, VmConfig, Vmm,
};
pub use tdvf::{PageAddOrder, Tdvf};
