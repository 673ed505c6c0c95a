//! TCG2 crypto-agile binary logs (the CCEL TDVF writes): the Spec ID
//! header, then `TCG_PCR_EVENT2` records, then optional padding.

use super::describe::{describe, event_type as ev};
use super::log::{EventLog, LogEvent, LogFormat, SpecIdEvent, MAX_LOG_LEN};
use crate::error::{Error, Result};
use crate::reader::{Reader, Short};
use crate::tdx::event::Register;

/// TCG algorithm id of SHA-384.
pub const TPM_ALG_SHA384: u16 = 0x000C;
/// Signature of the Spec ID event.
pub const SPEC_ID_SIGNATURE: &[u8; 16] = b"Spec ID Event03\0";

impl EventLog {
    /// Parses a TCG2 crypto-agile binary log (CCEL).
    pub fn parse_tcg2(bytes: &[u8], name: &str) -> Result<EventLog> {
        parse_tcg2(bytes).map_err(|(offset, what)| Error::EventLog {
            source_name: name.to_string(),
            offset,
            what,
        })
    }
}

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

/// A minimal valid log: Spec ID with SHA-384 only, then `events`.
#[cfg(test)]
pub(crate) fn build_log(
    events: &[(u32, u32, crate::tdx::digest::Digest384, &[u8])],
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tdx::digest::sha384;

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
}
