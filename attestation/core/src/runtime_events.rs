//! The Chrysalis runtime events: what the agent extends into TDX RTMR3 at
//! boot, and the register value a verifier expects from them.
//!
//! This is a wire format like the quote itself: the agent (which extends
//! the events), the auditor's measurement tool (which predicts RTMR3) and
//! any verifier must agree on it byte for byte, so it lives here, in the
//! attestation core, and every side uses this one definition.
//!
//! # The events
//!
//! The agent extends, in this order and before it serves anything:
//!
//! 1. [`RTMR3_CONFIG_EVENT`] (`config`), when the host supplied a runtime
//!    configuration: payload = SHA-384 of the configuration's
//!    [canonical JSON](canonical_json) bytes (48 raw bytes);
//! 2. [`RTMR3_GPU_EVENT`] (`gpu`), when GPU evidence was verified: payload =
//!    [`GpuEventState::payload`], the SHA-384 of the GPU state *the release
//!    determines*: GPU count, driver version (the driver is in the measured
//!    image), CC mode on, dev tools off — never the nonce, and nothing that
//!    differs from card to card (VBIOS version, per-GPU measurements: the
//!    boot gate checked those against NVIDIA's signed RIMs, and a client
//!    checks them again in the fresh GPU evidence it verifies itself). So
//!    two boots of the same configuration on any H100 give the same event,
//!    and `chrysalis measure image` predicts RTMR3 of a gpu configuration;
//! 3. [`RTMR3_BOOT_DONE_EVENT`] (`boot-done`), empty payload. After it the
//!    agent extends nothing more, so a quote whose RTMR3 equals the
//!    prediction proves both the inputs and that boot completed.
//!
//! In an event log the events carry [`CHRYSALIS_EVENT_TYPE`], which is not a
//! TCG type: a verifier recomputes each digest from name and payload and
//! never trusts a logged digest.
//!
//! # The served log
//!
//! The agent serves the events it extended as a [`LoggedEvent`] list (name,
//! payload) with its fresh evidence. The log is not signed and need not be:
//! a client replays it ([`replay_log`]) and compares the result with the
//! RTMR3 of the *verified* evidence in the same answer, then judges each
//! event ([`check_log_shape`]). A log that does not replay is refused.
//!
//! # Digest rule and byte order
//!
//! * Event digest ([`chrysalis_event_digest`]):
//!   `SHA-384("chrysalis:" ‖ name ‖ ":" ‖ payload)`; name is ASCII, the
//!   payload raw bytes (digests as their 48 bytes, not hex).
//! * Register extension: `RTMR := SHA-384(RTMR ‖ digest)`, starting from 48
//!   zero bytes ([`replay_rtmr3`]). Digests and registers are the raw 48
//!   bytes SHA-384 outputs; there is no integer and so no endianness
//!   anywhere in the rule. Hex (lowercase) is only a presentation.
//!
//! # Why canonical JSON
//!
//! The configuration is measured as bytes, but it is written and transported
//! as JSON, where key order and whitespace are free. [`canonical_json`] fixes
//! one byte form (keys sorted bytewise, no insignificant whitespace,
//! `serde_json`'s escaping and number formatting), so that the host that
//! launches the node, the agent that measures it and a client that checks a
//! quote all hash the same bytes for the same configuration, whatever order
//! the keys arrived in.

use sha2::{Digest, Sha384};

/// Event type the Chrysalis agent logs its RTMR3 events with. Not a TCG
/// type: a verifier recomputes the digest from name and payload
/// ([`chrysalis_event_digest`]) and never trusts a logged digest.
pub const CHRYSALIS_EVENT_TYPE: u32 = 0x0800_C001;
/// Name of the first RTMR3 event: the static configuration.
pub const RTMR3_CONFIG_EVENT: &str = "config";
/// Name of the optional RTMR3 event for verified GPU evidence.
pub const RTMR3_GPU_EVENT: &str = "gpu";
/// Name of the last RTMR3 event: boot finished, nothing more is extended.
pub const RTMR3_BOOT_DONE_EVENT: &str = "boot-done";

/// One runtime event the agent extends into RTMR3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeEvent {
    /// Event name ([`RTMR3_CONFIG_EVENT`], [`RTMR3_GPU_EVENT`] or
    /// [`RTMR3_BOOT_DONE_EVENT`]).
    pub name: &'static str,
    /// The payload measured with the name (48 raw bytes, or empty).
    pub payload: Vec<u8>,
    /// The digest extended: [`chrysalis_event_digest`] of name and payload.
    pub digest: [u8; 48],
    /// Readable description, e.g. `chrysalis:config (SHA-384 …)`.
    pub description: String,
}

impl RuntimeEvent {
    fn new(name: &'static str, payload: Vec<u8>, description: String) -> RuntimeEvent {
        RuntimeEvent {
            name,
            digest: chrysalis_event_digest(name, &payload),
            payload,
            description,
        }
    }
}

/// One entry of the runtime event log the agent serves: what it extended,
/// as name and payload (the digest is recomputed, never carried).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggedEvent {
    /// Event name (`config`, `gpu`, `boot-done`).
    pub name: String,
    /// The payload, hex in JSON (48 raw bytes, or empty).
    #[serde(with = "hex::serde")]
    pub payload: Vec<u8>,
}

impl From<&RuntimeEvent> for LoggedEvent {
    fn from(e: &RuntimeEvent) -> Self {
        LoggedEvent {
            name: e.name.to_owned(),
            payload: e.payload.clone(),
        }
    }
}

/// Most events a log may hold (the agent extends at most three).
pub const MAX_LOGGED_EVENTS: usize = 16;

/// RTMR3 after replaying `log` from zero, each digest recomputed from name
/// and payload ([`chrysalis_event_digest`]).
pub fn replay_log(log: &[LoggedEvent]) -> [u8; 48] {
    let digests: Vec<[u8; 48]> = log
        .iter()
        .map(|e| chrysalis_event_digest(&e.name, &e.payload))
        .collect();
    replay_rtmr3(digests.iter())
}

/// Checks the shape of a log: only known events, in the agent's order
/// (`config`, then `gpu`, then `boot-done`), each at most once, `boot-done`
/// present and last (nothing is extended after it), digests' payloads 48
/// bytes (`boot-done`: empty). Returns the first problem in words.
pub fn check_log_shape(log: &[LoggedEvent]) -> std::result::Result<(), String> {
    if log.len() > MAX_LOGGED_EVENTS {
        return Err(format!("{} events; at most {MAX_LOGGED_EVENTS}", log.len()));
    }
    let order = [RTMR3_CONFIG_EVENT, RTMR3_GPU_EVENT, RTMR3_BOOT_DONE_EVENT];
    let mut last: Option<usize> = None;
    for (i, e) in log.iter().enumerate() {
        let Some(rank) = order.iter().position(|n| *n == e.name) else {
            return Err(format!(
                "event {i} is {:?}, not a Chrysalis runtime event",
                e.name
            ));
        };
        if last.is_some_and(|l| l >= rank) {
            return Err(format!(
                "event {i} ({}) is out of order or repeated (expected config, gpu, boot-done, each at most once)",
                e.name
            ));
        }
        let want_len = if e.name == RTMR3_BOOT_DONE_EVENT {
            0
        } else {
            48
        };
        if e.payload.len() != want_len {
            return Err(format!(
                "event {i} ({}) has a {}-byte payload, expected {want_len}",
                e.name,
                e.payload.len()
            ));
        }
        last = Some(rank);
    }
    match log.last() {
        Some(e) if e.name == RTMR3_BOOT_DONE_EVENT => Ok(()),
        _ => Err("the log does not end with boot-done".into()),
    }
}

/// The digest the Chrysalis agent extends for an event:
/// `SHA-384("chrysalis:" ‖ name ‖ ":" ‖ payload)`.
pub fn chrysalis_event_digest(name: &str, payload: &[u8]) -> [u8; 48] {
    let mut buf = Vec::with_capacity(11 + name.len() + payload.len());
    buf.extend_from_slice(b"chrysalis:");
    buf.extend_from_slice(name.as_bytes());
    buf.push(b':');
    buf.extend_from_slice(payload);
    Sha384::digest(&buf).into()
}

/// The RTMR3 events the Chrysalis agent extends at boot, given the exact
/// configuration bytes it received (canonical JSON, [`canonical_json`]):
///
/// 1. `config`, payload = SHA-384(config) (48 raw bytes);
/// 2. `boot-done`, empty payload — after it the agent extends nothing, so a
///    quote with RTMR3 equal to [`rtmr3_expected`] proves both the
///    configuration and that boot completed.
pub fn rtmr3_events(config: &[u8]) -> Vec<RuntimeEvent> {
    rtmr3_boot_events(Some(config), None)
}

/// The general form of the agent's boot events, in this order: `config`
/// (when a runtime configuration was given), `gpu` (payload = the 48-byte
/// [`GpuEventState::payload`] of the GPUs the boot gate verified), then
/// `boot-done`.
pub fn rtmr3_boot_events(
    config: Option<&[u8]>,
    gpu_digest: Option<&[u8; 48]>,
) -> Vec<RuntimeEvent> {
    let mut events = Vec::with_capacity(3);
    if let Some(config) = config {
        let cfg: [u8; 48] = Sha384::digest(config).into();
        events.push(RuntimeEvent::new(
            RTMR3_CONFIG_EVENT,
            cfg.to_vec(),
            format!("chrysalis:config (SHA-384 {})", hex::encode(cfg)),
        ));
    }
    if let Some(g) = gpu_digest {
        events.push(RuntimeEvent::new(
            RTMR3_GPU_EVENT,
            g.to_vec(),
            format!("chrysalis:gpu (GPU state SHA-384 {})", hex::encode(g)),
        ));
    }
    events.push(RuntimeEvent::new(
        RTMR3_BOOT_DONE_EVENT,
        Vec::new(),
        "chrysalis:boot-done".into(),
    ));
    events
}

/// RTMR3 after extending `digests` in order, starting from 48 zero bytes:
/// each step is `RTMR := SHA-384(RTMR ‖ digest)`.
pub fn replay_rtmr3<'a>(digests: impl IntoIterator<Item = &'a [u8; 48]>) -> [u8; 48] {
    let mut reg = [0u8; 48];
    for d in digests {
        let mut h = Sha384::new();
        h.update(reg);
        h.update(d);
        reg = h.finalize().into();
    }
    reg
}

/// RTMR3 after the Chrysalis agent's boot events for `config`.
pub fn rtmr3_expected(config: &[u8]) -> [u8; 48] {
    replay_rtmr3(rtmr3_events(config).iter().map(|e| &e.digest))
}

/// RTMR3 after the boot events of an agent that measured `config` and, when
/// `gpu` is given, GPUs in that state (`config`, `gpu`, `boot-done`).
pub fn rtmr3_expected_with_gpu(config: &[u8], gpu: Option<&GpuEventState>) -> [u8; 48] {
    let payload = gpu.map(GpuEventState::payload);
    let events = rtmr3_boot_events(Some(config), payload.as_ref());
    replay_rtmr3(events.iter().map(|e| &e.digest))
}

/// The GPU state the `gpu` event commits to: exactly what a release fixes,
/// so that its RTMR3 can be predicted from the image and the VM shape.
///
/// Not in it, on purpose: the VBIOS version and the per-GPU measurement
/// blocks. They differ between cards of the same model (an image build
/// cannot know them); the gate verified them against NVIDIA's signed RIMs
/// before it set the GPUs ready, and a client verifies them again in the
/// fresh, key-bound GPU evidence the node serves. What this event adds is
/// that the gate ran, before the engine, and what it found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuEventState {
    /// Every GPU reported CC mode on.
    pub cc: bool,
    /// Some GPU reported dev-tools mode on, or did not report it (a release
    /// predicts `false`).
    pub devtools: bool,
    /// The driver version all GPUs reported, e.g. `550.163.01` (the NVIDIA
    /// kernel module's version, the upstream part of the Debian package
    /// version). GPUs reporting different or no versions give a value no
    /// release predicts: their versions joined by `,`, unknown as `?`.
    pub driver: String,
    /// Number of GPUs verified.
    pub gpus: u32,
}

impl GpuEventState {
    /// What a release predicts: `gpus` GPUs with driver `driver`, CC on,
    /// dev tools off.
    pub fn expected(gpus: u32, driver: &str) -> GpuEventState {
        GpuEventState {
            cc: true,
            devtools: false,
            driver: driver.to_owned(),
            gpus,
        }
    }

    /// The state's canonical JSON ([`canonical_json`]), e.g.
    /// `{"cc":true,"devtools":false,"driver":"550.163.01","gpus":1}`.
    pub fn canonical_json(&self) -> Vec<u8> {
        canonical_json(&serde_json::json!({
            "cc": self.cc,
            "devtools": self.devtools,
            "driver": self.driver,
            "gpus": self.gpus,
        }))
    }

    /// The `gpu` event's payload: SHA-384 of [`Self::canonical_json`]
    /// (48 raw bytes).
    pub fn payload(&self) -> [u8; 48] {
        Sha384::digest(self.canonical_json()).into()
    }
}

/// Canonical JSON bytes of a value: object keys sorted bytewise (UTF-8), no
/// insignificant whitespace, `serde_json`'s string escaping and number
/// formatting. Two hosts serialising the same configuration get the same
/// bytes whatever order the keys arrived in.
pub fn canonical_json(value: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(v: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match v {
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_scalar(&Value::String(k.clone()), out);
                out.push(b':');
                write_canonical(&map[k], out);
            }
            out.push(b'}');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(v: &serde_json::Value, out: &mut Vec<u8>) {
    // Serialising a scalar Value into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, v).is_err() {
        out.extend_from_slice(b"null");
    }
}

#[cfg(test)]
mod tests {
    /// Known answers computed outside Rust (Python hashlib, by the rules in
    /// the module docs), so that the agent, `measure image` and the clients
    /// cannot drift together from the documented format.
    #[test]
    fn gpu_event_payload_and_register_known_answers() {
        let s = super::GpuEventState::expected(1, "550.163.01");
        assert_eq!(
            s.canonical_json(),
            br#"{"cc":true,"devtools":false,"driver":"550.163.01","gpus":1}"#
        );
        assert_eq!(
            hex::encode(s.payload()),
            "966a2ee0811b970ba3cc8dc92da8969bb5d0dc1cd93f5f1c772a33b7b05572801adedde6b68548a86fe08934b468e6bf"
        );
        assert_eq!(
            hex::encode(super::rtmr3_expected_with_gpu(b"{}", Some(&s))),
            "51792d0d03cb59bb3e33318625a0a408a3f31c1be8f15d7393ac229c8cdb84ad887f7a72c8aa25b80c6c07833ae7b7ca"
        );
        // Without a gpu event it is the cpu prediction; every field counts.
        assert_eq!(
            super::rtmr3_expected_with_gpu(b"{}", None),
            super::rtmr3_expected(b"{}")
        );
        let base = super::rtmr3_expected_with_gpu(b"{}", Some(&s));
        for other in [
            super::GpuEventState {
                cc: false,
                ..s.clone()
            },
            super::GpuEventState {
                devtools: true,
                ..s.clone()
            },
            super::GpuEventState::expected(2, "550.163.01"),
            super::GpuEventState::expected(1, "550.163.02"),
        ] {
            assert_ne!(super::rtmr3_expected_with_gpu(b"{}", Some(&other)), base);
        }
    }

    #[test]
    fn log_replays_and_its_shape_is_judged() {
        let cfg = super::rtmr3_boot_events(Some(b"{}"), Some(&[7; 48]));
        let log: Vec<super::LoggedEvent> = cfg.iter().map(Into::into).collect();
        assert_eq!(
            super::replay_log(&log),
            super::replay_rtmr3(cfg.iter().map(|e| &e.digest))
        );
        assert!(super::check_log_shape(&log).is_ok());
        let json = serde_json::to_string(&log).unwrap();
        assert!(json.contains("\"name\":\"boot-done\""), "{json}");
        let back: Vec<super::LoggedEvent> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, log);
        // An extra boot-done, a missing one, a reordering, an unknown event.
        let mut twice = log.clone();
        twice.push(log[2].clone());
        assert!(super::check_log_shape(&twice)
            .unwrap_err()
            .contains("out of order or repeated"));
        assert!(super::check_log_shape(&log[..2])
            .unwrap_err()
            .contains("boot-done"));
        let swapped = vec![log[1].clone(), log[0].clone(), log[2].clone()];
        assert!(super::check_log_shape(&swapped).is_err());
        let mut unknown = log.clone();
        unknown.insert(
            0,
            super::LoggedEvent {
                name: "debug-shell".into(),
                payload: vec![],
            },
        );
        assert!(super::check_log_shape(&unknown)
            .unwrap_err()
            .contains("debug-shell"));
    }

    use super::*;

    fn sha384(data: &[u8]) -> [u8; 48] {
        Sha384::digest(data).into()
    }

    #[test]
    fn canonical_json_sorts_keys_recursively() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{ "b": [1, {"z": 1, "a": "x\n"}], "a": null }"#).unwrap();
        assert_eq!(
            String::from_utf8(canonical_json(&v)).unwrap(),
            r#"{"a":null,"b":[1,{"a":"x\n","z":1}]}"#
        );
    }

    #[test]
    fn rtmr3_rule() {
        let cfg = b"{}";
        let ev = rtmr3_events(cfg);
        let mut first = b"chrysalis:config:".to_vec();
        first.extend_from_slice(&sha384(cfg));
        assert_eq!(ev[0].digest, sha384(&first));
        assert_eq!(ev[1].digest, sha384(b"chrysalis:boot-done:"));
        assert_eq!(
            rtmr3_expected(cfg),
            replay_rtmr3(ev.iter().map(|e| &e.digest))
        );
        assert_ne!(rtmr3_expected(cfg), rtmr3_expected(b"{\"a\":1}"));
    }

    #[test]
    fn replay_is_hash_of_concatenation_from_zero() {
        let d = sha384(b"x");
        let mut cat = vec![0u8; 48];
        cat.extend_from_slice(&d);
        assert_eq!(replay_rtmr3([&d]), sha384(&cat));
        assert_eq!(replay_rtmr3([]), [0u8; 48]);
    }

    #[test]
    fn boot_events_order_and_payloads() {
        let g = [7u8; 48];
        let ev = rtmr3_boot_events(Some(b"{}"), Some(&g));
        let names: Vec<&str> = ev.iter().map(|e| e.name).collect();
        assert_eq!(names, ["config", "gpu", "boot-done"]);
        assert_eq!(ev[1].payload, g.to_vec());
        assert_eq!(ev[1].digest, chrysalis_event_digest("gpu", &g));
        let only_done = rtmr3_boot_events(None, None);
        assert_eq!(only_done.len(), 1);
        assert_eq!(only_done[0].description, "chrysalis:boot-done");
    }
}
