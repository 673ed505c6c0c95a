//! Human-readable event descriptions and the TCG event type names.

use chrysalis_attestation::runtime_events::CHRYSALIS_EVENT_TYPE;

use crate::guid::Guid;
use crate::reader::Reader;

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

/// The event type's label in descriptions: `chrysalis` for the agent's
/// runtime events, else the TCG name (or hex).
pub(super) fn type_label(t: u32) -> String {
    if t == CHRYSALIS_EVENT_TYPE {
        "chrysalis".into()
    } else {
        ev::display(t)
    }
}

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

/// A payload as text, short hex, or a truncated hex prefix with its size.
pub(super) fn payload_text(p: &[u8]) -> String {
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
    let guid = Guid(r.array::<16>("").ok()?);
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
