//! The parsed form of an event log, whichever format it came from, and its
//! replay into the RTMRs.

use serde::Serialize;

use super::describe::event_type as ev;
use crate::tdx::digest::{extend, Digest384};
use crate::tdx::event::Register;

/// Largest log accepted (64 MiB; a CCEL area is typically 64–256 KiB).
pub const MAX_LOG_LEN: usize = 64 << 20;

/// Which format a log was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// TCG2 crypto-agile binary (CCEL).
    Tcg2,
    /// dstack's JSON event log.
    DstackJson,
}

/// The "Spec ID Event03" header of a TCG2 log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecIdEvent {
    /// Platform class (0 = client, 1 = server).
    pub platform_class: u32,
    /// Specification version (major, minor).
    pub spec_version: (u8, u8),
    /// Specification errata.
    pub spec_errata: u8,
    /// Size of UINTN in 4-byte units (1 = 32 bit, 2 = 64 bit).
    pub uintn_size: u8,
    /// (TCG algorithm id, digest size in bytes) for every bank.
    pub algorithms: Vec<(u16, u16)>,
    /// Vendor information bytes.
    #[serde(with = "hex::serde")]
    pub vendor_info: Vec<u8>,
}

/// One event of a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogEvent {
    /// Position in the log (0 = first event after the Spec ID header).
    pub index: usize,
    /// Byte offset of the record in a binary log.
    pub offset: Option<usize>,
    /// Register extended.
    pub register: Register,
    /// TCG (or dstack / Chrysalis) event type.
    pub event_type: u32,
    /// The SHA-384 digest replay extends: the logged one for firmware
    /// events, the recomputed one for RTMR3 events of JSON logs.
    #[serde(with = "crate::tdx::digest::hex48")]
    pub digest: Digest384,
    /// The digest the log itself carried (`None` when absent or empty).
    #[serde(with = "crate::tdx::digest::hex48::opt")]
    pub stored_digest: Option<Digest384>,
    /// dstack event name (JSON logs).
    pub name: Option<String>,
    /// Event data (binary logs) or payload (JSON logs).
    #[serde(with = "hex::serde")]
    pub data: Vec<u8>,
    /// Readable description of the event.
    pub description: String,
}

impl LogEvent {
    /// Whether the event was extended into an RTMR (`EV_NO_ACTION` events
    /// and MRTD entries are informational).
    pub fn is_extended(&self) -> bool {
        self.event_type != ev::EV_NO_ACTION && self.register != Register::Mrtd
    }
}

/// A parsed event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventLog {
    /// The format it was read from.
    pub format: LogFormat,
    /// The Spec ID header (binary logs).
    pub spec_id: Option<SpecIdEvent>,
    /// The events, in log order.
    pub events: Vec<LogEvent>,
    /// Padding bytes after the last event (binary logs).
    pub padding: usize,
}

impl EventLog {
    /// Replays the log into RTMR0..=RTMR3.
    pub fn replay(&self) -> [Digest384; 4] {
        replay(&self.events)
    }
}

/// Replays events into RTMR0..=RTMR3 from zero, skipping events that are
/// not extended ([`LogEvent::is_extended`]).
pub fn replay(events: &[LogEvent]) -> [Digest384; 4] {
    let mut regs = [[0u8; 48]; 4];
    for e in events.iter().filter(|e| e.is_extended()) {
        if let Some(i) = e.register.rtmr_index() {
            extend(&mut regs[i], &e.digest);
        }
    }
    regs
}
