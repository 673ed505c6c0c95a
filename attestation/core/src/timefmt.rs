//! Time helpers: RFC 3339 parsing and human-readable durations for messages
//! such as "TCB info expired 12 days ago".

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Parses an RFC 3339 timestamp (e.g. `2025-07-19T10:00:34Z`).
pub fn parse_rfc3339(s: &str) -> crate::Result<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &Rfc3339)
        .map_err(|e| crate::Error::Encoding(format!("not an RFC 3339 time {s:?}: {e}")))
}

/// Formats a time as RFC 3339 (UTC, seconds precision).
pub fn format_rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// Converts Unix seconds to a time, saturating at the representable range.
pub fn from_unix(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// "3 days", "5 hours", "12 minutes", "40 seconds": the largest whole unit.
pub fn human_duration(d: time::Duration) -> String {
    let secs = d.whole_seconds().unsigned_abs();
    let (n, unit) = if secs >= 86_400 {
        (secs / 86_400, "day")
    } else if secs >= 3_600 {
        (secs / 3_600, "hour")
    } else if secs >= 60 {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(time::Duration::days(12)), "12 days");
        assert_eq!(human_duration(time::Duration::hours(1)), "1 hour");
        assert_eq!(human_duration(time::Duration::seconds(-90)), "1 minute");
    }

    #[test]
    fn rfc3339_round_trip() {
        let t = parse_rfc3339("2025-07-19T10:00:34Z").unwrap();
        assert_eq!(t.unix_timestamp(), 1752919234);
        assert_eq!(format_rfc3339(t), "2025-07-19T10:00:34Z");
        assert!(parse_rfc3339("yesterday").is_err());
    }
}
