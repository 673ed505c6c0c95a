//! Event-log replay against real quotes (go-tdx-guest CCEL, dstack JSON
//! logs), RTMR3 recomputation, comparison, and parser totality.

use std::path::PathBuf;

use chrysalis_attestation::evidence::{decode, Evidence};
use chrysalis_measurements::tdx::eventlog::{compare, dstack_event_digest, EventLog, LogFormat};
use chrysalis_measurements::tdx::{replay_digests, Digest384, MeasuredEvent, Register};
use proptest::prelude::*;

fn vectors() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors");
    if p.is_dir() {
        Some(p)
    } else {
        println!("skipping: ../shared/vectors not found");
        None
    }
}

fn quote_rtmrs(bytes: &[u8]) -> [Digest384; 4] {
    let d = decode(bytes).expect("quote decodes");
    match d.evidence {
        Evidence::Tdx(q) => q.td_report().rtmr,
        Evidence::Snp(_) => panic!("not a TDX quote"),
    }
}

/// (quote RTMRs, parsed log) of a dstack verifier fixture.
fn dstack_fixture(v: &std::path::Path, name: &str) -> ([Digest384; 4], EventLog) {
    let text = std::fs::read(v.join("tdx").join(name)).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&text).unwrap();
    let quote = json["quote"].as_str().unwrap();
    let regs = quote_rtmrs(quote.as_bytes());
    // The whole fixture: the parser finds its `event_log` field.
    let log = EventLog::parse(&text, name).unwrap();
    (regs, log)
}

#[test]
fn gotdx_ccel_replays_to_the_cos_quote() {
    let Some(v) = vectors() else { return };
    let ccel = std::fs::read(v.join("tdx/gotdx_ccel_data.dat")).unwrap();
    let log = EventLog::parse(&ccel, "gotdx_ccel_data.dat").unwrap();
    assert_eq!(log.format, LogFormat::Tcg2);
    let spec = log.spec_id.as_ref().unwrap();
    assert_eq!(spec.algorithms, vec![(0x000c, 48)]);
    assert_eq!(log.events.len(), 43);
    // 256 KiB area, the rest 0xFF.
    let consumed = log.events.last().unwrap().offset.unwrap();
    assert!(consumed < ccel.len() && log.padding > 200_000);
    let quote = std::fs::read(v.join("tdx/gotdx_cos-113-tdx-quote.dat")).unwrap();
    let expected = quote_rtmrs(&quote);
    let got = log.replay();
    for i in 0..4 {
        assert_eq!(hex::encode(got[i]), hex::encode(expected[i]), "RTMR{i}");
    }
    // Readable descriptions of known events.
    let d: Vec<&str> = log.events.iter().map(|e| e.description.as_str()).collect();
    assert!(
        d[0].starts_with("EV_EFI_HANDOFF_TABLES2 \"TdxTable\""),
        "{}",
        d[0]
    );
    assert!(d[2].contains("SecureBoot"), "{}", d[2]);
    assert!(d
        .iter()
        .any(|x| x.contains("Exit Boot Services Returned with Success")));
    // The CC MR index mapping: events in MR index 2 land in RTMR1.
    assert_eq!(log.events[14].register, Register::Rtmr1);
}

#[test]
fn dstack_quote_report_replays_all_four_rtmrs() {
    let Some(v) = vectors() else { return };
    let (regs, log) = dstack_fixture(&v, "dstack_verifier_quote-report.json");
    assert_eq!(log.format, LogFormat::DstackJson);
    assert_eq!(log.events.len(), 28);
    assert_eq!(log.replay(), regs);
    // Here the logged RTMR3 digests are right: they equal the recomputed ones.
    for e in log.events.iter().filter(|e| e.register == Register::Rtmr3) {
        assert_eq!(e.stored_digest, Some(e.digest), "{}", e.description);
        assert_eq!(
            e.digest,
            dstack_event_digest(e.event_type, e.name.as_deref().unwrap_or(""), &e.data)
        );
    }
}

#[test]
fn dstack_lite_rtmr3_replays_only_with_recomputed_digests() {
    let Some(v) = vectors() else { return };
    let (regs, log) = dstack_fixture(&v, "dstack_verifier_tdx-lite-getquote.json");
    assert_eq!(log.events.len(), 29);
    let replayed = log.replay();
    for i in 0..3 {
        assert_eq!(replayed[i], regs[i], "RTMR{i} from stored digests");
    }
    // Fact 1: recomputing RTMR3 digests from the payloads gives the quote.
    assert_eq!(hex::encode(replayed[3]), hex::encode(regs[3]));
    // Fact 2: the digests the log stores for RTMR3 do not.
    let rtmr3: Vec<_> = log
        .events
        .iter()
        .filter(|e| e.register == Register::Rtmr3)
        .collect();
    assert_eq!(rtmr3.len(), 9);
    assert!(rtmr3.iter().all(|e| e.stored_digest != Some(e.digest)));
    let stored: Vec<Digest384> = rtmr3.iter().filter_map(|e| e.stored_digest).collect();
    assert_ne!(replay_digests(stored.iter()), regs[3]);
}

#[test]
fn compare_locates_a_changed_event() {
    let Some(v) = vectors() else { return };
    let (_, log) = dstack_fixture(&v, "dstack_verifier_quote-report.json");
    // Expectation = the log's own RTMR1 events; this only exercises the
    // diff (the real cross-checks are in tdx_rtmr.rs).
    let mut expected: Vec<MeasuredEvent> = log
        .events
        .iter()
        .filter(|e| e.register == Register::Rtmr1)
        .map(|e| MeasuredEvent {
            register: e.register,
            event_type: e.event_type,
            digest: e.digest,
            description: e.description.clone(),
        })
        .collect();
    assert!(compare(&expected, &log.events).is_match());
    expected[2].digest[0] ^= 1;
    let c = compare(&expected, &log.events);
    let d = c.first().unwrap();
    assert_eq!(d.register, Register::Rtmr1);
    assert_eq!(d.position, 2);
    // RTMR1's third event is the separator, log event 15.
    assert_eq!(d.log_index, Some(15));
    assert!(d.to_string().contains("EV_SEPARATOR"), "{d}");
    expected.push(expected[0].clone());
    expected[2].digest[0] ^= 1;
    let c = compare(&expected, &log.events);
    assert_eq!(c.first().unwrap().actual, None);
    assert_eq!(c.first().unwrap().position, 5);
}

#[test]
fn chrysalis_rtmr3_log_is_recomputed_with_the_chrysalis_rule() {
    use chrysalis_measurements::tdx::rtmr::{rtmr3_events, rtmr3_expected, CHRYSALIS_EVENT_TYPE};
    use chrysalis_measurements::tdx::sha384;
    let config = br#"{"models":["m"],"node":"n1"}"#;
    // As the agent would log it; the digest fields are deliberately wrong
    // and must be ignored.
    let text = serde_json::json!([
        { "imr": 3, "event_type": CHRYSALIS_EVENT_TYPE, "digest": "ff".repeat(48),
          "event": "config", "event_payload": hex::encode(sha384(config)) },
        { "imr": 3, "event_type": CHRYSALIS_EVENT_TYPE, "digest": "",
          "event": "boot-done", "event_payload": "" },
    ])
    .to_string();
    let log = EventLog::parse(text.as_bytes(), "agent.json").unwrap();
    assert_eq!(log.replay()[3], rtmr3_expected(config));
    assert!(compare(&rtmr3_events(config), &log.events).is_match());
    let other = compare(&rtmr3_events(b"{}"), &log.events);
    assert_eq!(other.first().unwrap().position, 0);
}

#[test]
fn every_prefix_of_a_real_log_parses_or_fails_cleanly() {
    let Some(v) = vectors() else { return };
    let ccel = std::fs::read(v.join("tdx/gotdx_ccel_data.dat")).unwrap();
    let end = 18101; // where the padding starts
    for n in (0..end).step_by(7) {
        let r = EventLog::parse_tcg2(&ccel[..n], "prefix");
        if let Err(e) = r {
            assert!(e.to_string().contains("prefix"), "{e}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn binary_parser_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = EventLog::parse_tcg2(&bytes, "fuzz");
    }

    #[test]
    fn mutated_real_log_never_panics(pos in 0usize..18200, val in any::<u8>(), cut in 0usize..18200) {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/tdx/gotdx_ccel_data.dat");
        if let Ok(mut b) = std::fs::read(p) {
            b.truncate(cut.max(pos + 1).min(b.len()));
            if pos < b.len() { b[pos] = val; }
            if let Ok(log) = EventLog::parse_tcg2(&b, "m") {
                let _ = log.replay();
            }
        }
    }

    #[test]
    fn json_parser_is_total(s in "\\PC{0,200}") {
        let _ = EventLog::parse(s.as_bytes(), "fuzz");
    }

    #[test]
    fn json_events_with_random_fields(imr in 0u64..6, ty in any::<u32>(), digest in "[0-9a-f]{0,100}",
                                     name in "\\PC{0,20}", payload in "[0-9a-fA-F]{0,40}") {
        let text = serde_json::json!([{ "imr": imr, "event_type": ty, "digest": digest,
                                         "event": name, "event_payload": payload }]).to_string();
        let _ = EventLog::parse(text.as_bytes(), "fuzz");
    }
}
