//! The command line (a contract: scripts and images call it).
//!
//! `chrysalis-agent --provider sim|tsm|ioctl --listen ADDR:PORT
//! --upstream http://ADDR:PORT [--metrics-listen ADDR:PORT] [--config FILE]`
//! plus optional overrides of the file's settings.
//!
//! The simulated TEE can play any node: `--sim-release NAME
//! --sim-configuration NAME` takes a published configuration's registers,
//! and each `--sim-set FIELD=VALUE` changes one report field (see
//! [`chrysalis_sim::overrides`]).

use std::path::PathBuf;

use clap::Parser;

use crate::config::{
    parse_addr, parse_duration, parse_sim, parse_sim_sets, parse_tee, Config, FileConfig,
    ProviderKind, Upstream,
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
    /// With --provider sim: play a node of this published release (one of
    /// the releases compiled in, e.g. chrysalis-0.2.0-cpu); needs
    /// --sim-configuration. Its registers replace the simulator's, RTMR3 is
    /// what this agent extends, and without --runtime-config the agent
    /// measures the default host configuration `{}` as the image does.
    #[arg(long, value_name = "NAME", requires = "sim_configuration")]
    pub sim_release: Option<String>,
    /// The configuration of --sim-release to play (e.g. snp-2cpu-EPYC-v4);
    /// it decides the TEE.
    #[arg(long, value_name = "NAME", requires = "sim_release")]
    pub sim_configuration: Option<String>,
    /// With --provider sim: set one field of every simulated TD report or
    /// SNP report, re-signed by the simulated hardware (repeatable; applied
    /// last, so `rtmr3=` wins over the extends). Byte fields as hex in
    /// report byte order (rtmr0=<96 hex digits>), integer fields as decimal
    /// or 0x-hex (td_attributes=0x10000001, vmpl=1). Fields: mrtd, rtmr0-3,
    /// td_attributes, xfam, mrconfigid, mrowner, mrownerconfig, mrseam,
    /// tee_tcb_svn, report_data, measurement, host_data, policy, vmpl,
    /// reported_tcb, family_id, image_id, id_key_digest, … (README).
    #[arg(long = "sim-set", value_name = "FIELD=VALUE")]
    pub sim_set: Vec<String>,
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
    /// TDX: record the RTMR3 events extended at boot here (a guest tmpfs
    /// kept across agent restarts; the image uses
    /// /run/chrysalis-agent/rtmr3-events.json). A restarted agent then
    /// serves the recorded log and never extends again.
    #[arg(long, value_name = "FILE")]
    pub rtmr3_log: Option<PathBuf>,
    /// Name the image in the certificate's claims: a JSON file
    /// `{"release": NAME, "measurements_sha256": HEX}` (the second
    /// optional). With --sim-release the played release is named without
    /// it. A hint for clients; the registers decide.
    #[arg(long, value_name = "FILE")]
    pub image_id: Option<PathBuf>,
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
    /// Use only cached OCSP responses (and cached RIMs with
    /// --gpu-rim-service/--gpu-rim-cache).
    #[arg(long)]
    pub gpu_offline: bool,
    /// Fetch the driver and VBIOS RIMs the --gpu-rim files lack, by the ids
    /// the GPU's signed report gives, from this RIM service (checked like
    /// RIM files: signature, chain to the pinned NVIDIA root, version).
    #[arg(long, value_name = "URL")]
    pub gpu_rim_service: Option<String>,
    /// RIM cache directory (`{id}.xml`); alone, implies NVIDIA's RIM
    /// service; with --gpu-offline only this cache answers (the gpu
    /// image's agent reads what the GPU gate fetched).
    #[arg(long, value_name = "DIR")]
    pub gpu_rim_cache: Option<PathBuf>,
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
        let file_sim_tee = file.as_ref().and_then(|f| f.sim_tee.clone());
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
        // The TEE chosen in words (flag, else file) must be the
        // configuration's; otherwise the configuration decides it.
        let explicit_tee = match (&self.sim_tee, file_sim_tee) {
            (Some(_), _) => Some(cfg.sim_tee),
            (None, Some(t)) => {
                Some(parse_tee(&t).map_err(|e| Error::Config(format!("sim_tee: {e}")))?)
            }
            (None, None) => None,
        };
        if let Some(r) = parse_sim(
            self.sim_release.as_deref(),
            self.sim_configuration.as_deref(),
            explicit_tee,
            "--sim-release / --sim-configuration",
        )? {
            cfg.sim_tee = r.tee();
            cfg.sim.release = Some(r);
        }
        if !self.sim_set.is_empty() {
            cfg.sim.overrides = parse_sim_sets(&self.sim_set)?;
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
        if let Some(p) = self.rtmr3_log {
            cfg.rtmr3_log = Some(p);
        }
        if let Some(p) = self.image_id {
            cfg.image_id = Some(p);
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
            if self.gpu_rim_service.is_some() || self.gpu_rim_cache.is_some() {
                let r = cfg.gpu_rim_service.get_or_insert_with(Default::default);
                if let Some(u) = self.gpu_rim_service {
                    r.url = u;
                }
                if let Some(c) = self.gpu_rim_cache {
                    r.cache = Some(c);
                }
            }
        } else if self.gpu_policy.is_some()
            || !self.gpu_rim.is_empty()
            || self.gpu_offline
            || self.gpu_rim_service.is_some()
            || self.gpu_rim_cache.is_some()
        {
            return Err(Error::Config(
                "--gpu-policy/--gpu-rim/--gpu-offline/--gpu-rim-service/--gpu-rim-cache need a GPU \
                 source (--gpu nvml|recorded|gate)"
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
    fn sim_release_and_sets_play_a_published_node() {
        let c = cfg(&[
            "--provider",
            "sim",
            "--sim-release",
            "chrysalis-0.2.0-cpu",
            "--sim-configuration",
            "snp-2cpu-EPYC-v4",
            "--sim-set",
            "vmpl=1",
            "--sim-set",
            "policy=0x70000",
        ])
        .unwrap();
        assert_eq!(
            c.sim_tee,
            chrysalis_attestation::Tee::Snp,
            "the configuration decides"
        );
        assert_eq!(
            c.sim.release.as_ref().unwrap().label(),
            "chrysalis-0.2.0-cpu / snp-2cpu-EPYC-v4"
        );
        assert_eq!(c.sim.overrides.to_string(), "vmpl=0x1 policy=0x70000");

        let base = [
            "--provider",
            "sim",
            "--sim-release",
            "chrysalis-0.2.0-cpu",
            "--sim-configuration",
            "snp-2cpu-EPYC-v4",
        ];
        for (extra, want) in [
            (&["--sim-tee", "tdx"][..], "has no tdx values"),
            (
                &["--sim-set", "td_attributes=1"][..],
                "a field of the tdx report",
            ),
            (&["--sim-set", "rtmr0=00"][..], "expected 48 bytes"),
            (&["--sim-set", "vmpl=0001"][..], "leading zeros"),
            (
                &["--sim-set", "chip_id=00"][..],
                "unknown field \"chip_id\"",
            ),
        ] {
            let mut args = base.to_vec();
            args.extend_from_slice(extra);
            let e = cfg(&args).unwrap_err().to_string();
            assert!(e.contains(want), "{extra:?}: {e}");
        }
        let e = cfg(&[
            "--provider",
            "sim",
            "--sim-release",
            "chrysalis-9-cpu",
            "--sim-configuration",
            "x",
        ])
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("--sim-release") && e.contains("chrysalis-0.2.0-cpu"),
            "{e}"
        );
        let e = cfg(&["--provider", "tsm", "--sim-set", "vmpl=1"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--provider sim only"), "{e}");
        // clap: the two release flags go together.
        let mut all = vec!["chrysalis-agent", "--provider", "sim", "--sim-release", "r"];
        assert!(Cli::try_parse_from(all.clone()).is_err());
        all.truncate(3);
        all.extend(["--sim-configuration", "c"]);
        assert!(Cli::try_parse_from(all).is_err());
    }

    #[test]
    fn sim_settings_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        std::fs::write(
            &p,
            "provider = \"sim\"\nsim_release = \"chrysalis-0.2.0-cpu\"\nsim_configuration = \"tdx-2cpu-2048m-0gpu\"\nsim_set = [\"td_attributes=0x10000010\"]\n",
        )
        .unwrap();
        let c = cfg(&["--config", p.to_str().unwrap()]).unwrap();
        assert_eq!(c.sim_tee, chrysalis_attestation::Tee::Tdx);
        assert!(c.sim.release.is_some());
        assert_eq!(c.sim.overrides.to_string(), "td_attributes=0x10000010");
        // Flags replace the file's list.
        let c = cfg(&["--config", p.to_str().unwrap(), "--sim-set", "xfam=3"]).unwrap();
        assert_eq!(c.sim.overrides.to_string(), "xfam=0x3");
        std::fs::write(
            &p,
            "provider = \"sim\"\nsim_release = \"chrysalis-0.2.0-cpu\"\n",
        )
        .unwrap();
        let e = cfg(&["--config", p.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("go together"), "{e}");
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
