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
//!   1..=4 → RTMR0..=RTMR3 ([`Register::from_cc_index`]).
//! * **dstack JSON**: an array of `{imr, event_type, digest, event,
//!   event_payload}` (`imr` is the RTMR index 0..=3, `digest` and
//!   `event_payload` hex). RTMR3 digests are **recomputed** from the payload
//!   — `SHA-384(le32(event_type) ‖ ":" ‖ event ‖ ":" ‖ payload)` for dstack
//!   events, the Chrysalis rule for [`CHRYSALIS_EVENT_TYPE`] events — and the
//!   logged digest is never used for them (one real dstack log carries
//!   RTMR3 digests that do not replay to its quote).
//!
//! Parsing is total: every length is checked against the bytes that remain,
//! allocation never exceeds the input's size, and malformed input gives an
//! [`Error::EventLog`] with the byte offset.
//!
//! Replaying a log proves only that the log is consistent with a quote;
//! [`compare`] checks the log's events against independently computed
//! expectations and reports the first event where they depart.

use std::fmt;
use std::path::Path;

use serde::Serialize;

use super::reader::{Reader, Short};
use super::rtmr::{chrysalis_event_digest, CHRYSALIS_EVENT_TYPE};
use super::{extend, sha384, Digest384, MeasuredEvent, Register};
use crate::error::{Error, Result};

/// Largest log accepted (64 MiB; a CCEL area is typically 64–256 KiB).
pub const MAX_LOG_LEN: usize = 64 << 20;
/// Most events a JSON log may hold.
pub const MAX_JSON_EVENTS: usize = 1 << 16;
/// TCG algorithm id of SHA-384.
pub const TPM_ALG_SHA384: u16 = 0x000C;
/// Signature of the Spec ID event.
pub const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";

/// TCG PC Client event types.
pub mod event_type {
    #![allow(missing_docs)]
    pub const EV_PREBOOT_CERT: u32 = 0x0;
    pub const EV_POST_CODE: u32 = 0x1;
    pub const EV_NO_ACTION: u32 = 0x3;
    pub const EV_SEPARATOR: u32 = 0x4;
    pub const EV_ACTION: u32 = 0x5;
    pub const EV_EVENT_TAG: u32 = 0x6;
    pub const EV_S_CRTM_CONTENTS: u32 = 0x7;
    pub const EV_S_CRTM_VERSION: u32 = 0x8;
    pub const EV_CPU_MICROCODE: u32 = 0x9;
    pub const EV_PLATFORM_CONFIG_FLAGS: u32 = 0xa;
    pub const EV_TABLE_OF_DEVICES: u32 = 0xb;
    pub const EV_COMPACT_HASH: u32 = 0xc;
    pub const EV_IPL: u32 = 0xd;
    pub const EV_IPL_PARTITION_DATA: u32 = 0xe;
    pub const EV_NONHOST_CODE: u32 = 0xf;
    pub const EV_NONHOST_CONFIG: u32 = 0x10;
    pub const EV_NONHOST_INFO: u32 = 0x11;
    pub const EV_OMIT_BOOT_DEVICE_EVENTS: u32 = 0x12;
    pub const EV_EFI_VARIABLE_DRIVER_CONFIG: u32 = 0x8000_0001;
    pub const EV_EFI_VARIABLE_BOOT: u32 = 0x8000_0002;
    pub const EV_EFI_BOOT_SERVICES_APPLICATION: u32 = 0x8000_0003;
    pub const EV_EFI_BOOT_SERVICES_DRIVER: u32 = 0x8000_0004;
    pub const EV_EFI_RUNTIME_SERVICES_DRIVER: u32 = 0x8000_0005;
    pub const EV_EFI_GPT_EVENT: u32 = 0x8000_0006;
    pub const EV_EFI_ACTION: u32 = 0x8000_0007;
    pub const EV_EFI_PLATFORM_FIRMWARE_BLOB: u32 = 0x8000_0008;
    pub const EV_EFI_HANDOFF_TABLES: u32 = 0x8000_0009;
    pub const EV_EFI_PLATFORM_FIRMWARE_BLOB2: u32 = 0x8000_000a;
    pub const EV_EFI_HANDOFF_TABLES2: u32 = 0x8000_000b;
    pub const EV_EFI_VARIABLE_BOOT2: u32 = 0x8000_000c;
    pub const EV_EFI_HCRTM_EVENT: u32 = 0x8000_0010;
    pub const EV_EFI_VARIABLE_AUTHORITY: u32 = 0x8000_00e0;
    pub const EV_EFI_SPDM_FIRMWARE_BLOB: u32 = 0x8000_00e1;
    pub const EV_EFI_SPDM_FIRMWARE_CONFIG: u32 = 0x8000_00e2;

    /// The TCG name of an event type, if it has one.
    pub fn name(t: u32) -> Option<&'static str> {
        Some(match t {
            EV_PREBOOT_CERT => "EV_PREBOOT_CERT",
            EV_POST_CODE => "EV_POST_CODE",
            EV_NO_ACTION => "EV_NO_ACTION",
            EV_SEPARATOR => "EV_SEPARATOR",
            EV_ACTION => "EV_ACTION",
            EV_EVENT_TAG => "EV_EVENT_TAG",
            EV_S_CRTM_CONTENTS => "EV_S_CRTM_CONTENTS",
            EV_S_CRTM_VERSION => "EV_S_CRTM_VERSION",
            EV_CPU_MICROCODE => "EV_CPU_MICROCODE",
            EV_PLATFORM_CONFIG_FLAGS => "EV_PLATFORM_CONFIG_FLAGS",
            EV_TABLE_OF_DEVICES => "EV_TABLE_OF_DEVICES",
            EV_COMPACT_HASH => "EV_COMPACT_HASH",
            EV_IPL => "EV_IPL",
            EV_IPL_PARTITION_DATA => "EV_IPL_PARTITION_DATA",
            EV_NONHOST_CODE => "EV_NONHOST_CODE",
            EV_NONHOST_CONFIG => "EV_NONHOST_CONFIG",
            EV_NONHOST_INFO => "EV_NONHOST_INFO",
            EV_OMIT_BOOT_DEVICE_EVENTS => "EV_OMIT_BOOT_DEVICE_EVENTS",
            EV_EFI_VARIABLE_DRIVER_CONFIG => "EV_EFI_VARIABLE_DRIVER_CONFIG",
            EV_EFI_VARIABLE_BOOT => "EV_EFI_VARIABLE_BOOT",
            EV_EFI_BOOT_SERVICES_APPLICATION => "EV_EFI_BOOT_SERVICES_APPLICATION",
            EV_EFI_BOOT_SERVICES_DRIVER => "EV_EFI_BOOT_SERVICES_DRIVER",
            EV_EFI_RUNTIME_SERVICES_DRIVER => "EV_EFI_RUNTIME_SERVICES_DRIVER",
            EV_EFI_GPT_EVENT => "EV_EFI_GPT_EVENT",
            EV_EFI_ACTION => "EV_EFI_ACTION",
            EV_EFI_PLATFORM_FIRMWARE_BLOB => "EV_EFI_PLATFORM_FIRMWARE_BLOB",
            EV_EFI_HANDOFF_TABLES => "EV_EFI_HANDOFF_TABLES",
            EV_EFI_PLATFORM_FIRMWARE_BLOB2 => "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
            EV_EFI_HANDOFF_TABLES2 => "EV_EFI_HANDOFF_TABLES2",
            EV_EFI_VARIABLE_BOOT2 => "EV_EFI_VARIABLE_BOOT2",
            EV_EFI_HCRTM_EVENT => "EV_EFI_HCRTM_EVENT",
            EV_EFI_VARIABLE_AUTHORITY => "EV_EFI_VARIABLE_AUTHORITY",
            EV_EFI_SPDM_FIRMWARE_BLOB => "EV_EFI_SPDM_FIRMWARE_BLOB",
            EV_EFI_SPDM_FIRMWARE_CONFIG => "EV_EFI_SPDM_FIRMWARE_CONFIG",
            _ => return None,
        })
    }

    /// The TCG name, or the number in hex.
    pub fn display(t: u32) -> String {
        name(t).map_or_else(|| format!("event type {t:#x}"), str::to_string)
    }
}

use event_type as ev;

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
    #[serde(with = "super::hex48")]
    pub digest: Digest384,
    /// The digest the log itself carried (`None` when absent or empty).
    #[serde(with = "super::hex48::opt")]
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
    /// Reads a log file in either format (detected from the content).
    pub fn load(path: &Path) -> Result<EventLog> {
        let bytes = super::measure::read_file_limited(path, "event log", MAX_LOG_LEN as u64)?;
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

    /// Parses a TCG2 crypto-agile binary log (CCEL).
    pub fn parse_tcg2(bytes: &[u8], name: &str) -> Result<EventLog> {
        parse_tcg2(bytes).map_err(|(offset, what)| Error::EventLog {
            source_name: name.to_string(),
            offset,
            what,
        })
    }

    /// Parses a dstack JSON log: the event array itself, a JSON string
    /// holding it, or an object with an `event_log` field holding either.
    pub fn parse_dstack_json(text: &[u8], name: &str) -> Result<EventLog> {
        parse_dstack(text).map_err(|what| Error::EventLog {
            source_name: name.to_string(),
            offset: 0,
            what,
        })
    }

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

/// dstack's RTMR3 event digest:
/// `SHA-384(le32(event_type) ‖ ":" ‖ name ‖ ":" ‖ payload)`.
pub fn dstack_event_digest(event_type: u32, name: &str, payload: &[u8]) -> Digest384 {
    let mut buf = Vec::with_capacity(6 + name.len() + payload.len());
    buf.extend_from_slice(&event_type.to_le_bytes());
    buf.push(b':');
    buf.extend_from_slice(name.as_bytes());
    buf.push(b':');
    buf.extend_from_slice(payload);
    sha384(&buf)
}

// ------------------------------------------------------------ TCG2 binary

type ParseResult<T> = std::result::Result<T, (usize, String)>;

fn short(e: Short) -> (usize, String) {
    (e.offset, e.to_string())
}

fn parse_tcg2(bytes: &[u8]) -> ParseResult<EventLog> {
    if bytes.len() > MAX_LOG_LEN {
        return Err((
            0,
            format!(
                "{} bytes is more than the {MAX_LOG_LEN} accepted",
                bytes.len()
            ),
        ));
    }
    let mut r = Reader::new(bytes);
    let spec_id = parse_spec_id(&mut r)?;
    let sizes = &spec_id.algorithms;
    let mut events = Vec::new();
    let padding;
    loop {
        let start = r.pos();
        let rest = r.rest();
        if rest.is_empty() {
            padding = 0;
            break;
        }
        if let Some(n) = padding_len(rest) {
            padding = n;
            break;
        }
        if rest.len() >= 4 && rest[..4] == [0xff; 4] {
            let bad = rest.iter().position(|&b| b != 0xff).unwrap_or(0);
            return Err((
                start + bad,
                "data after the end-of-log marker (0xFF padding)".into(),
            ));
        }
        let index = r.u32("MR index").map_err(short)?;
        let register = Register::from_cc_index(index).ok_or_else(|| {
            (
                start,
                format!("MR index {index} is not a TDX measurement register (0..=4)"),
            )
        })?;
        let event_type = r.u32("event type").map_err(short)?;
        let count = r.u32("digest count").map_err(short)?;
        if count == 0 || count as usize > sizes.len() {
            return Err((
                start + 8,
                format!(
                    "digest count {count}, the log declares {} algorithms",
                    sizes.len()
                ),
            ));
        }
        let mut sha384_digest = None;
        let mut seen = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let at = r.pos();
            let alg = r.u16("digest algorithm").map_err(short)?;
            let size = sizes
                .iter()
                .find(|(a, _)| *a == alg)
                .map(|(_, s)| *s as usize)
                .ok_or_else(|| {
                    (
                        at,
                        format!("digest algorithm {alg:#06x} is not declared in the Spec ID event"),
                    )
                })?;
            if seen.contains(&alg) {
                return Err((at, format!("digest algorithm {alg:#06x} appears twice")));
            }
            seen.push(alg);
            let d = r.take(size, "digest").map_err(short)?;
            if alg == TPM_ALG_SHA384 {
                let mut out = [0u8; 48];
                out.copy_from_slice(d);
                sha384_digest = Some(out);
            }
        }
        let size = r.u32("event size").map_err(short)? as usize;
        let data = r.take(size, "event data").map_err(short)?;
        let digest =
            sha384_digest.ok_or_else(|| (start, "event has no SHA-384 digest".to_string()))?;
        events.push(LogEvent {
            index: events.len(),
            offset: Some(start),
            register,
            event_type,
            digest,
            stored_digest: Some(digest),
            name: None,
            data: data.to_vec(),
            description: describe(event_type, data),
        });
    }
    Ok(EventLog {
        format: LogFormat::Tcg2,
        spec_id: Some(spec_id),
        events,
        padding,
    })
}

/// `Some(len)` when all of `rest` is 0xFF or all is 0x00.
fn padding_len(rest: &[u8]) -> Option<usize> {
    let first = rest[0];
    if (first == 0xff || first == 0x00) && rest.iter().all(|&b| b == first) {
        Some(rest.len())
    } else {
        None
    }
}

fn parse_spec_id(r: &mut Reader<'_>) -> ParseResult<SpecIdEvent> {
    let _index = r.u32("first event MR index").map_err(short)?;
    let ty = r.u32("first event type").map_err(short)?;
    if ty != ev::EV_NO_ACTION {
        return Err((
            4,
            format!(
                "not a TCG2 crypto-agile log: the first event is {}, expected EV_NO_ACTION with the Spec ID",
                ev::display(ty)
            ),
        ));
    }
    r.take(20, "first event SHA-1 digest").map_err(short)?;
    let size = r.u32("Spec ID event size").map_err(short)? as usize;
    let body_at = r.pos();
    let body = r.take(size, "Spec ID event").map_err(short)?;
    let mut b = Reader::new(body);
    let at = |e: Short| (body_at + e.offset, e.to_string());
    let sig = b.array::<16>("Spec ID signature").map_err(at)?;
    if &sig != SPEC_ID_SIGNATURE {
        return Err((
            body_at,
            format!(
                "not a TCG2 crypto-agile log: Spec ID signature is {:?}",
                String::from_utf8_lossy(&sig)
            ),
        ));
    }
    let platform_class = b.u32("platform class").map_err(at)?;
    let minor = b.u8("spec version minor").map_err(at)?;
    let major = b.u8("spec version major").map_err(at)?;
    let spec_errata = b.u8("spec errata").map_err(at)?;
    let uintn_size = b.u8("uintn size").map_err(at)?;
    let n = b.u32("number of algorithms").map_err(at)? as usize;
    if n == 0 || n > b.remaining() / 4 {
        return Err((
            body_at + b.pos() - 4,
            format!("{n} digest algorithms do not fit the Spec ID event"),
        ));
    }
    let mut algorithms = Vec::with_capacity(n);
    for _ in 0..n {
        let pos = body_at + b.pos();
        let alg = b.u16("algorithm id").map_err(at)?;
        let sz = b.u16("digest size").map_err(at)?;
        if sz == 0 || sz > 64 {
            return Err((pos, format!("algorithm {alg:#06x} has digest size {sz}")));
        }
        if algorithms.iter().any(|(a, _)| *a == alg) {
            return Err((pos, format!("algorithm {alg:#06x} is declared twice")));
        }
        if alg == TPM_ALG_SHA384 && sz != 48 {
            return Err((pos, format!("SHA-384 declared with digest size {sz}")));
        }
        algorithms.push((alg, sz));
    }
    let vlen = b.u8("vendor info size").map_err(at)? as usize;
    let vendor_info = b.take(vlen, "vendor info").map_err(at)?.to_vec();
    if b.remaining() != 0 {
        return Err((
            body_at + b.pos(),
            format!(
                "{} stray bytes at the end of the Spec ID event",
                b.remaining()
            ),
        ));
    }
    if !algorithms.iter().any(|(a, _)| *a == TPM_ALG_SHA384) {
        return Err((
            body_at,
            "the log has no SHA-384 bank (TDX registers are SHA-384)".into(),
        ));
    }
    Ok(SpecIdEvent {
        platform_class,
        spec_version: (major, minor),
        spec_errata,
        uintn_size,
        algorithms,
        vendor_info,
    })
}

// ------------------------------------------------------------ dstack JSON

fn parse_dstack(text: &[u8]) -> std::result::Result<EventLog, String> {
    if text.len() > MAX_LOG_LEN {
        return Err(format!(
            "{} bytes is more than the {MAX_LOG_LEN} accepted",
            text.len()
        ));
    }
    let mut v: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
    // Unwrap {"event_log": …} and JSON-in-a-string, at most twice each.
    for _ in 0..4 {
        v = match v {
            serde_json::Value::Object(mut o) => match o.remove("event_log") {
                Some(inner) => inner,
                None => return Err("JSON object without an \"event_log\" field".into()),
            },
            serde_json::Value::String(s) => serde_json::from_str(&s)
                .map_err(|e| format!("event_log string is not JSON: {e}"))?,
            other => other,
        };
        if v.is_array() {
            break;
        }
    }
    let items = v.as_array().ok_or("expected a JSON array of events")?;
    if items.len() > MAX_JSON_EVENTS {
        return Err(format!(
            "{} events (at most {MAX_JSON_EVENTS})",
            items.len()
        ));
    }
    let mut events = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        events.push(dstack_event(i, item).map_err(|e| format!("event {i}: {e}"))?);
    }
    Ok(EventLog {
        format: LogFormat::DstackJson,
        spec_id: None,
        events,
        padding: 0,
    })
}

fn dstack_event(index: usize, item: &serde_json::Value) -> std::result::Result<LogEvent, String> {
    let o = item.as_object().ok_or("not a JSON object")?;
    let imr = o
        .get("imr")
        .and_then(|x| x.as_u64())
        .ok_or("missing or non-integer \"imr\"")?;
    let register = usize::try_from(imr)
        .ok()
        .and_then(Register::from_rtmr_index)
        .ok_or(format!("imr {imr} is not an RTMR index (0..=3)"))?;
    let event_type = o
        .get("event_type")
        .and_then(|x| x.as_u64())
        .and_then(|x| u32::try_from(x).ok())
        .ok_or("missing or invalid \"event_type\" (u32)")?;
    let name = match o.get("event") {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(x) => x.as_str().ok_or("\"event\" is not a string")?.to_string(),
    };
    let payload = match o.get("event_payload") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(x) => {
            let s = x.as_str().ok_or("\"event_payload\" is not a string")?;
            hex::decode(s.trim()).map_err(|e| format!("\"event_payload\" is not hex: {e}"))?
        }
    };
    let stored_digest = match o.get("digest") {
        None | Some(serde_json::Value::Null) => None,
        Some(x) => {
            let s = x.as_str().ok_or("\"digest\" is not a string")?;
            if s.trim().is_empty() {
                None
            } else {
                Some(super::parse_hex48(s).map_err(|e| format!("\"digest\": {e}"))?)
            }
        }
    };
    let digest = if register == Register::Rtmr3 {
        // Runtime events: the digest is a function of the payload; a logged
        // digest is never trusted.
        if event_type == CHRYSALIS_EVENT_TYPE {
            chrysalis_event_digest(&name, &payload)
        } else {
            dstack_event_digest(event_type, &name, &payload)
        }
    } else {
        stored_digest.ok_or("firmware event (RTMR0-2) without a digest")?
    };
    let description = if name.is_empty() {
        describe(event_type, &payload)
    } else {
        format!(
            "{} {name:?} {}",
            type_label(event_type),
            payload_text(&payload)
        )
    };
    Ok(LogEvent {
        index,
        offset: None,
        register,
        event_type,
        digest,
        stored_digest,
        name: Some(name).filter(|n| !n.is_empty()),
        data: payload,
        description,
    })
}

fn type_label(t: u32) -> String {
    if t == CHRYSALIS_EVENT_TYPE {
        "chrysalis".into()
    } else {
        ev::display(t)
    }
}

// ------------------------------------------------------------ descriptions

const MAX_TEXT: usize = 96;

/// A readable one-line description of an event from its type and data.
/// Total: unknown or malformed data falls back to its size.
pub fn describe(event_type: u32, data: &[u8]) -> String {
    let name = ev::display(event_type);
    let detail = match event_type {
        ev::EV_EFI_VARIABLE_DRIVER_CONFIG
        | ev::EV_EFI_VARIABLE_BOOT
        | ev::EV_EFI_VARIABLE_BOOT2
        | ev::EV_EFI_VARIABLE_AUTHORITY => describe_variable(data),
        ev::EV_EVENT_TAG => describe_tagged(data),
        ev::EV_EFI_HANDOFF_TABLES2 | ev::EV_EFI_PLATFORM_FIRMWARE_BLOB2 => describe_prefixed(data),
        ev::EV_EFI_BOOT_SERVICES_APPLICATION
        | ev::EV_EFI_BOOT_SERVICES_DRIVER
        | ev::EV_EFI_RUNTIME_SERVICES_DRIVER => describe_image(data),
        ev::EV_SEPARATOR => Some(format!("({})", hex::encode(&data[..data.len().min(8)]))),
        ev::EV_EFI_GPT_EVENT => Some(format!("GPT ({} bytes)", data.len())),
        _ => text(data).map(|t| format!("{t:?}")),
    };
    match detail {
        Some(d) => format!("{name} {d}"),
        None => format!("{name} ({} bytes)", data.len()),
    }
}

/// Printable ASCII text (trailing NULs dropped), truncated; `None` when the
/// data is not text.
fn text(data: &[u8]) -> Option<String> {
    let t = match data.iter().rposition(|&b| b != 0) {
        Some(end) => &data[..=end],
        None => return None,
    };
    if !t
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) || b == b'\n' || b == b'\t')
    {
        return None;
    }
    let s = String::from_utf8_lossy(&t[..t.len().min(MAX_TEXT)]).into_owned();
    Some(if t.len() > MAX_TEXT {
        format!("{s}…")
    } else {
        s
    })
}

fn payload_text(p: &[u8]) -> String {
    match text(p) {
        Some(t) => format!("{t:?}"),
        None if p.is_empty() => String::new(),
        None if p.len() <= 32 => hex::encode(p),
        None => format!("{}… ({} bytes)", hex::encode(&p[..32]), p.len()),
    }
}

fn utf16(data: &[u8]) -> String {
    let units: Vec<u16> = data
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let s = String::from_utf16_lossy(&units);
    s.trim_end_matches('\0').chars().take(MAX_TEXT).collect()
}

fn describe_variable(data: &[u8]) -> Option<String> {
    let mut r = Reader::new(data);
    let guid = super::guid::Guid(r.array::<16>("").ok()?);
    let name_len = r.u64("").ok()?;
    let data_len = r.u64("").ok()?;
    let name = r
        .take(usize::try_from(name_len).ok()?.checked_mul(2)?, "")
        .ok()?;
    Some(format!("{} ({guid}, {data_len} bytes)", utf16(name)))
}

fn describe_tagged(data: &[u8]) -> Option<String> {
    let mut r = Reader::new(data);
    let id = r.u32("").ok()?;
    let len = r.u32("").ok()? as usize;
    let body = r.take(len, "").ok()?;
    Some(format!(
        "tag {id:#010x} {}",
        text(body).map_or_else(|| format!("({len} bytes)"), |t| format!("{t:?}"))
    ))
}

fn describe_prefixed(data: &[u8]) -> Option<String> {
    let mut r = Reader::new(data);
    let len = r.u8("").ok()? as usize;
    let d = r.take(len, "").ok()?;
    text(d).map(|t| format!("{t:?}"))
}

fn describe_image(data: &[u8]) -> Option<String> {
    let mut r = Reader::new(data);
    let addr = r.u64("").ok()?;
    let len = r.u64("").ok()?;
    Some(format!("image at {addr:#x} ({len} bytes)"))
}

// ------------------------------------------------------------ comparison

/// One side of a departure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventSummary {
    /// Event type.
    pub event_type: u32,
    /// Its TCG name (or hex).
    pub event_type_name: String,
    /// The digest.
    #[serde(with = "super::hex48")]
    pub digest: Digest384,
    /// Readable description.
    pub description: String,
}

impl EventSummary {
    fn of_measured(e: &MeasuredEvent) -> Self {
        EventSummary {
            event_type: e.event_type,
            event_type_name: type_label(e.event_type),
            digest: e.digest,
            description: e.description.clone(),
        }
    }

    fn of_log(e: &LogEvent) -> Self {
        EventSummary {
            event_type: e.event_type,
            event_type_name: type_label(e.event_type),
            digest: e.digest,
            description: e.description.clone(),
        }
    }
}

/// Where a log first departs from the expectation in one register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Departure {
    /// The register.
    pub register: Register,
    /// Index among that register's extended events.
    pub position: usize,
    /// Index of the log event in the whole log (`None` when the log has
    /// fewer events than expected).
    pub log_index: Option<usize>,
    /// The expected event (`None` when the log has an extra event).
    pub expected: Option<EventSummary>,
    /// The logged event (`None` when the log ended early).
    pub actual: Option<EventSummary>,
}

impl fmt::Display for Departure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} event {}", self.register, self.position)?;
        if let Some(i) = self.log_index {
            write!(f, " (log event {i})")?;
        }
        f.write_str(": ")?;
        let side = |s: &EventSummary| format!("{} [{}]", s.description, hex::encode(s.digest));
        match (&self.expected, &self.actual) {
            (Some(e), Some(a)) => write!(f, "expected {}, log has {}", side(e), side(a)),
            (Some(e), None) => write!(f, "expected {}, log has no more events", side(e)),
            (None, Some(a)) => write!(f, "unexpected extra event {}", side(a)),
            (None, None) => f.write_str("no difference"),
        }
    }
}

/// Result of [`compare`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Comparison {
    /// The registers compared (those the expectation covers).
    pub registers: Vec<Register>,
    /// Events that matched before the first departure in each register.
    pub matched_events: usize,
    /// The first departure of each register that departs, in log order.
    pub departures: Vec<Departure>,
}

impl Comparison {
    /// Whether the log matches the expectation in every compared register.
    pub fn is_match(&self) -> bool {
        self.departures.is_empty()
    }

    /// The first departure in log order.
    pub fn first(&self) -> Option<&Departure> {
        self.departures.first()
    }
}

/// Compares expected events with a log, register by register, over the
/// registers that `expected` has events for (so an RTMR0 prediction that
/// could not be computed is simply not compared). In each register the
/// extended log events must equal the expected ones, digest by digest, in
/// order, with nothing missing or extra; the first mismatch is reported.
pub fn compare(expected: &[MeasuredEvent], log: &[LogEvent]) -> Comparison {
    let mut registers: Vec<Register> = expected
        .iter()
        .map(|e| e.register)
        .filter(|r| *r != Register::Mrtd)
        .collect();
    registers.sort();
    registers.dedup();
    let mut departures = Vec::new();
    let mut matched = 0;
    for &reg in &registers {
        let exp: Vec<&MeasuredEvent> = expected.iter().filter(|e| e.register == reg).collect();
        let got: Vec<&LogEvent> = log
            .iter()
            .filter(|e| e.register == reg && e.is_extended())
            .collect();
        let n = exp.len().max(got.len());
        for pos in 0..n {
            let (e, a) = (exp.get(pos), got.get(pos));
            if let (Some(e), Some(a)) = (e, a) {
                if e.digest == a.digest {
                    matched += 1;
                    continue;
                }
            }
            departures.push(Departure {
                register: reg,
                position: pos,
                log_index: a.map(|a| a.index),
                expected: e.map(|e| EventSummary::of_measured(e)),
                actual: a.map(|a| EventSummary::of_log(a)),
            });
            break;
        }
    }
    departures.sort_by_key(|d| (d.log_index.is_none(), d.log_index, d.register));
    Comparison {
        registers,
        matched_events: matched,
        departures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid log: Spec ID with SHA-384 only, then `events`.
    pub(crate) fn build_log(
        events: &[(u32, u32, Digest384, &[u8])],
        pad: u8,
        pad_len: usize,
    ) -> Vec<u8> {
        let mut spec = Vec::new();
        spec.extend_from_slice(SPEC_ID_SIGNATURE);
        spec.extend_from_slice(&0u32.to_le_bytes());
        spec.extend_from_slice(&[0, 2, 0, 2]);
        spec.extend_from_slice(&1u32.to_le_bytes());
        spec.extend_from_slice(&TPM_ALG_SHA384.to_le_bytes());
        spec.extend_from_slice(&48u16.to_le_bytes());
        spec.push(0);
        let mut out = Vec::new();
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&ev::EV_NO_ACTION.to_le_bytes());
        out.extend_from_slice(&[0; 20]);
        out.extend_from_slice(&(spec.len() as u32).to_le_bytes());
        out.extend_from_slice(&spec);
        for (mr, ty, d, data) in events {
            out.extend_from_slice(&mr.to_le_bytes());
            out.extend_from_slice(&ty.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
            out.extend_from_slice(&TPM_ALG_SHA384.to_le_bytes());
            out.extend_from_slice(d);
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(data);
        }
        out.extend(std::iter::repeat_n(pad, pad_len));
        out
    }

    #[test]
    fn round_trip_and_padding() {
        let d = sha384(b"Exit Boot Services Invocation");
        let log = build_log(
            &[
                (2, ev::EV_EFI_ACTION, d, b"Exit Boot Services Invocation"),
                (0, 1, d, b""),
            ],
            0xff,
            100,
        );
        let l = EventLog::parse_tcg2(&log, "t").unwrap();
        assert_eq!(l.events.len(), 2);
        assert_eq!(l.padding, 100);
        assert_eq!(l.events[0].register, Register::Rtmr1);
        assert_eq!(l.events[1].register, Register::Mrtd);
        assert!(l.events[0].description.contains("Exit Boot Services"));
        let regs = l.replay();
        assert_eq!(regs[1], crate::tdx::replay_digests([&d]));
        assert_eq!(regs[0], [0; 48]);
    }

    #[test]
    fn malformed_logs_name_the_offset() {
        let d = [0u8; 48];
        let good = build_log(&[(1, 4, d, &[0; 4])], 0xff, 0);
        // Truncate inside the event data.
        let e = EventLog::parse_tcg2(&good[..good.len() - 2], "x").unwrap_err();
        assert!(e.to_string().contains("event data"), "{e}");
        // MR index 9.
        let bad = build_log(&[(9, 4, d, &[0; 4])], 0xff, 0);
        assert!(EventLog::parse_tcg2(&bad, "x")
            .unwrap_err()
            .to_string()
            .contains("MR index 9"));
        // Junk after 0xFF marker.
        let mut junk = build_log(&[], 0xff, 8);
        junk.push(1);
        assert!(EventLog::parse_tcg2(&junk, "x")
            .unwrap_err()
            .to_string()
            .contains("end-of-log"));
        // Not a TCG2 log.
        assert!(EventLog::parse_tcg2(&[1, 0, 0, 0, 4, 0, 0, 0], "x").is_err());
    }

    #[test]
    fn dstack_json_recomputes_rtmr3() {
        let zeros = "00".repeat(48);
        let text = format!(
            r#"[{{"imr":3,"event_type":134217729,"digest":"","event":"app-id","event_payload":"0102"}},
                {{"imr":1,"event_type":2147483655,"digest":"{zeros}","event":"","event_payload":""}}]"#
        );
        let l = EventLog::parse(text.as_bytes(), "j").unwrap();
        assert_eq!(l.format, LogFormat::DstackJson);
        assert_eq!(
            l.events[0].digest,
            dstack_event_digest(0x0800_0001, "app-id", &[1, 2])
        );
        assert_eq!(l.events[0].stored_digest, None);
        let wrapped = serde_json::json!({ "event_log": text }).to_string();
        assert_eq!(EventLog::parse(wrapped.as_bytes(), "j").unwrap(), l);
        let no_digest = r#"[{"imr":0,"event_type":4,"event":"","event_payload":""}]"#;
        assert!(EventLog::parse(no_digest.as_bytes(), "j").is_err());
        let bad_imr = r#"[{"imr":4,"event_type":4,"digest":""}]"#;
        assert!(EventLog::parse(bad_imr.as_bytes(), "j")
            .unwrap_err()
            .to_string()
            .contains("imr 4"));
    }

    #[test]
    fn compare_reports_first_departure() {
        let a = sha384(b"a");
        let b = sha384(b"b");
        let exp = vec![
            MeasuredEvent {
                register: Register::Rtmr1,
                event_type: 4,
                digest: a,
                description: "A".into(),
            },
            MeasuredEvent {
                register: Register::Rtmr1,
                event_type: 4,
                digest: b,
                description: "B".into(),
            },
        ];
        let log =
            EventLog::parse_tcg2(&build_log(&[(2, 4, a, &[]), (2, 4, a, &[])], 0, 0), "l").unwrap();
        let c = compare(&exp, &log.events);
        assert!(!c.is_match());
        let d = c.first().unwrap();
        assert_eq!(
            (d.register, d.position, d.log_index),
            (Register::Rtmr1, 1, Some(1))
        );
        assert!(d.to_string().contains("expected B"), "{d}");
        let short = EventLog::parse_tcg2(&build_log(&[(2, 4, a, &[])], 0, 0), "l").unwrap();
        let c = compare(&exp, &short.events);
        assert_eq!(c.first().unwrap().actual, None);
        let ok = EventLog::parse_tcg2(
            &build_log(&[(2, 4, a, &[]), (2, 4, b, &[]), (1, 4, a, &[])], 0, 0),
            "l",
        )
        .unwrap();
        let c = compare(&exp, &ok.events);
        assert!(c.is_match(), "{:?}", c.departures);
        assert_eq!(c.registers, vec![Register::Rtmr1]);
        assert_eq!(c.matched_events, 2);
    }
}
