//! The command line (a contract: scripts and images call it).
//!
//! `chrysalis-agent --provider sim|tsm|ioctl --listen ADDR:PORT
//! --upstream http://ADDR:PORT [--metrics-listen ADDR:PORT] [--config FILE]`
//! plus optional overrides of the file's settings.

use std::path::PathBuf;

use clap::Parser;

use crate::config::{
    parse_addr, parse_duration, parse_tee, Config, FileConfig, ProviderKind, Upstream,
};
use crate::error::{Error, Result};

/// Chrysalis node agent: RA-TLS front door and OpenAI-compatible proxy to
/// the local inference engine.
///
/// Serves HTTPS (TLS 1.3, HTTP/2 and HTTP/1.1) with a certificate that
/// carries TEE evidence, forwards /v1/chat/completions, /v1/completions,
/// /v1/embeddings and /v1/models to the engine, answers
/// GET /attestation?nonce=HEX, /attestation/batch?nonce=HEX and
/// /attestation/latest with fresh evidence, and exposes /healthz,
/// /readyz and /metrics. Logs one line containing `ready` once evidence and
/// engine are ready.
#[derive(Debug, Parser)]
#[command(name = "chrysalis-agent", version)]
pub struct Cli {
    /// Evidence provider: tsm (configfs-tsm), ioctl (/dev/sev-guest,
    /// /dev/tdx_guest) or sim (SIMULATED, proves nothing). Required here
    /// or in the config file.
    #[arg(long, value_name = "tsm|ioctl|sim")]
    pub provider: Option<String>,
    /// HTTPS listen address [default: 0.0.0.0:8443].
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// The engine's OpenAI-compatible API; must be loopback
    /// [default: http://127.0.0.1:8000].
    #[arg(long, value_name = "http://ADDR:PORT")]
    pub upstream: Option<String>,
    /// Metrics/health listener (plain HTTP), loopback unless
    /// --allow-remote-metrics [default: 127.0.0.1:9464].
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<String>,
    /// TOML configuration file; flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Allow a non-loopback --metrics-listen address.
    #[arg(long)]
    pub allow_remote_metrics: bool,
    /// Log format.
    #[arg(long, value_name = "text|json")]
    pub log_format: Option<String>,
    /// TEE simulated by --provider sim [default: tdx].
    #[arg(long, value_name = "tdx|snp")]
    pub sim_tee: Option<String>,
    /// With --provider sim: each quote takes this much longer, one at a
    /// time, like a TDX quote through configfs-tsm (about 1s) [default: 0].
    #[arg(long, value_name = "DURATION")]
    pub sim_quote_latency: Option<String>,
    /// /attestation/latest: a new evidence window this often while clients
    /// ask; evidence served is at most twice this old [default: 5s].
    #[arg(long, value_name = "DURATION")]
    pub fresh_interval: Option<String>,
    /// Start and supervise the engine with this shell command (restarted
    /// with exponential backoff when it exits).
    #[arg(long, value_name = "COMMAND")]
    pub engine_cmd: Option<String>,
    /// Largest request body in bytes (413 beyond) [default: 8388608].
    #[arg(long, value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Largest request head in bytes (431 beyond) [default: 32768].
    #[arg(long, value_name = "BYTES")]
    pub max_header_bytes: Option<usize>,
    /// Requests handled at once (503 + Retry-After beyond) [default: 512].
    #[arg(long, value_name = "N")]
    pub max_concurrent_requests: Option<usize>,
    /// Open client connections at most [default: 50000].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Keep-alive idle time and time to send a request head [default: 60s].
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// Whole-request time limit, streams included [default: 600s].
    #[arg(long, value_name = "DURATION")]
    pub request_timeout: Option<String>,
    /// How long SIGTERM waits for running requests [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub drain_timeout: Option<String>,
    /// Worker threads serving connections [default: one per CPU].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// The host-supplied runtime configuration (a JSON object: endpoint,
    /// model, price …). Measured before serving: TDX extends RTMR3 with
    /// it, SEV-SNP requires HOST_DATA = its SHA-256.
    #[arg(long, value_name = "FILE")]
    pub runtime_config: Option<PathBuf>,
    /// Attest the GPUs at boot from this source: `nvml` (the NVIDIA
    /// driver), `recorded` (with --gpu-bundle, or --gpu-report and
    /// --gpu-cert-chain) or `gate` (with --gpu-bundle: the bundle
    /// chrysalis-gpu-gate wrote this boot, verified again against its
    /// nonce). Not ready, and no request forwarded, unless the evidence
    /// verifies and meets the GPU policy.
    #[arg(long, value_name = "nvml|recorded|gate")]
    pub gpu: Option<String>,
    /// Recorded GPU evidence bundle (JSON).
    #[arg(long, value_name = "FILE")]
    pub gpu_bundle: Option<PathBuf>,
    /// Recorded GPU attestation report (hex, NVIDIA SDK format).
    #[arg(long, value_name = "FILE")]
    pub gpu_report: Option<PathBuf>,
    /// Recorded GPU device certificate chain (PEM).
    #[arg(long, value_name = "FILE")]
    pub gpu_cert_chain: Option<PathBuf>,
    /// Policy file whose `[gpu]` section applies [default: strict].
    #[arg(long, value_name = "FILE")]
    pub gpu_policy: Option<PathBuf>,
    /// A driver or VBIOS reference integrity manifest (repeatable).
    #[arg(long, value_name = "FILE")]
    pub gpu_rim: Vec<PathBuf>,
    /// OCSP response cache directory.
    #[arg(long, value_name = "DIR")]
    pub gpu_ocsp_cache: Option<PathBuf>,
    /// Use only cached OCSP responses.
    #[arg(long)]
    pub gpu_offline: bool,
}

impl Cli {
    /// Defaults, then the file, then the flags; validated.
    pub fn into_config(self) -> Result<Config> {
        let file = match &self.config {
            Some(p) => Some(FileConfig::load(p)?),
            None => None,
        };
        // The provider has no default: running without real evidence must
        // be a decision, and the real interface a choice the operator saw.
        let provider_flag = self
            .provider
            .as_deref()
            .map(|p| {
                p.parse::<ProviderKind>()
                    .map_err(|e| Error::Config(format!("--provider: {e}")))
            })
            .transpose()?;
        let file_has_provider = file.as_ref().is_some_and(|f| f.provider.is_some());
        let mut cfg = Config::with_provider(provider_flag.unwrap_or(ProviderKind::Tsm));
        if let Some(f) = file {
            cfg.apply_file(f)?;
        }
        match provider_flag {
            Some(p) => cfg.provider = p,
            None if !file_has_provider => {
                return Err(Error::Config(
                    "no evidence provider: give --provider tsm|ioctl|sim (or provider = \"…\" in the config file)".into(),
                ))
            }
            None => {}
        }
        if let Some(a) = &self.listen {
            cfg.listen = parse_addr("--listen", a)?;
        }
        if let Some(u) = &self.upstream {
            cfg.upstream = Upstream::parse(u)?;
        }
        if let Some(a) = &self.metrics_listen {
            cfg.metrics_listen = parse_addr("--metrics-listen", a)?;
        }
        if self.allow_remote_metrics {
            cfg.allow_remote_metrics = true;
        }
        if let Some(l) = &self.log_format {
            cfg.log_format = l
                .parse()
                .map_err(|e| Error::Config(format!("--log-format: {e}")))?;
        }
        if let Some(t) = &self.sim_tee {
            cfg.sim_tee = parse_tee(t).map_err(|e| Error::Config(format!("--sim-tee: {e}")))?;
        }
        if let Some(c) = self.engine_cmd {
            cfg.engine.cmd = Some(c);
        }
        let l = &mut cfg.limits;
        if let Some(v) = self.max_body_bytes {
            l.max_body_bytes = v;
        }
        if let Some(v) = self.max_header_bytes {
            l.max_header_bytes = v;
        }
        if let Some(v) = self.max_concurrent_requests {
            l.max_concurrent_requests = v;
        }
        if let Some(v) = self.max_connections {
            l.max_connections = v;
        }
        let dur = |flag: &str, v: &str| {
            parse_duration(v).map_err(|e| Error::Config(format!("{flag}: {e}")))
        };
        if let Some(v) = &self.idle_timeout {
            l.idle_timeout = dur("--idle-timeout", v)?;
        }
        if let Some(v) = &self.request_timeout {
            l.request_timeout = dur("--request-timeout", v)?;
        }
        if let Some(v) = &self.fresh_interval {
            l.fresh_interval = dur("--fresh-interval", v)?;
        }
        if let Some(v) = &self.sim_quote_latency {
            cfg.sim_quote_latency = dur("--sim-quote-latency", v)?;
        }
        if let Some(v) = &self.drain_timeout {
            cfg.drain_timeout = dur("--drain-timeout", v)?;
        }
        if let Some(w) = self.workers {
            cfg.workers = w;
        }
        if let Some(p) = self.runtime_config {
            cfg.runtime_config = Some(p);
        }
        let gpu_flags = self.gpu.is_some()
            || self.gpu_bundle.is_some()
            || self.gpu_report.is_some()
            || self.gpu_cert_chain.is_some();
        if gpu_flags {
            // Flags replace the file's source; its other keys stay unless
            // overridden.
            let base = cfg.gpu.take();
            let mut settings = crate::config::FileGpu {
                source: self.gpu,
                bundle: self.gpu_bundle,
                report: self.gpu_report,
                cert_chain: self.gpu_cert_chain,
                ..Default::default()
            }
            .into_settings()?;
            if let Some(b) = base {
                settings.policy = b.policy;
                settings.rims = b.rims;
                settings.ocsp_cache = b.ocsp_cache;
                settings.offline = b.offline;
            }
            cfg.gpu = Some(settings);
        }
        if let Some(g) = cfg.gpu.as_mut() {
            if let Some(p) = self.gpu_policy {
                g.policy = Some(p);
            }
            if !self.gpu_rim.is_empty() {
                g.rims = self.gpu_rim;
            }
            if let Some(c) = self.gpu_ocsp_cache {
                g.ocsp_cache = Some(c);
            }
            g.offline |= self.gpu_offline;
        } else if self.gpu_policy.is_some() || !self.gpu_rim.is_empty() || self.gpu_offline {
            return Err(Error::Config(
                "--gpu-policy/--gpu-rim/--gpu-offline need a GPU source (--gpu nvml|recorded)"
                    .into(),
            ));
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(args: &[&str]) -> Result<Config> {
        let mut all = vec!["chrysalis-agent"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap().into_config()
    }

    #[test]
    fn contract_flags() {
        let c = cfg(&[
            "--provider",
            "sim",
            "--listen",
            "127.0.0.1:18443",
            "--upstream",
            "http://127.0.0.1:18000",
            "--metrics-listen",
            "127.0.0.1:19464",
        ])
        .unwrap();
        assert_eq!(c.provider, ProviderKind::Sim);
        assert_eq!(c.listen, "127.0.0.1:18443".parse().unwrap());
        assert_eq!(c.upstream.addr, "127.0.0.1:18000".parse().unwrap());
        assert_eq!(c.metrics_listen, "127.0.0.1:19464".parse().unwrap());
    }

    #[test]
    fn provider_is_required_and_checked() {
        let e = cfg(&[]).unwrap_err().to_string();
        assert!(e.contains("--provider"), "{e}");
        let e = cfg(&["--provider", "sgx"]).unwrap_err().to_string();
        assert!(e.contains("sgx"), "{e}");
    }

    #[test]
    fn refusals_name_the_flag() {
        let e = cfg(&["--provider", "sim", "--upstream", "http://192.168.1.2:8000"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a loopback"), "{e}");
        let e = cfg(&["--provider", "sim", "--metrics-listen", "0.0.0.0:9464"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--allow-remote-metrics"), "{e}");
        cfg(&[
            "--provider",
            "sim",
            "--metrics-listen",
            "0.0.0.0:9464",
            "--allow-remote-metrics",
        ])
        .unwrap();
        let e = cfg(&["--provider", "sim", "--listen", "localhost:1"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--listen"), "{e}");
        let e = cfg(&["--provider", "sim", "--idle-timeout", "soon"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--idle-timeout"), "{e}");
        let e = cfg(&["--provider", "tsm", "--sim-quote-latency", "1s"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--sim-quote-latency"), "{e}");
        let c = cfg(&[
            "--provider",
            "sim",
            "--sim-quote-latency",
            "1s",
            "--fresh-interval",
            "2s",
        ])
        .unwrap();
        assert_eq!(c.sim_quote_latency, std::time::Duration::from_secs(1));
        assert_eq!(c.limits.fresh_interval, std::time::Duration::from_secs(2));
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        std::fs::write(
            &p,
            "provider = \"tsm\"\nlisten = \"127.0.0.1:1\"\n[limits]\nmax_body_bytes = 10\n",
        )
        .unwrap();
        let path = p.to_str().unwrap();
        let c = cfg(&[
            "--config",
            path,
            "--provider",
            "sim",
            "--max-body-bytes",
            "20",
        ])
        .unwrap();
        assert_eq!(c.provider, ProviderKind::Sim);
        assert_eq!(c.listen.port(), 1);
        assert_eq!(c.limits.max_body_bytes, 20);
        let c = cfg(&["--config", path]).unwrap();
        assert_eq!(c.provider, ProviderKind::Tsm);
        assert_eq!(c.limits.max_body_bytes, 10);
        let e = cfg(&["--config", "/nonexistent/agent.toml", "--provider", "sim"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/agent.toml"), "{e}");
    }
}
