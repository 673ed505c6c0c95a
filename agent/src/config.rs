//! Agent configuration: defaults, the TOML file, and validation.
//!
//! Precedence is defaults < `--config FILE` < command-line flags; the flags
//! are merged by the binary ([`crate::cli`]). Everything is validated once
//! here, so the rest of the agent works with typed, checked values: socket
//! addresses, a loopback upstream, durations.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use chrysalis_attestation::Tee;
use serde::Deserialize;

use crate::error::{Error, Result};

/// Where CPU evidence comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// Linux configfs-tsm (`/sys/kernel/config/tsm/report`, kernel ≥ 6.7).
    Tsm,
    /// `/dev/sev-guest` or `/dev/tdx_guest` ioctls (older kernels).
    Ioctl,
    /// The simulated TEE: evidence that proves nothing (development only).
    Sim,
}

impl std::str::FromStr for ProviderKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "tsm" => Ok(Self::Tsm),
            "ioctl" => Ok(Self::Ioctl),
            "sim" => Ok(Self::Sim),
            other => Err(format!(
                "unknown provider `{other}`: expected tsm, ioctl or sim"
            )),
        }
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tsm => "tsm",
            Self::Ioctl => "ioctl",
            Self::Sim => "sim",
        })
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format `{other}`: expected text or json"
            )),
        }
    }
}

/// The engine's address: plain HTTP on a loopback address, checked at
/// start-up (the engine runs inside this confidential VM; traffic to it
/// must never leave the machine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The socket address connected to.
    pub addr: SocketAddr,
    /// `host:port` as sent in the `Host` header.
    pub authority: String,
}

impl Upstream {
    /// Parses `http://ADDR:PORT` (an optional trailing `/`). ADDR is an IP
    /// literal (`[::1]` for IPv6) or `localhost` (taken as 127.0.0.1, never
    /// resolved); the port defaults to 80. Anything that is not loopback is
    /// refused.
    pub fn parse(url: &str) -> Result<Self> {
        let bad = |why: &str| Error::Config(format!("upstream `{url}`: {why}"));
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            bad("must start with http:// (the engine is spoken to in plain HTTP over loopback)")
        })?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err(bad("must not have a path, query or fragment"));
        }
        if rest.contains('@') {
            return Err(bad("must not carry credentials"));
        }
        let (host, port) = split_host_port(rest).ok_or_else(|| bad("expected ADDR:PORT"))?;
        let port: u16 = match port {
            None => 80,
            Some(p) => p
                .parse()
                .map_err(|_| bad("the port is not a number in 1..=65535"))?,
        };
        if port == 0 {
            return Err(bad("port 0 is not a port"));
        }
        let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.parse().map_err(|_| {
                bad("the host must be an IP literal or `localhost` (names are not resolved)")
            })?
        };
        if !ip.is_loopback() {
            return Err(bad(&format!(
                "{ip} is not a loopback address; the engine must run inside this machine and \
                 listen on 127.0.0.0/8 or ::1"
            )));
        }
        let addr = SocketAddr::new(ip, port);
        Ok(Self {
            addr,
            authority: addr.to_string(),
        })
    }

    /// The base URL, `http://ADDR:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.authority)
    }
}

/// `host[:port]` with IPv6 literals in brackets.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        match after {
            "" => Some((host, None)),
            p => Some((host, Some(p.strip_prefix(':')?))),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) if !p.contains(':') => Some((h, Some(p))),
            Some(_) => None,
            None => Some((s, None)),
        }
    }
}

/// Resource limits; each one is answered with its own status code and an
/// OpenAI-shaped JSON error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body, bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Largest request head (request line + headers), bytes (431 beyond).
    pub max_header_bytes: usize,
    /// Most header fields in a request (431 beyond).
    pub max_headers: usize,
    /// Requests handled at once across all connections (503 + Retry-After
    /// beyond).
    pub max_concurrent_requests: usize,
    /// Open client connections; more are closed right after accept.
    pub max_connections: usize,
    /// How long a connection may go without a complete request head while
    /// no request is running on it (keep-alive idle time and the time a
    /// client has to send a request head: the slowloris bound).
    pub idle_timeout: Duration,
    /// Whole-request bound: body upload, engine, and the full response
    /// including streams (408/504 before the response starts; the stream is
    /// cut after).
    pub request_timeout: Duration,
    /// Time to complete the TLS handshake.
    pub handshake_timeout: Duration,
    /// Time to connect to the engine (502 beyond).
    pub upstream_connect_timeout: Duration,
    /// Seconds announced in `Retry-After` with 503.
    pub retry_after_secs: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 << 20,
            max_header_bytes: 32 << 10,
            max_headers: 100,
            max_concurrent_requests: 512,
            max_connections: 50_000,
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(600),
            handshake_timeout: Duration::from_secs(10),
            upstream_connect_timeout: Duration::from_secs(5),
            retry_after_secs: 1,
        }
    }
}

/// RA-TLS certificate lifetime and renewal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Lifetime of each certificate.
    pub cert_validity: Duration,
    /// A new key, evidence and certificate are made when less than this is
    /// left of the current certificate's lifetime.
    pub renew_before: Duration,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            cert_validity: Duration::from_secs(24 * 3600),
            renew_before: Duration::from_secs(3600),
        }
    }
}

/// Engine readiness probing and optional supervision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSettings {
    /// Shell command that starts the engine (`sh -c`); `None`: the engine
    /// is started by someone else and only probed.
    pub cmd: Option<String>,
    /// Interval between readiness probes (`GET /v1/models`) once ready;
    /// until then the probe runs every 250 ms.
    pub probe_interval: Duration,
    /// A supervised engine that is not ready this long after its start is
    /// killed and restarted.
    pub ready_timeout: Duration,
    /// First restart delay; doubled after each failed start.
    pub backoff_initial: Duration,
    /// Largest restart delay.
    pub backoff_max: Duration,
    /// Time between SIGTERM and SIGKILL when stopping the engine.
    pub stop_timeout: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            cmd: None,
            probe_interval: Duration::from_secs(5),
            ready_timeout: Duration::from_secs(300),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(10),
        }
    }
}

/// The whole, validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Evidence provider.
    pub provider: ProviderKind,
    /// TEE the simulator pretends to be (`sim` only).
    pub sim_tee: Tee,
    /// HTTPS listener.
    pub listen: SocketAddr,
    /// The engine.
    pub upstream: Upstream,
    /// Metrics/health listener (plain HTTP).
    pub metrics_listen: SocketAddr,
    /// Allow a non-loopback `metrics_listen`.
    pub allow_remote_metrics: bool,
    /// Log format.
    pub log_format: LogFormat,
    /// Limits.
    pub limits: Limits,
    /// Certificate lifetime and renewal.
    pub tls: TlsSettings,
    /// Engine probing and supervision.
    pub engine: EngineSettings,
    /// How long SIGTERM waits for running requests before closing.
    pub drain_timeout: Duration,
    /// Worker threads serving connections; 0: one per CPU.
    pub workers: usize,
    /// The host-supplied runtime configuration (JSON object), measured
    /// before serving (see [`crate::runtime_config`]).
    pub runtime_config: Option<std::path::PathBuf>,
    /// GPU attestation at boot; `None`: no GPU check.
    pub gpu: Option<crate::gpu::GpuSettings>,
}

/// Default HTTPS listener.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8443";
/// Default engine address.
pub const DEFAULT_UPSTREAM: &str = "http://127.0.0.1:8000";
/// Default metrics listener.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

impl Config {
    /// Defaults with `provider`.
    pub fn with_provider(provider: ProviderKind) -> Self {
        Self {
            provider,
            sim_tee: Tee::Tdx,
            listen: DEFAULT_LISTEN.parse().expect("constant address"),
            upstream: Upstream::parse(DEFAULT_UPSTREAM).expect("constant upstream"),
            metrics_listen: DEFAULT_METRICS_LISTEN.parse().expect("constant address"),
            allow_remote_metrics: false,
            log_format: LogFormat::Text,
            limits: Limits::default(),
            tls: TlsSettings::default(),
            engine: EngineSettings::default(),
            drain_timeout: Duration::from_secs(30),
            workers: 0,
            runtime_config: None,
            gpu: None,
        }
    }

    /// Worker threads to start: `workers`, or one per CPU when 0.
    pub fn worker_threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// Checks the rules that span several fields.
    pub fn validate(&self) -> Result<()> {
        if !self.metrics_listen.ip().is_loopback() && !self.allow_remote_metrics {
            return Err(Error::Config(format!(
                "metrics_listen {} is not a loopback address; metrics reveal traffic patterns, \
                 so they stay on loopback unless --allow-remote-metrics \
                 (allow_remote_metrics = true) is given",
                self.metrics_listen
            )));
        }
        let l = &self.limits;
        for (name, v) in [
            ("limits.max_body_bytes", l.max_body_bytes),
            ("limits.max_concurrent_requests", l.max_concurrent_requests),
            ("limits.max_connections", l.max_connections),
            ("limits.max_headers", l.max_headers),
        ] {
            if v == 0 {
                return Err(Error::Config(format!("{name} must be at least 1")));
            }
        }
        // hyper's HTTP/1 reader needs at least 8 KiB of buffer.
        if l.max_header_bytes < 8192 {
            return Err(Error::Config(format!(
                "limits.max_header_bytes is {}; at least 8192 is needed",
                l.max_header_bytes
            )));
        }
        for (name, d) in [
            ("limits.idle_timeout", l.idle_timeout),
            ("limits.request_timeout", l.request_timeout),
            ("limits.handshake_timeout", l.handshake_timeout),
            (
                "limits.upstream_connect_timeout",
                l.upstream_connect_timeout,
            ),
            ("tls.cert_validity", self.tls.cert_validity),
            ("engine.probe_interval", self.engine.probe_interval),
            ("engine.ready_timeout", self.engine.ready_timeout),
            ("engine.backoff_initial", self.engine.backoff_initial),
        ] {
            if d.is_zero() {
                return Err(Error::Config(format!("{name} must be longer than 0")));
            }
        }
        if self.tls.renew_before >= self.tls.cert_validity {
            return Err(Error::Config(format!(
                "tls.renew_before ({}) must be shorter than tls.cert_validity ({})",
                format_duration(self.tls.renew_before),
                format_duration(self.tls.cert_validity)
            )));
        }
        if self.engine.backoff_max < self.engine.backoff_initial {
            return Err(Error::Config(
                "engine.backoff_max must be at least engine.backoff_initial".into(),
            ));
        }
        if let Some(cmd) = &self.engine.cmd {
            if cmd.trim().is_empty() {
                return Err(Error::Config("engine.cmd is empty".into()));
            }
        }
        Ok(())
    }

    /// Applies a parsed configuration file on top of `self`.
    pub fn apply_file(&mut self, f: FileConfig) -> Result<()> {
        if let Some(p) = f.provider {
            self.provider = p
                .parse()
                .map_err(|e| Error::Config(format!("provider: {e}")))?;
        }
        if let Some(t) = f.sim_tee {
            self.sim_tee = parse_tee(&t).map_err(|e| Error::Config(format!("sim_tee: {e}")))?;
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

/// Parses a listen address `ADDR:PORT` (IPv6 in brackets).
pub fn parse_addr(name: &str, s: &str) -> Result<SocketAddr> {
    s.parse().map_err(|_| {
        Error::Config(format!(
            "{name} `{s}` is not ADDR:PORT with an IP address (e.g. 127.0.0.1:8443 or [::1]:8443)"
        ))
    })
}

/// Parses `tdx` / `snp`.
pub fn parse_tee(s: &str) -> std::result::Result<Tee, String> {
    match s {
        "tdx" => Ok(Tee::Tdx),
        "snp" => Ok(Tee::Snp),
        other => Err(format!("unknown TEE `{other}`: expected tdx or snp")),
    }
}

/// Parses a duration: a non-negative number with a unit `ms`, `s`, `m` or
/// `h` (`250ms`, `30s`, `1.5h`), or a bare number of seconds.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 250ms, 30s, 5m or 1h"))?;
    let scale = match unit.trim() {
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        u => return Err(format!("`{s}`: unknown unit `{u}` (ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(n * scale).map_err(|_| format!("`{s}` is out of range"))
}

/// Formats a duration the way [`parse_duration`] reads it.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else {
        format!("{}s", d.as_secs())
    }
}

/// The TOML configuration file; every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `tsm`, `ioctl` or `sim`.
    pub provider: Option<String>,
    /// `tdx` or `snp` (sim only).
    pub sim_tee: Option<String>,
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

/// `[limits]` of the file (see [`Limits`]).
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
    pub idle_timeout: Option<String>,
    pub request_timeout: Option<String>,
    pub handshake_timeout: Option<String>,
    pub upstream_connect_timeout: Option<String>,
}

/// `[tls]` of the file (see [`TlsSettings`]).
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
    /// `nvml` or `recorded`.
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
    /// Never fetch OCSP over the network.
    pub offline: Option<bool>,
}

impl FileGpu {
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
                (Some("recorded") | None, None, Some(report), Some(cert_chain)) => {
                    GpuSourceKind::RecordedSdk { report, cert_chain }
                }
                (Some(s), ..) if s != "nvml" && s != "recorded" => {
                    return Err(Error::Config(format!(
                        "gpu source `{s}`: expected nvml or recorded"
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

/// `[engine]` of the file (see [`EngineSettings`]).
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

    #[test]
    fn upstream_must_be_loopback_http() {
        let u = Upstream::parse("http://127.0.0.1:8000").unwrap();
        assert_eq!(u.addr, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(u.base_url(), "http://127.0.0.1:8000");
        assert_eq!(
            Upstream::parse("http://[::1]:9/").unwrap().addr,
            "[::1]:9".parse().unwrap()
        );
        assert_eq!(
            Upstream::parse("http://localhost").unwrap().addr,
            "127.0.0.1:80".parse().unwrap()
        );
        assert_eq!(
            Upstream::parse("http://127.9.9.9:1").unwrap().addr.ip(),
            "127.9.9.9".parse::<IpAddr>().unwrap()
        );
        for (url, why) in [
            ("http://10.0.0.5:8000", "not a loopback"),
            ("http://0.0.0.0:8000", "not a loopback"),
            ("http://[2001:db8::1]:8000", "not a loopback"),
            ("https://127.0.0.1:8000", "http://"),
            ("127.0.0.1:8000", "http://"),
            ("http://engine.local:8000", "IP literal"),
            ("http://127.0.0.1:8000/v1", "path"),
            ("http://127.0.0.1:0", "port 0"),
            ("http://127.0.0.1:99999", "port"),
            ("http://u:p@127.0.0.1:1", "credentials"),
            ("http://::1:80", "ADDR:PORT"),
        ] {
            let e = Upstream::parse(url).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
            assert!(e.contains(url), "{url}: {e}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        for bad in ["", "s", "-1s", "3d", "1e9999s", "x"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for d in [Duration::from_millis(1500), Duration::from_secs(30)] {
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d);
        }
    }

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

    #[test]
    fn remote_metrics_need_the_flag() {
        let mut c = Config::with_provider(ProviderKind::Sim);
        c.metrics_listen = "0.0.0.0:9464".parse().unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("--allow-remote-metrics"), "{e}");
        c.allow_remote_metrics = true;
        c.validate().unwrap();
    }

    #[test]
    fn cross_field_rules() {
        let mut c = Config::with_provider(ProviderKind::Sim);
        c.tls.renew_before = c.tls.cert_validity;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("renew_before"));
        let mut c = Config::with_provider(ProviderKind::Sim);
        c.limits.max_header_bytes = 100;
        assert!(c.validate().unwrap_err().to_string().contains("8192"));
        let mut c = Config::with_provider(ProviderKind::Sim);
        c.limits.max_concurrent_requests = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_concurrent_requests"));
    }
}
