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
//!   ([`rtmr::AcpiTables`]) and RTMR0 is computed only when they are supplied.
//! * **RTMR1** ([`rtmr::rtmr1_events`]): the Authenticode SHA-384 ([`pe`]) of
//!   the kernel *after* QEMU patched its setup header ([`kernel`]; the patch
//!   depends on memory size, initrd size and command line), then the EFI boot
//!   events.
//! * **RTMR2** ([`rtmr::rtmr2_events`]): the command line OVMF passes to the
//!   kernel (UTF-16LE with a NUL; ` initrd=initrd` appended when there is an
//!   initrd) and the initrd.
//! * **RTMR3** ([`rtmr::rtmr3_expected`]): what the Chrysalis agent extends at
//!   boot (the static configuration, then a boot marker).
//!
//! [`eventlog`] parses CCEL / TCG2 crypto-agile logs and dstack JSON logs,
//! replays them and finds the first event where a log departs from a
//! prediction. [`measure`] ties everything together for a set of files.
//!
//! All registers are SHA-384 values: 48 raw bytes, written as lowercase hex in
//! JSON. A register is extended as `RTMR := SHA-384(RTMR ‖ digest)` starting
//! from 48 zero bytes.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha384};

pub mod eventlog;
pub mod guid;
pub mod hob;
pub mod kernel;
mod measure;
pub mod pe;
mod reader;
pub mod rtmr;
pub mod tdvf;

pub use measure::{
    artifact_digests, measure, sha256_file, sha384_file, ArtifactDigest, MeasurementModel,
    TdxInputs, TdxMeasurements, VmConfig, Vmm,
};
pub use tdvf::{PageAddOrder, Tdvf};

/// A SHA-384 digest or measurement register value (48 raw bytes).
pub type Digest384 = [u8; 48];

/// SHA-384 of `data`.
pub fn sha384(data: &[u8]) -> Digest384 {
    Sha384::digest(data).into()
}

/// Extends `register` with `digest`: `register := SHA-384(register ‖ digest)`.
pub fn extend(register: &mut Digest384, digest: &Digest384) {
    let mut h = Sha384::new();
    h.update(register.as_slice());
    h.update(digest);
    *register = h.finalize().into();
}

/// The value of a register after extending each digest in order, starting
/// from zero.
pub fn replay_digests<'a>(digests: impl IntoIterator<Item = &'a Digest384>) -> Digest384 {
    let mut reg = [0u8; 48];
    for d in digests {
        extend(&mut reg, d);
    }
    reg
}

/// A TDX measurement register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Register {
    /// Build-time measurement (firmware pages), fixed before the TD runs.
    Mrtd,
    /// RTMR0: firmware configuration (TD HOB, CFV, ACPI, variables).
    Rtmr0,
    /// RTMR1: the OS loader (kernel) and EFI boot events.
    Rtmr1,
    /// RTMR2: OS command line and initrd.
    Rtmr2,
    /// RTMR3: runtime, extended by the guest (the Chrysalis agent).
    Rtmr3,
}

impl Register {
    /// The register a confidential-computing event log's "MR index" names
    /// (UEFI `EFI_CC_MEASUREMENT_PROTOCOL` mapping for TDX: 0 = MRTD,
    /// 1 = RTMR0, 2 = RTMR1, 3 = RTMR2, 4 = RTMR3).
    pub fn from_cc_index(index: u32) -> Option<Register> {
        match index {
            0 => Some(Register::Mrtd),
            1 => Some(Register::Rtmr0),
            2 => Some(Register::Rtmr1),
            3 => Some(Register::Rtmr2),
            4 => Some(Register::Rtmr3),
            _ => None,
        }
    }

    /// The register RTMR`index` (0..=3).
    pub fn from_rtmr_index(index: usize) -> Option<Register> {
        match index {
            0 => Some(Register::Rtmr0),
            1 => Some(Register::Rtmr1),
            2 => Some(Register::Rtmr2),
            3 => Some(Register::Rtmr3),
            _ => None,
        }
    }

    /// The RTMR index (0..=3), or `None` for MRTD.
    pub fn rtmr_index(self) -> Option<usize> {
        match self {
            Register::Mrtd => None,
            Register::Rtmr0 => Some(0),
            Register::Rtmr1 => Some(1),
            Register::Rtmr2 => Some(2),
            Register::Rtmr3 => Some(3),
        }
    }
}

impl std::fmt::Display for Register {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Register::Mrtd => "MRTD",
            Register::Rtmr0 => "RTMR0",
            Register::Rtmr1 => "RTMR1",
            Register::Rtmr2 => "RTMR2",
            Register::Rtmr3 => "RTMR3",
        })
    }
}

/// One predicted measurement: what a component is expected to extend into a
/// register, with a readable description for diffs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasuredEvent {
    /// The register extended.
    pub register: Register,
    /// TCG event type (see [`eventlog::event_type`]).
    pub event_type: u32,
    /// The SHA-384 digest extended.
    #[serde(with = "hex48")]
    pub digest: Digest384,
    /// What was measured, e.g. `EV_EFI_ACTION "Exit Boot Services Invocation"`.
    pub description: String,
}

/// Replays predicted events into the four RTMRs (MRTD events are ignored).
pub fn replay_events(events: &[MeasuredEvent]) -> [Digest384; 4] {
    let mut regs = [[0u8; 48]; 4];
    for e in events {
        if let Some(i) = e.register.rtmr_index() {
            extend(&mut regs[i], &e.digest);
        }
    }
    regs
}

/// Serde helpers writing 48-byte digests as lowercase hex.
pub(crate) mod hex48 {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 48], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 48], D::Error> {
        let s = String::deserialize(d)?;
        super::parse_hex48(&s).map_err(D::Error::custom)
    }

    /// The same for `Option<[u8; 48]>` (`null` when absent); serialise only.
    pub mod opt {
        use serde::Serializer;

        pub fn serialize<S: Serializer>(v: &Option<[u8; 48]>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => s.serialize_str(&hex::encode(v)),
                None => s.serialize_none(),
            }
        }
    }
}

/// Serde helper writing 32-byte digests as lowercase hex.
pub(crate) mod hex32 {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out)
            .map_err(|e| D::Error::custom(format!("expected 64 hex digits (a SHA-256): {e}")))?;
        Ok(out)
    }
}

/// Parses 96 hex digits (optionally `0x`-prefixed) into a SHA-384 value.
pub fn parse_hex48(s: &str) -> Result<Digest384, String> {
    let s = s.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    let mut out = [0u8; 48];
    hex::decode_to_slice(s, &mut out).map_err(|e| {
        format!(
            "expected 96 hex digits (a SHA-384), got {} characters: {e}",
            s.len()
        )
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_mapping_round_trips() {
        for i in 0..5 {
            let r = Register::from_cc_index(i).unwrap();
            if let Some(k) = r.rtmr_index() {
                assert_eq!(Register::from_rtmr_index(k), Some(r));
                assert_eq!(k as u32 + 1, i);
            } else {
                assert_eq!(i, 0);
            }
        }
        assert_eq!(Register::from_cc_index(5), None);
        assert_eq!(Register::from_rtmr_index(4), None);
        assert_eq!(Register::Rtmr2.to_string(), "RTMR2");
    }

    #[test]
    fn extend_is_hash_of_concatenation() {
        let d = sha384(b"x");
        let mut reg = [0u8; 48];
        extend(&mut reg, &d);
        let mut cat = vec![0u8; 48];
        cat.extend_from_slice(&d);
        assert_eq!(reg, sha384(&cat));
        assert_eq!(replay_digests([&d]), reg);
    }

    #[test]
    fn parse_hex48_accepts_prefix_and_rejects_wrong_length() {
        let h = "ab".repeat(48);
        assert_eq!(parse_hex48(&h).unwrap(), [0xab; 48]);
        assert_eq!(parse_hex48(&format!("0x{h}")).unwrap(), [0xab; 48]);
        assert!(parse_hex48("abcd").is_err());
    }
}
