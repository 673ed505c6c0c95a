//! Comparing a log with independently predicted events: where, register by
//! register, the log first departs from the prediction.

use std::fmt;

use serde::Serialize;

use super::describe::type_label;
use super::log::LogEvent;
use crate::tdx::digest::Digest384;
use crate::tdx::event::{MeasuredEvent, Register};

/// One side of a departure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventSummary {
    /// Event type.
    pub event_type: u32,
    /// Its TCG name (or hex).
    pub event_type_name: String,
    /// The digest.
    #[serde(with = "crate::tdx::digest::hex48")]
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
    use super::super::tcg2::build_log;
    use super::super::EventLog;
    use super::*;
    use crate::tdx::digest::sha384;

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
