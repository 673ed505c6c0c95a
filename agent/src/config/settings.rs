//! The typed configuration: [`Config`] and its sections, with their
//! defaults.
use std::net::SocketAddr;
use std::time::Duration;

use chrysalis_attestation::Tee;
use chrysalis_sim::{SimOverrides, SimRelease};

use super::upstream::Upstream;
use super::values::{LogFormat, ProviderKind};

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
    /// `/attestation…` requests handled at once, a bound of their own
    /// (503 + Retry-After beyond); they never take inference permits.
    pub max_attestation_requests: usize,
    /// Per-request quotes (`/attestation?nonce=`) taken at once (503 +
    /// Retry-After beyond).
    pub max_fresh_quotes: usize,
    /// Client nonces one evidence window takes (`/attestation/batch`).
    pub max_batch_nonces: usize,
    /// While clients ask for `/attestation/latest`, a window is quoted this
    /// often; the evidence served is never older than twice this.
    pub fresh_interval: Duration,
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
            max_attestation_requests: 256,
            max_fresh_quotes: 2,
            max_batch_nonces: 4096,
            fresh_interval: Duration::from_secs(5),
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

/// What the simulated TEE plays (`--provider sim` only): a published
/// configuration's registers and `--sim-set` overrides (see
/// [`chrysalis_sim::release`] and [`chrysalis_sim::overrides`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimSettings {
    /// The published configuration emulated (`--sim-release` with
    /// `--sim-configuration`); it also decides [`Config::sim_tee`].
    pub release: Option<SimRelease>,
    /// `--sim-set FIELD=VALUE`, applied to every report last.
    pub overrides: SimOverrides,
}

impl SimSettings {
    /// True when the simulator plays its own defaults.
    pub fn is_default(&self) -> bool {
        self.release.is_none() && self.overrides.is_empty()
    }
}

/// The whole, validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Evidence provider.
    pub provider: ProviderKind,
    /// TEE the simulator pretends to be (`sim` only).
    pub sim_tee: Tee,
    /// The node the simulator plays (`sim` only).
    pub sim: SimSettings,
    /// Extra time each simulated quote takes, one at a time (`sim` only;
    /// see [`crate::quote_latency`]).
    pub sim_quote_latency: Duration,
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
    /// A JSON file naming the image (`{"release": NAME,
    /// "measurements_sha256": HEX}`, the second optional), put in the
    /// certificate's claims as a hint.
    pub image_id: Option<std::path::PathBuf>,
    /// Where the RTMR3 events extended at boot are recorded (TDX), so a
    /// restarted agent serves them instead of extending again.
    pub rtmr3_log: Option<std::path::PathBuf>,
    /// GPU attestation at boot; `None`: no GPU check.
    pub gpu: Option<crate::gpu::GpuSettings>,
    /// Fetch the RIMs the GPU check's files lack by id from this RIM
    /// service (cache only with the GPU check's `offline`); `None`: RIM
    /// files only.
    pub gpu_rim_service: Option<crate::gpu::RimServiceSettings>,
    /// Payment (from the measured runtime configuration's `payments`
    /// section, never from the command line); `None`: free.
    pub payments: Option<crate::ledger::PaymentSettings>,
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
            sim: SimSettings::default(),
            sim_quote_latency: Duration::ZERO,
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
            rtmr3_log: None,
            image_id: None,
            gpu: None,
            gpu_rim_service: None,
            payments: None,
        }
    }

    /// Worker threads to start: `workers`, or one per CPU when 0.
    pub fn worker_threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}
