//! dstack's JSON event log: an array of `{imr, event_type, digest, event,
//! event_payload}`, with RTMR3 digests recomputed from the payload.

use chrysalis_attestation::runtime_events::{chrysalis_event_digest, CHRYSALIS_EVENT_TYPE};

use super::describe::{describe, payload_text, type_label};
use super::log::{EventLog, LogEvent, LogFormat, MAX_LOG_LEN};
use crate::error::{Error, Result};
use crate::tdx::digest::{parse_hex48, sha384, Digest384};
use crate::tdx::event::Register;

/// Most events a JSON log may hold.
pub const MAX_JSON_EVENTS: usize = 1 << 16;

impl EventLog {
    /// Parses a dstack JSON log: the event array itself, a JSON string
    /// holding it, or an object with an `event_log` field holding either.
    pub fn parse_dstack_json(text: &[u8], name: &str) -> Result<EventLog> {
        parse_dstack(text).map_err(|what| Error::EventLog {
            source_name: name.to_string(),
            offset: 0,
            what,
        })
    }
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
                Some(parse_hex48(s).map_err(|e| format!("\"digest\": {e}"))?)
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
