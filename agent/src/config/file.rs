//! The TOML configuration file ([`FileConfig`]) and how it is laid over
//! the defaults ([`Config::apply_file`]).
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::settings::Config;
use super::upstream::Upstream;
use super::values::{parse_addr, parse_duration, parse_sim, parse_sim_sets, parse_tee};
use crate::error::{Error, Result};

impl Config {
    /// Applies a parsed configuration file on top of `self`.
    pub fn apply_file(&mut self, f: FileConfig) -> Result<()> {
        if let Some(p) = f.provider {
            self.provider = p
                .parse()
                .map_err(|e| Error::Config(format!("provider: {e}")))?;
        }
        if let Some(d) = f.sim_quote_latency {
            self.sim_quote_latency = dur("sim_quote_latency", &d)?;
        }
        let explicit_tee = match f.sim_tee {
            Some(t) => {
                self.sim_tee = parse_tee(&t).map_err(|e| Error::Config(format!("sim_tee: {e}")))?;
                Some(self.sim_tee)
            }
            None => None,
        };
        if let Some(r) = parse_sim(
            f.sim_release.as_deref(),
            f.sim_configuration.as_deref(),
            explicit_tee,
            "sim_release / sim_configuration",
        )? {
            self.sim_tee = r.tee();
            self.sim.release = Some(r);
        }
        if let Some(sets) = f.sim_set {
            self.sim.overrides = parse_sim_sets(&sets)?;
        }
        if let Some(a) = f.listen {
            self.listen = parse_addr("listen", &a)?;
        }
        if let Some(u) = f.upstream {
            self.upstream = Upstream::parse(&u)?;
        }
        if let Some(a) = f.metrics_listen {
            self.metrics_listen = parse_addr("metrics_listen", &a)?;
        }
        if let Some(b) = f.allow_remote_metrics {
            self.allow_remote_metrics = b;
        }
        if let Some(l) = f.log_format {
            self.log_format = l
                .parse()
                .map_err(|e| Error::Config(format!("log_format: {e}")))?;
        }
        if let Some(d) = f.drain_timeout {
            self.drain_timeout = dur("drain_timeout", &d)?;
        }
        if let Some(w) = f.workers {
            self.workers = w;
        }
        if let Some(p) = f.runtime_config {
            self.runtime_config = Some(p);
        }
        if let Some(g) = f.gpu {
            if let Some(r) = g.rim_service_settings() {
                self.gpu_rim_service = Some(r);
            }
            self.gpu = Some(g.into_settings()?);
        }
        if let Some(l) = f.limits {
            let t = &mut self.limits;
            set(&mut t.max_body_bytes, l.max_body_bytes);
            set(&mut t.max_header_bytes, l.max_header_bytes);
            set(&mut t.max_headers, l.max_headers);
            set(&mut t.max_concurrent_requests, l.max_concurrent_requests);
            set(&mut t.max_connections, l.max_connections);
            set(&mut t.retry_after_secs, l.retry_after_secs);
            set(&mut t.max_attestation_requests, l.max_attestation_requests);
            set(&mut t.max_fresh_quotes, l.max_fresh_quotes);
            set(&mut t.max_batch_nonces, l.max_batch_nonces);
            set_dur(
                &mut t.fresh_interval,
                "limits.fresh_interval",
                l.fresh_interval,
            )?;
            set_dur(&mut t.idle_timeout, "limits.idle_timeout", l.idle_timeout)?;
            set_dur(
                &mut t.request_timeout,
                "limits.request_timeout",
                l.request_timeout,
            )?;
            set_dur(
                &mut t.handshake_timeout,
                "limits.handshake_timeout",
                l.handshake_timeout,
            )?;
            set_dur(
                &mut t.upstream_connect_timeout,
                "limits.upstream_connect_timeout",
                l.upstream_connect_timeout,
            )?;
        }
        if let Some(t) = f.tls {
            set_dur(
                &mut self.tls.cert_validity,
                "tls.cert_validity",
                t.cert_validity,
            )?;
            set_dur(
                &mut self.tls.renew_before,
                "tls.renew_before",
                t.renew_before,
            )?;
        }
        if let Some(e) = f.engine {
            if e.cmd.is_some() {
                self.engine.cmd = e.cmd;
            }
            let s = &mut self.engine;
            set_dur(
                &mut s.probe_interval,
                "engine.probe_interval",
                e.probe_interval,
            )?;
            set_dur(
                &mut s.ready_timeout,
                "engine.ready_timeout",
                e.ready_timeout,
            )?;
            set_dur(
                &mut s.backoff_initial,
                "engine.backoff_initial",
                e.backoff_initial,
            )?;
            set_dur(&mut s.backoff_max, "engine.backoff_max", e.backoff_max)?;
            set_dur(&mut s.stop_timeout, "engine.stop_timeout", e.stop_timeout)?;
        }
        Ok(())
    }
}

fn set<T>(slot: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *slot = v;
    }
}

fn set_dur(slot: &mut Duration, name: &str, v: Option<String>) -> Result<()> {
    if let Some(v) = v {
        *slot = dur(name, &v)?;
    }
    Ok(())
}

fn dur(name: &str, v: &str) -> Result<Duration> {
    parse_duration(v).map_err(|e| Error::Config(format!("{name}: {e}")))
}

/// The TOML configuration file; every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `tsm`, `ioctl` or `sim`.
    pub provider: Option<String>,
    /// `tdx` or `snp` (sim only).
    pub sim_tee: Option<String>,
    /// Extra time per simulated quote (sim only).
    pub sim_quote_latency: Option<String>,
    /// Published release the simulator plays (sim only; with
    /// `sim_configuration`).
    pub sim_release: Option<String>,
    /// Configuration of `sim_release` the simulator plays.
    pub sim_configuration: Option<String>,
    /// `FIELD=VALUE` overrides of the simulated report (sim only).
    pub sim_set: Option<Vec<String>>,
    /// HTTPS listener `ADDR:PORT`.
    pub listen: Option<String>,
    /// `http://ADDR:PORT` (loopback).
    pub upstream: Option<String>,
    /// Metrics listener `ADDR:PORT`.
    pub metrics_listen: Option<String>,
    /// Allow a non-loopback metrics listener.
    pub allow_remote_metrics: Option<bool>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    /// Drain deadline on SIGTERM.
    pub drain_timeout: Option<String>,
    /// Worker threads (0: one per CPU).
    pub workers: Option<usize>,
    /// Path of the host-supplied runtime configuration (JSON).
    pub runtime_config: Option<std::path::PathBuf>,
    /// `[gpu]`.
    pub gpu: Option<FileGpu>,
    /// `[limits]`.
    pub limits: Option<FileLimits>,
    /// `[tls]`.
    pub tls: Option<FileTls>,
    /// `[engine]`.
    pub engine: Option<FileEngine>,
}

/// `[limits]` of the file (see [`Limits`](super::settings::Limits)).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct FileLimits {
    pub max_body_bytes: Option<usize>,
    pub max_header_bytes: Option<usize>,
    pub max_headers: Option<usize>,
    pub max_concurrent_requests: Option<usize>,
    pub max_connections: Option<usize>,
    pub retry_after_secs: Option<u32>,
    pub max_attestation_requests: Option<usize>,
    pub max_fresh_quotes: Option<usize>,
    pub max_batch_nonces: Option<usize>,
    pub fresh_interval: Option<String>,
    pub idle_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub handshake_timeout: Option<String>,
    pub upstream_connect_timeout: Option<String>,
}

/// `[tls]` of the file (see [`TlsSettings`](super::settings::TlsSettings)).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct FileTls {
    pub cert_validity: Option<String>,
    pub renew_before: Option<String>,
}

/// `[gpu]` of the file (see [`crate::gpu::GpuSettings`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileGpu {
    /// `nvml`, `recorded` or `gate` (with `bundle`: the GPU gate's output).
    pub source: Option<String>,
    /// Recorded evidence bundle (JSON).
    pub bundle: Option<std::path::PathBuf>,
    /// Recorded hex attestation report (with `cert_chain`).
    pub report: Option<std::path::PathBuf>,
    /// Recorded PEM device certificate chain (with `report`).
    pub cert_chain: Option<std::path::PathBuf>,
    /// Policy file with a `[gpu]` section.
    pub policy: Option<std::path::PathBuf>,
    /// RIM files.
    #[serde(default)]
    pub rims: Vec<std::path::PathBuf>,
    /// OCSP cache directory.
    pub ocsp_cache: Option<std::path::PathBuf>,
    /// Never fetch OCSP responses or RIMs over the network.
    pub offline: Option<bool>,
    /// RIM service base URL: fetch the RIMs the files lack by id.
    pub rim_service: Option<String>,
    /// RIM cache directory (implies the RIM service, NVIDIA's by default).
    pub rim_cache: Option<std::path::PathBuf>,
}

impl FileGpu {
    /// The RIM service settings, when `rim_service` or `rim_cache` is set
    /// (the URL defaults to NVIDIA's).
    pub fn rim_service_settings(&self) -> Option<crate::gpu::RimServiceSettings> {
        if self.rim_service.is_none() && self.rim_cache.is_none() {
            return None;
        }
        let mut r = crate::gpu::RimServiceSettings::default();
        if let Some(u) = &self.rim_service {
            r.url = u.clone();
        }
        r.cache = self.rim_cache.clone();
        Some(r)
    }

    /// Checks the combination and builds the settings.
    pub fn into_settings(self) -> Result<crate::gpu::GpuSettings> {
        use crate::gpu::GpuSourceKind;
        let source =
            match (
                self.source.as_deref(),
                self.bundle,
                self.report,
                self.cert_chain,
            ) {
                (Some("nvml") | None, None, None, None) => GpuSourceKind::Nvml,
                (Some("recorded") | None, Some(b), None, None) => GpuSourceKind::RecordedBundle(b),
                (Some("gate"), Some(b), None, None) => GpuSourceKind::Gate(b),
                (Some("recorded") | None, None, Some(report), Some(cert_chain)) => {
                    GpuSourceKind::RecordedSdk { report, cert_chain }
                }
                (Some(s), ..) if s != "nvml" && s != "recorded" && s != "gate" => {
                    return Err(Error::Config(format!(
                        "gpu source `{s}`: expected nvml, recorded or gate"
                    )))
                }
                _ => return Err(Error::Config(
                    "gpu: give source = \"nvml\", or a recorded bundle, or report + cert_chain \
                     (not a mix)"
                        .into(),
                )),
            };
        Ok(crate::gpu::GpuSettings {
            source,
            policy: self.policy,
            rims: self.rims,
            ocsp_cache: self.ocsp_cache,
            offline: self.offline.unwrap_or(false),
        })
    }
}

/// `[engine]` of the file (see [`EngineSettings`](super::settings::EngineSettings)).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct FileEngine {
    pub cmd: Option<String>,
    pub probe_interval: Option<String>,
    pub ready_timeout: Option<String>,
    pub backoff_initial: Option<String>,
    pub backoff_max: Option<String>,
    pub stop_timeout: Option<String>,
}

impl FileConfig {
    /// Parses TOML text; errors name the file and the key.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::Config(format!("{origin}: {}", e.message())))
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            what: format!("reading config file {}", path.display()),
            source: e,
        })?;
        Self::parse(&text, &path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Limits, ProviderKind};
    use chrysalis_attestation::Tee;

    #[test]
    fn file_overrides_defaults_and_unknown_keys_fail() {
        let f = FileConfig::parse(
            r#"
            provider = "sim"
            sim_tee = "snp"
            listen = "127.0.0.1:1443"
            upstream = "http://127.0.0.1:8001"
            drain_timeout = "5s"
            [limits]
            max_body_bytes = 1024
            idle_timeout = "3s"
            [engine]
            cmd = "sleep 1000"
            backoff_max = "10s"
            "#,
            "t.toml",
        )
        .unwrap();
        let mut c = Config::with_provider(ProviderKind::Tsm);
        c.apply_file(f).unwrap();
        c.validate().unwrap();
        assert_eq!(c.provider, ProviderKind::Sim);
        assert_eq!(c.sim_tee, Tee::Snp);
        assert_eq!(c.listen.port(), 1443);
        assert_eq!(c.upstream.addr.port(), 8001);
        assert_eq!(c.limits.max_body_bytes, 1024);
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(3));
        assert_eq!(c.limits.request_timeout, Limits::default().request_timeout);
        assert_eq!(c.engine.cmd.as_deref(), Some("sleep 1000"));
        assert_eq!(c.drain_timeout, Duration::from_secs(5));

        let e = FileConfig::parse("[limits]\nmax_bodybytes = 3\n", "t.toml").unwrap_err();
        assert!(e.to_string().contains("max_bodybytes"), "{e}");
        let e = FileConfig::parse("[limits]\nidle_timeout = \"3 parsecs\"\n", "t.toml")
            .and_then(|f| Config::with_provider(ProviderKind::Sim).apply_file(f))
            .unwrap_err();
        assert!(e.to_string().contains("limits.idle_timeout"), "{e}");
    }
}
