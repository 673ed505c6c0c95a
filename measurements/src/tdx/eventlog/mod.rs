//! Confidential-computing event logs: parsing, replay and comparison.
//!
//! Two formats:
//!
//! * **TCG2 crypto-agile** binary logs, as TDVF writes them to the ACPI CCEL
//!   area (`/sys/firmware/acpi/tables/data/CCEL` in a guest). The first
//!   record is a legacy `TCG_PCR_EVENT` (SHA-1-sized digest) of type
//!   `EV_NO_ACTION` carrying the "Spec ID Event03" structure, which lists
//!   the digest algorithms and their sizes; every later record is a
//!   `TCG_PCR_EVENT2`: `u32` MR index, `u32` event type, `u32` digest count,
//!   that many (`u16` algorithm id, digest), `u32` event size, event data —
//!   all little-endian. The log ends at the end of the input or where the
//!   rest is padding (all 0xFF, or all 0x00). The MR index maps 0 → MRTD,
//!   1..=4 → RTMR0..=RTMR3 ([`Register::from_cc_index`](crate::tdx::Register::from_cc_index)).
//! * **dstack JSON**: an array of `{imr, event_type, digest, event,
//!   event_payload}` (`imr` is the RTMR index 0..=3, `digest` and
//!   `event_payload` hex). RTMR3 digests are **recomputed** from the payload
//!   — `SHA-384(le32(event_type) ‖ ":" ‖ event ‖ ":" ‖ payload)` for dstack
//!   events, the Chrysalis rule
//!   ([`chrysalis_attestation::runtime_events::chrysalis_event_digest`]) for
//!   `CHRYSALIS_EVENT_TYPE` events — and the logged digest is never used for them (one real dstack log carries
//!   RTMR3 digests that do not replay to its quote).
//!
//! Parsing is total: every length is checked against the bytes that remain,
//! allocation never exceeds the input's size, and malformed input gives an
//! [`Error::EventLog`](crate::Error::EventLog) with the byte offset.
//!
//! Replaying a log proves only that the log is consistent with a quote;
//! [`compare()`] checks the log's events against independently computed
//! expectations and reports the first event where they depart.
//!
//! # Modules
//!
//! * `log`: the parsed form ([`EventLog`], [`LogEvent`]) and [`replay`];
//! * `tcg2`: the TCG2 / CCEL binary parser ([`EventLog::parse_tcg2`]);
//! * `dstack`: dstack's JSON format ([`EventLog::parse_dstack_json`],
//!   [`dstack_event_digest`]);
//! * `describe`: readable descriptions ([`describe()`]) and the TCG event
//!   type names ([`event_type`]);
//! * `compare`: the first departure from a prediction ([`compare()`]).
//!
//! Each format module builds the common [`EventLog`]; nothing below this
//! module imports it back.

use std::path::Path;

use crate::error::Result;
use crate::tdx::files::read_file_limited;

mod compare;
mod describe;
mod dstack;
mod log;
mod tcg2;

pub use compare::{compare, Comparison, Departure, EventSummary};
pub use describe::{describe, event_type};
pub use dstack::{dstack_event_digest, MAX_JSON_EVENTS};
pub use log::{replay, EventLog, LogEvent, LogFormat, SpecIdEvent, MAX_LOG_LEN};
pub use tcg2::{SPEC_ID_SIGNATURE, TPM_ALG_SHA384};

impl EventLog {
    /// Reads a log file in either format (detected from the content).
    pub fn load(path: &Path) -> Result<EventLog> {
        let bytes = read_file_limited(path, "event log", MAX_LOG_LEN as u64)?;
        EventLog::parse(&bytes, &path.display().to_string())
    }

    /// Parses a log in either format: JSON when the first non-blank byte is
    /// `[`, `{` or `"`, TCG2 binary otherwise. `name` is used in errors.
    pub fn parse(bytes: &[u8], name: &str) -> Result<EventLog> {
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[' | b'{' | b'"') => EventLog::parse_dstack_json(bytes, name),
            _ => EventLog::parse_tcg2(bytes, name),
        }
    }
}
