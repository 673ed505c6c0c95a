//! The host-supplied runtime configuration (endpoint, model, price, …) and
//! its measurement before the agent serves.
//!
//! The host hands the guest one JSON object (the image delivers it as a
//! file; see the image documentation for the channel). The agent hashes its
//! canonical form ([`canonical_json`]: keys sorted, no whitespace) so that a
//! client can recompute the measurement from the same JSON, and then:
//!
//! * **TDX**: extends RTMR3 with the `config` event (payload SHA-384 of the
//!   canonical bytes) and the `boot-done` event, exactly the events
//!   [`rtmr3_boot_events`] defines and `chrysalis measure --config` predicts.
//!   After `boot-done` nothing more is extended, so a quote whose RTMR3
//!   equals the prediction proves both the configuration and the order.
//! * **SEV-SNP** (no runtime registers): the host must have launched the
//!   guest with `HOST_DATA` = SHA-256 of the canonical bytes; the agent
//!   reads its own report and refuses to start when they differ, so a
//!   client that pins `host_data` pins the configuration.
//!
//! Either way this happens before the first certificate is made: evidence
//! the agent serves already carries the measured configuration.

use std::path::Path;

use chrysalis_attestation::provider::EvidenceProvider;
use chrysalis_attestation::runtime_events::{
    canonical_json, check_log_shape, replay_log, rtmr3_boot_events, LoggedEvent,
};
use chrysalis_attestation::snp::SnpReport;
use chrysalis_attestation::tdx::TdxQuote;
use chrysalis_attestation::Tee;
use sha2::{Digest, Sha256, Sha384};

use crate::error::{Error, Result};

/// Largest runtime configuration accepted (bytes of JSON).
pub const MAX_RUNTIME_CONFIG_BYTES: usize = 64 * 1024;

/// A parsed runtime configuration in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Canonical JSON bytes (what is measured).
    pub canonical: Vec<u8>,
}

impl RuntimeConfig {
    /// Parses JSON text: it must be one object.
    pub fn parse(text: &[u8], origin: &str) -> Result<Self> {
        if text.len() > MAX_RUNTIME_CONFIG_BYTES {
            return Err(Error::Config(format!(
                "{origin}: runtime configuration is {} bytes, more than {MAX_RUNTIME_CONFIG_BYTES}",
                text.len()
            )));
        }
        let value: serde_json::Value = serde_json::from_slice(text).map_err(|e| {
            Error::Config(format!("{origin}: runtime configuration is not JSON: {e}"))
        })?;
        if !value.is_object() {
            return Err(Error::Config(format!(
                "{origin}: runtime configuration must be a JSON object"
            )));
        }
        Ok(Self {
            canonical: canonical_json(&value),
        })
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read(path).map_err(|e| Error::Io {
            what: format!("reading the runtime configuration {}", path.display()),
            source: e,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// SHA-384 of the canonical bytes (the `config` event's payload).
    pub fn sha384(&self) -> [u8; 48] {
        Sha384::digest(&self.canonical).into()
    }

    /// SHA-256 of the canonical bytes (the expected SNP `HOST_DATA`).
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(&self.canonical).into()
    }
}

/// Largest recorded RTMR3 log read back (bytes).
const MAX_LOG_BYTES: u64 = 64 * 1024;

/// The agent's boot measurements, in order: the runtime configuration
/// (when given), the verified GPU state a release fixes (`GpuEventState`, when a GPU check passed),
/// then `boot-done` — on TDX as RTMR3 events ([`rtmr3_boot_events`]); on
/// SEV-SNP the configuration is checked against HOST_DATA and the GPU
/// digest travels in the RA-TLS claims only. With neither, nothing is
/// measured. Call once, before any evidence is served. Returns what was
/// done, in words, and the TDX event log to serve.
///
/// **Never twice.** With `log_path` (the image passes
/// `/run/chrysalis-agent/rtmr3-events.json`, a guest tmpfs the host cannot
/// write, kept across agent restarts), the events extended are recorded
/// there after the last extend. An agent that restarts finds the record,
/// checks that it replays to the TD's current RTMR3, extends nothing and
/// serves the recorded log; a record that does not replay (or a damaged
/// one) stops the agent: extending again would make RTMR3 unpredictable, so
/// the VM must be restarted. (A client replays the served log against the
/// quote anyway: the record is a convenience, never trusted.)
pub fn measure_boot(
    provider: &dyn EvidenceProvider,
    config: Option<&RuntimeConfig>,
    gpu_state: Option<&[u8; 48]>,
    log_path: Option<&Path>,
) -> Result<(String, Vec<LoggedEvent>)> {
    if config.is_none() && gpu_state.is_none() {
        return Ok(("nothing to measure at boot".into(), Vec::new()));
    }
    let err = |e: chrysalis_attestation::Error| Error::Provider {
        provider: provider.name().into(),
        message: e.to_string(),
    };
    match provider.tee() {
        Tee::Tdx => {
            if let Some(path) = log_path.filter(|p| p.exists()) {
                let log = recorded_log(path)?;
                let raw = provider.evidence(&[0; 64]).map_err(err)?;
                let quote = TdxQuote::parse(&raw.bytes).map_err(|e| Error::Provider {
                    provider: provider.name().into(),
                    message: format!("reading RTMR3 from our own quote: {e}"),
                })?;
                let rtmr3 = quote.body.td10().rtmr[3];
                if replay_log(&log) != rtmr3 {
                    return Err(Error::Config(format!(
                        "{}: the recorded RTMR3 events replay to {}, but RTMR3 is {}: refusing to extend again (restart the VM)",
                        path.display(),
                        hex::encode(replay_log(&log)),
                        hex::encode(rtmr3)
                    )));
                }
                let names: Vec<&str> = log.iter().map(|e| e.name.as_str()).collect();
                return Ok((
                    format!(
                        "RTMR3 already measured ({}; agent restarted): serving the recorded log, extending nothing",
                        names.join(", ")
                    ),
                    log,
                ));
            }
            let canonical = config.map(|c| c.canonical.as_slice());
            let events = rtmr3_boot_events(canonical, gpu_state);
            for event in &events {
                provider.extend_rtmr3(&event.digest).map_err(err)?;
            }
            let log: Vec<LoggedEvent> = events.iter().map(LoggedEvent::from).collect();
            if let Some(path) = log_path {
                let json = serde_json::to_vec(&log).map_err(|e| Error::Config(e.to_string()))?;
                chrysalis_attestation::fsutil::write_atomic(path, &json).map_err(|e| {
                    Error::Config(format!(
                        "recording the RTMR3 events at {}: {e}",
                        path.display()
                    ))
                })?;
            }
            let names: Vec<&str> = events.iter().map(|e| e.description.as_str()).collect();
            Ok((format!("measured into RTMR3: {}", names.join(", ")), log))
        }
        Tee::Snp => {
            let Some(config) = config else {
                return Ok((
                    "GPU evidence digest bound through the RA-TLS claims (SNP)".into(),
                    Vec::new(),
                ));
            };
            let raw = provider.evidence(&[0; 64]).map_err(err)?;
            let report = SnpReport::parse(&raw.bytes).map_err(|e| Error::Provider {
                provider: provider.name().into(),
                message: format!("reading HOST_DATA from our own report: {e}"),
            })?;
            let want = config.sha256();
            if report.host_data != want {
                return Err(Error::Config(format!(
                    "the guest was launched with HOST_DATA {} but the runtime configuration's \
                     SHA-256 is {}: the host must launch the guest with the configuration it \
                     hands over (chrysalis launch --config FILE does; without --config it \
                     passes the default configuration's)",
                    hex::encode(report.host_data),
                    hex::encode(want)
                )));
            }
            Ok((
                format!(
                    "runtime configuration matches HOST_DATA (SHA-256 {})",
                    hex::encode(want)
                ),
                Vec::new(),
            ))
        }
    }
}

/// Reads and checks a recorded RTMR3 log.
fn recorded_log(path: &Path) -> Result<Vec<LoggedEvent>> {
    let bad = |why: String| Error::Config(format!("{}: {why} (restart the VM)", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if meta.len() > MAX_LOG_BYTES {
        return Err(bad(format!(
            "{} bytes, more than {MAX_LOG_BYTES}",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let log: Vec<LoggedEvent> =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not an RTMR3 event log: {e}")))?;
    check_log_shape(&log).map_err(|e| bad(format!("recorded RTMR3 log: {e}")))?;
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrysalis_attestation::runtime_events::rtmr3_expected;
    use chrysalis_sim::SimProvider;

    /// The configuration alone, as the agent measures it at boot.
    fn measure(provider: &dyn EvidenceProvider, config: &RuntimeConfig) -> Result<String> {
        measure_boot(provider, Some(config), None, None).map(|(what, _)| what)
    }

    #[test]
    fn canonical_form_ignores_key_order_and_whitespace() {
        let a = RuntimeConfig::parse(br#"{"b": 1, "a": {"y": 2, "x": [1, 2]}}"#, "a").unwrap();
        let b = RuntimeConfig::parse(br#"{"a":{"x":[1,2],"y":2},"b":1}"#, "b").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.canonical, br#"{"a":{"x":[1,2],"y":2},"b":1}"#);
    }

    #[test]
    fn refusals_name_the_problem() {
        for (text, want) in [
            (&b"[1]"[..], "must be a JSON object"),
            (b"{", "not JSON"),
            (b"", "not JSON"),
        ] {
            let e = RuntimeConfig::parse(text, "cfg.json")
                .unwrap_err()
                .to_string();
            assert!(e.contains("cfg.json") && e.contains(want), "{e}");
        }
        let big = vec![b' '; MAX_RUNTIME_CONFIG_BYTES + 1];
        assert!(RuntimeConfig::parse(&big, "x")
            .unwrap_err()
            .to_string()
            .contains("more than"));
    }

    #[test]
    fn tdx_rtmr3_matches_what_chrysalis_measure_predicts() {
        let cfg = RuntimeConfig::parse(br#"{"endpoint":"node:8443","price":3}"#, "t").unwrap();
        let sim = SimProvider::new(Tee::Tdx).unwrap();
        measure(&sim, &cfg).unwrap();
        let q = TdxQuote::parse(&sim.evidence(&[0; 64]).unwrap().bytes).unwrap();
        assert_eq!(q.body.td10().rtmr[3], rtmr3_expected(&cfg.canonical));
    }

    #[test]
    fn snp_host_data_must_match() {
        let cfg = RuntimeConfig::parse(br#"{"model":"m"}"#, "t").unwrap();
        let good = SimProvider::new(Tee::Snp)
            .unwrap()
            .with_host_data(cfg.sha256());
        assert!(measure(&good, &cfg).unwrap().contains("HOST_DATA"));
        let bad = SimProvider::new(Tee::Snp).unwrap().with_host_data([0; 32]);
        let e = measure(&bad, &cfg).unwrap_err().to_string();
        assert!(
            e.contains("HOST_DATA") && e.contains(&hex::encode(cfg.sha256())),
            "{e}"
        );
    }

    #[test]
    fn a_restarted_agent_extends_nothing_and_serves_the_recorded_log() {
        let cfg = RuntimeConfig::parse(b"{}", "t").unwrap();
        let sim = SimProvider::new(Tee::Tdx).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("rtmr3-events.json");
        let (_, log) = measure_boot(&sim, Some(&cfg), Some(&[5; 48]), Some(&log_path)).unwrap();
        assert_eq!(
            log.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["config", "gpu", "boot-done"]
        );
        let rtmr3 = |p: &SimProvider| {
            TdxQuote::parse(&p.evidence(&[0; 64]).unwrap().bytes)
                .unwrap()
                .body
                .td10()
                .rtmr[3]
        };
        let before = rtmr3(&sim);
        assert_eq!(replay_log(&log), before);
        // Restart: same TD (the simulator keeps RTMR3 like hardware).
        let (what, again) =
            measure_boot(&sim, Some(&cfg), Some(&[5; 48]), Some(&log_path)).unwrap();
        assert!(what.contains("extending nothing"), "{what}");
        assert_eq!(again, log);
        assert_eq!(rtmr3(&sim), before, "nothing was extended twice");
        // A record that does not replay (another TD, or a tampered file)
        // stops the agent instead of extending again.
        let other = SimProvider::new(Tee::Tdx).unwrap();
        let e = measure_boot(&other, Some(&cfg), None, Some(&log_path))
            .unwrap_err()
            .to_string();
        assert!(e.contains("refusing to extend again"), "{e}");
        std::fs::write(&log_path, b"[{\"name\":\"boot-done\",\"payload\":\"\"},{\"name\":\"boot-done\",\"payload\":\"\"}]").unwrap();
        let e = measure_boot(&sim, Some(&cfg), None, Some(&log_path))
            .unwrap_err()
            .to_string();
        assert!(e.contains("out of order or repeated"), "{e}");
    }
}
