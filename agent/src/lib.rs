//! # chrysalis-agent
//!
//! The agent runs inside the confidential VM, in front of the inference
//! engine. It
//!
//! * obtains CPU TEE evidence (configfs-tsm, guest-device ioctls, or the
//!   simulator), binds it to a fresh key in an RA-TLS certificate
//!   ([`chrysalis_ratls`]) and renews both before expiry without dropping
//!   connections ([`identity`]);
//! * serves HTTPS — TLS 1.3 only, HTTP/2 and HTTP/1.1 by ALPN — and
//!   forwards the engine's OpenAI-compatible API, streaming server-sent
//!   events chunk by chunk and cancelling the engine's work when a client
//!   goes away ([`forward`], [`body`]);
//! * answers `GET /attestation?nonce=HEX` with fresh evidence bound to the
//!   nonce and to the connection's certificate key, and
//!   `/attestation/batch?nonce=HEX` and `/attestation/latest` with one quote
//!   per window for every client ([`fresh`], [`attestation`]);
//! * enforces limits with OpenAI-shaped JSON errors ([`api_error`]);
//! * exposes `/healthz`, `/readyz` ([`readiness`]) and Prometheus metrics
//!   ([`metrics`]) on a loopback-only listener;
//! * optionally supervises the engine process ([`engine`]);
//! * drains on SIGTERM ([`Agent::shutdown`]).
//!
//! ## Modules
//!
//! Data flows one way, from the listeners down to the engine:
//!
//! * [`server`]: the listeners — TLS handshakes, HTTP/2 or HTTP/1.1
//!   connections, connection limits, idle timeouts and draining; it hands
//!   each connection to a [`workers`] thread and each request to
//!   [`service`];
//! * [`service`]: one request — routing ([`route`]) to [`attestation`]
//!   (fresh evidence, windows of [`fresh`]), health and readiness, or to
//!   [`forward`];
//! * [`forward`]: admit, read the body, send to the engine, respond; the
//!   engine's connections live in [`upstream`], response bodies in
//!   [`body`] (with token counting by [`usage`]);
//! * [`payment`]: the same with payment through a TON channel, when the
//!   runtime configuration asks for it: vouchers checked against the
//!   in-memory [`ledger`], receipts signed with the connection's key
//!   ([`receipt_key`]) and put in the answer ([`receipt`]);
//! * [`shared`]: the state every request sees (limits, engine pool,
//!   permits, metrics, readiness);
//! * [`workers`]: the worker threads (a leaf: [`server`] and [`upstream`]
//!   both use it);
//! * [`h1_errors`]: HTTP/1.1 head errors answered as JSON;
//! * [`config`]: typed, validated configuration (defaults, TOML file,
//!   cross-field rules); [`cli`]: the command line merged over it;
//! * [`identity`]: RA-TLS identities and their renewal;
//!   [`quote_latency`]: `--sim-quote-latency`; [`gpu`]: the boot
//!   GPU check; [`runtime_config`], [`model_volume`]: the host-supplied
//!   configuration and the model volume it names;
//! * [`engine`]: the engine probe and supervisor; [`readiness`],
//!   [`metrics`]: what the metrics listener reports; [`error`]: the
//!   crate's error type.
//!
//! The binary `chrysalis-agent` ([`cli`]) wires these together; tests
//! drive [`Agent::start`] directly with any [`ServedIdentity`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api_error;
pub mod attestation;
pub mod body;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod forward;
pub mod fresh;
pub mod gpu;
pub mod h1_errors;
pub mod identity;
pub mod image_id;
pub mod ledger;
pub mod metrics;
pub mod model_volume;
pub mod payment;
pub mod quote_latency;
pub mod readiness;
pub mod receipt;
pub mod receipt_key;
pub mod route;
pub mod runtime_config;
pub mod server;
pub mod service;
pub mod shared;
pub mod upstream;
pub mod usage;
pub mod workers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::Config;
pub use error::{Error, Result};
pub use identity::{AttestationSource, IdentityStore, RaTlsManager, ServedIdentity};
pub use readiness::{Input, InputState, Readiness, ReadinessReport};
pub use server::DrainReport;

use crate::metrics::Metrics;
use crate::readiness::InputState as S;
use crate::server::Listener;
use crate::shared::Shared;

/// Where the HTTPS identity comes from.
pub enum IdentitySource {
    /// RA-TLS identities made (and renewed) from an evidence provider.
    RaTls(Arc<RaTlsManager>),
    /// A fixed identity (tests, or a certificate without evidence);
    /// the evidence readiness input is then "not configured".
    Static(Arc<ServedIdentity>),
}

impl std::fmt::Debug for IdentitySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::RaTls(m) => f.debug_tuple("RaTls").field(m).finish(),
            Self::Static(i) => f.debug_tuple("Static").field(i).finish(),
        }
    }
}

/// A running agent.
pub struct Agent {
    https: Listener,
    metrics_listener: Listener,
    shared: Arc<Shared>,
    identities: Arc<IdentityStore>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    workers: Arc<workers::Workers>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("https", &self.https)
            .field("metrics", &self.metrics_listener)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Binds both listeners, makes the first identity, starts serving,
    /// and starts the engine probe (or supervisor) and the certificate
    /// renewal. Returns once HTTPS is being served; readiness follows when
    /// the engine answers (see [`Agent::readiness`]).
    pub async fn start(config: Config, identity: IdentitySource) -> Result<Self> {
        config.validate()?;
        let metrics = Arc::new(Metrics::new());
        let readiness = Arc::new(Readiness::new(metrics.clone()));
        let workers = Arc::new(workers::Workers::start(config.worker_threads())?);
        let mut shared = Shared::new(
            config.limits.clone(),
            config.upstream.clone(),
            metrics.clone(),
            readiness.clone(),
            workers.len(),
        );
        // The GPU check ran before (its digest is in the certificates):
        // its outcome gates readiness and forwarding.
        if let IdentitySource::RaTls(m) = &identity {
            match m.gpu() {
                None => {}
                Some(Ok(g)) => readiness.set(Input::Gpu, S::Ready, g.summary.clone()),
                Some(Err(why)) => {
                    tracing::error!("GPU check failed; the agent will not become ready: {why}");
                    readiness.set(Input::Gpu, S::Failed, why.to_string());
                    shared.gpu_refusal = Some(why.to_string());
                }
            }
        }
        shared.payments = config
            .payments
            .clone()
            .map(|s| Arc::new(ledger::Ledger::new(s)));
        let shared = Arc::new(shared);
        let https_socket = server::bind(config.listen)?;
        let metrics_socket = server::bind(config.metrics_listen)?;
        let https_addr = https_socket.local_addr().map_err(|e| Error::Io {
            what: "reading the HTTPS listener's address".into(),
            source: e,
        })?;
        let metrics_listener = server::serve_metrics(metrics_socket, shared.clone())?;
        readiness.set_banner(format!(
            "chrysalis-agent ready: https://{https_addr} (TLS 1.3; h2, http/1.1), engine {}, \
             metrics http://{}/metrics",
            config.upstream.base_url(),
            metrics_listener.local_addr()
        ));

        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let first = match &identity {
            IdentitySource::Static(id) => {
                readiness.set(Input::Evidence, S::NotConfigured, id.description.clone());
                id.clone()
            }
            IdentitySource::RaTls(m) => {
                let m2 = m.clone();
                let id = tokio::task::spawn_blocking(move || m2.generate())
                    .await
                    .map_err(|e| Error::Identity(format!("identity task failed: {e}")))??;
                let id = Arc::new(id);
                if let Some(na) = id.not_after {
                    metrics.certificate(na.unix_timestamp(), false);
                }
                tracing::info!(identity = %id.description, "RA-TLS certificate created");
                readiness.set(Input::Evidence, S::Ready, id.description.clone());
                id
            }
        };
        // The first evidence window is quoted now, before clients ask for
        // `/attestation/latest` (see [`fresh`]).
        if let Some(source) = &first.attestation {
            shared.fresh.batcher(source);
        }
        let identities = Arc::new(IdentityStore::new(first));
        if let IdentitySource::RaTls(m) = identity {
            tasks.push(tokio::spawn(identity::renewal_loop(
                m,
                identities.clone(),
                config.tls.renew_before,
                readiness.clone(),
                metrics.clone(),
                stop_rx.clone(),
            )));
        }
        let https = server::serve_https(
            https_socket,
            shared.clone(),
            identities.clone(),
            workers.clone(),
        )?;
        if config.engine.cmd.is_some() {
            tasks.push(tokio::spawn(engine::supervise(
                shared.clone(),
                config.engine.clone(),
                metrics.clone(),
                stop_rx.clone(),
            )));
        } else {
            tasks.push(tokio::spawn(engine::probe_loop(
                shared.clone(),
                config.engine.probe_interval,
                stop_rx.clone(),
            )));
        }
        Ok(Self {
            https,
            metrics_listener,
            shared,
            identities,
            stop,
            tasks,
            workers,
        })
    }

    /// The HTTPS address.
    pub fn https_addr(&self) -> SocketAddr {
        self.https.local_addr()
    }

    /// The metrics listener's address.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_listener.local_addr()
    }

    /// Readiness.
    pub fn readiness(&self) -> &Arc<Readiness> {
        &self.shared.readiness
    }

    /// Metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// The identities served.
    pub fn identities(&self) -> &Arc<IdentityStore> {
        &self.identities
    }

    /// Client connections open on the HTTPS listener.
    pub fn open_connections(&self) -> usize {
        self.https.open_connections()
    }

    /// Drains: not ready from now on, no new connections, running
    /// requests finish (up to `deadline`, then their connections are
    /// closed); then stops the background tasks — a supervised engine is
    /// stopped last, after the requests it serves.
    pub async fn shutdown(self, deadline: Duration) -> DrainReport {
        self.shared.readiness.set_draining();
        let report = self.https.drain(deadline).await;
        self.stop.send_replace(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.metrics_listener.drain(Duration::from_secs(1)).await;
        self.workers.stop().await;
        report
    }
}
