//! Measurement registers and predicted events: the vocabulary the RTMR
//! predictions, the event-log parser and the comparison share. A leaf
//! module: it imports only [`super::digest`].

use chrysalis_attestation::runtime_events::RuntimeEvent;
use serde::{Deserialize, Serialize};

use super::digest::{extend, Digest384};

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
    /// TCG event type (see [`super::eventlog::event_type`]).
    pub event_type: u32,
    /// The SHA-384 digest extended.
    #[serde(with = "super::digest::hex48")]
    pub digest: Digest384,
    /// What was measured, e.g. `EV_EFI_ACTION "Exit Boot Services Invocation"`.
    pub description: String,
}

impl From<RuntimeEvent> for MeasuredEvent {
    /// A Chrysalis runtime event as an RTMR3 event of type
    /// [`chrysalis_attestation::runtime_events::CHRYSALIS_EVENT_TYPE`].
    fn from(e: RuntimeEvent) -> MeasuredEvent {
        MeasuredEvent {
            register: Register::Rtmr3,
            event_type: chrysalis_attestation::runtime_events::CHRYSALIS_EVENT_TYPE,
            digest: e.digest,
            description: e.description,
        }
    }
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
}
