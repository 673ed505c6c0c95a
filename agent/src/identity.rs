//! What the HTTPS listener presents: a TLS configuration and, bound to its
//! key, a source of fresh evidence for `GET /attestation`.
//!
//! Each connection takes the [`ServedIdentity`] current when its handshake
//! starts and keeps it: `/attestation` on that connection answers for the
//! key of *its* certificate even after a renewal has swapped in a new one
//! for new connections. Renewal therefore never drops or confuses a
//! connection; old identities live as long as connections use them.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrysalis_attestation::provider::EvidenceProvider;
use chrysalis_attestation::runtime_events::LoggedEvent;
use chrysalis_attestation::verifier::Collateral;
use chrysalis_ratls::{EmbeddedCollateral, IdentityOptions, RaTlsIdentity};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::NoServerSessionStorage;
use rustls::ServerConfig;
use time::OffsetDateTime;

use crate::config::{format_duration, ProviderKind, TlsSettings};
use crate::error::{Error, Result};
use crate::gpu::GpuAttested;
use crate::metrics::Metrics;
use crate::readiness::{Input, InputState, Readiness};

/// ALPN protocols offered: HTTP/2, then HTTP/1.1.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Fresh evidence for a nonce, bound to the key of the certificate of the
/// identity it belongs to.
pub trait AttestationSource: Send + Sync + 'static {
    /// The JSON body of `GET /attestation?nonce=HEX` for `nonce`
    /// (1..=64 bytes). Blocking: called on a blocking thread. The error is
    /// a message for the client and the log.
    fn fresh_evidence_json(&self, nonce: &[u8]) -> std::result::Result<String, String>;

    /// Signs usage receipts with the certificate's key; `None` when this
    /// identity cannot (see [`crate::payment`]).
    fn receipt_signer(&self) -> Option<crate::receipt_key::ReceiptSigner> {
        None
    }
}

/// One identity: TLS configuration plus its attestation.
pub struct ServedIdentity {
    /// The rustls configuration (TLS 1.3 only, ALPN h2/http1.1).
    pub tls: Arc<ServerConfig>,
    /// Evidence on demand; `None` for certificates without evidence
    /// (tests), where `/attestation` answers 503.
    pub attestation: Option<Arc<dyn AttestationSource>>,
    /// When the certificate expires.
    pub not_after: Option<OffsetDateTime>,
    /// One line for logs and `/readyz` (TEE, provider, validity).
    pub description: String,
}

impl std::fmt::Debug for ServedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedIdentity")
            .field("description", &self.description)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// The identity given to new connections.
#[derive(Debug)]
pub struct IdentityStore {
    current: RwLock<Arc<ServedIdentity>>,
}

impl IdentityStore {
    /// Starts with `first`.
    pub fn new(first: Arc<ServedIdentity>) -> Self {
        Self {
            current: RwLock::new(first),
        }
    }

    /// The identity for a connection starting now.
    pub fn current(&self) -> Arc<ServedIdentity> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// New connections get `next` from now on.
    pub fn swap(&self, next: Arc<ServedIdentity>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = next;
    }
}

/// A TLS 1.3-only server configuration for a certificate chain and key
/// (no session tickets or cache, ALPN h2 and http/1.1). Used for plain
/// certificates; RA-TLS identities come from [`RaTlsManager`].
pub fn tls_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig> {
    let mut cfg = ServerConfig::builder_with_provider(chrysalis_ratls::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| Error::Identity(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| Error::Identity(format!("certificate and key: {e}")))?;
    cfg.session_storage = Arc::new(NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    cfg.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

/// Opens the evidence provider, and for the simulator the collateral its
/// evidence verifies with (embedded in the certificate so clients with a
/// development policy can verify offline).
///
/// `sim_host_data` is the SNP `HOST_DATA` the simulated guest is "launched"
/// with (an honest host sets the runtime configuration's SHA-256).
pub fn open_provider(
    kind: ProviderKind,
    sim_tee: chrysalis_attestation::Tee,
    sim_host_data: Option<[u8; 32]>,
) -> Result<(Arc<dyn EvidenceProvider>, Option<EmbeddedCollateral>)> {
    open_provider_with(
        kind,
        sim_tee,
        &crate::config::SimSettings::default(),
        sim_host_data,
    )
}

/// Like [`open_provider`], the simulator playing `sim` (a published
/// configuration and `--sim-set` overrides).
pub fn open_provider_with(
    kind: ProviderKind,
    sim_tee: chrysalis_attestation::Tee,
    sim: &crate::config::SimSettings,
    sim_host_data: Option<[u8; 32]>,
) -> Result<(Arc<dyn EvidenceProvider>, Option<EmbeddedCollateral>)> {
    use chrysalis_provider::ioctl::{SevGuestProvider, TdxGuestProvider};
    use chrysalis_provider::tsm::TsmProvider;
    let err = |e: chrysalis_attestation::Error| Error::Provider {
        provider: kind.to_string(),
        message: e.to_string(),
    };
    match kind {
        ProviderKind::Sim => {
            let mut sim = chrysalis_sim::SimProvider::configured(
                sim_tee,
                sim.release.as_ref(),
                sim.overrides.clone(),
            )
            .map_err(|e| Error::Provider {
                provider: kind.to_string(),
                message: e.to_string(),
            })?;
            if let Some(h) = sim_host_data {
                sim = sim.with_host_data(h);
            }
            let collateral = match (sim.tdx_collateral(), sim.snp_certificates()) {
                (Some(t), _) => Some(Collateral::Tdx(t)),
                (None, Some(s)) => Some(Collateral::Snp(s)),
                (None, None) => None,
            };
            Ok((
                Arc::new(sim),
                collateral.as_ref().map(EmbeddedCollateral::from_collateral),
            ))
        }
        ProviderKind::Tsm => Ok((Arc::new(TsmProvider::system().map_err(err)?), None)),
        ProviderKind::Ioctl => {
            let sev = SevGuestProvider::system();
            if sev.probe().is_ok() {
                return Ok((Arc::new(sev), None));
            }
            let tdx = TdxGuestProvider::system();
            tdx.probe().map_err(err)?;
            Ok((Arc::new(tdx), None))
        }
    }
}

/// Makes RA-TLS identities: key pair, evidence bound to it, certificate.
pub struct RaTlsManager {
    provider: Arc<dyn EvidenceProvider>,
    options: IdentityOptions,
    gpu: Option<std::result::Result<Arc<GpuAttested>, String>>,
    runtime_events: Option<Arc<Vec<LoggedEvent>>>,
}

impl std::fmt::Debug for RaTlsManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaTlsManager")
            .field("provider", &self.provider.name())
            .finish_non_exhaustive()
    }
}

struct RaTlsAttestation {
    provider: Arc<dyn EvidenceProvider>,
    identity: Arc<RaTlsIdentity>,
    gpu: Option<Arc<GpuAttested>>,
    runtime_events: Option<Arc<Vec<LoggedEvent>>>,
}

impl AttestationSource for RaTlsAttestation {
    fn fresh_evidence_json(&self, nonce: &[u8]) -> std::result::Result<String, String> {
        let mut fresh =
            chrysalis_ratls::fresh_evidence(self.provider.as_ref(), &self.identity, nonce)
                .map_err(|e| e.to_string())?;
        // The verified GPU evidence bundle whose SHA-384 the certificate's
        // claims carry, so a client can check the GPU itself.
        if let Some(gpu) = &self.gpu {
            fresh.gpu_evidence = Some(gpu.bundle.clone());
        }
        // The RTMR3 events extended at boot, for the client to replay
        // against this evidence's RTMR3.
        fresh.runtime_events = self.runtime_events.as_ref().map(|l| l.as_ref().clone());
        fresh.to_json().map_err(|e| e.to_string())
    }

    fn receipt_signer(&self) -> Option<crate::receipt_key::ReceiptSigner> {
        Some(crate::receipt_key::ReceiptSigner::new(
            self.identity.spki_der(),
            self.identity.certified_key().key.clone(),
        ))
    }
}

impl RaTlsManager {
    /// Identities from `provider`, valid for `settings.cert_validity`,
    /// embedding `collateral` when given.
    pub fn new(
        provider: Arc<dyn EvidenceProvider>,
        collateral: Option<EmbeddedCollateral>,
        settings: &TlsSettings,
    ) -> Self {
        let options = IdentityOptions {
            validity: settings.cert_validity,
            collateral,
            ..IdentityOptions::default()
        };
        Self {
            provider,
            options,
            gpu: None,
            runtime_events: None,
        }
    }

    /// Name the image in every certificate's claims (release name, SHA-256
    /// of its measurements.json): a hint clients display; the registers
    /// decide.
    pub fn with_image(mut self, image: chrysalis_ratls::ImageId) -> Self {
        self.options.image = Some(image);
        self
    }

    /// Serve this RTMR3 event log with fresh evidence (TDX; what
    /// [`crate::runtime_config::measure_boot`] extended or recovered).
    pub fn with_runtime_events(mut self, log: Vec<LoggedEvent>) -> Self {
        self.runtime_events = (!log.is_empty()).then(|| Arc::new(log));
        self
    }

    /// With the outcome of the boot-time GPU check: when it passed, every
    /// certificate carries the bundle's digest and `/attestation` serves
    /// the bundle; when it failed, the reason (the agent then refuses to
    /// forward requests and is never ready).
    pub fn with_gpu(mut self, outcome: std::result::Result<GpuAttested, String>) -> Self {
        self.gpu = Some(outcome.map(Arc::new));
        if let Some(Ok(g)) = &self.gpu {
            self.options.gpu_evidence_digest = Some(g.digest);
        }
        self
    }

    /// The GPU check's outcome; `None` when no GPU check is configured.
    pub fn gpu(&self) -> Option<std::result::Result<&GpuAttested, &str>> {
        self.gpu.as_ref().map(|r| match r {
            Ok(g) => Ok(g.as_ref()),
            Err(e) => Err(e.as_str()),
        })
    }

    /// The provider's name ("tsm", "ioctl", "sim").
    pub fn provider_name(&self) -> &'static str {
        self.provider.name()
    }

    /// Makes a new identity (blocking: asks the TEE for evidence).
    pub fn generate(&self) -> Result<ServedIdentity> {
        let id = RaTlsIdentity::generate(self.provider.as_ref(), &self.options)
            .map_err(|e| Error::Identity(e.to_string()))?;
        let tls = chrysalis_ratls::server_config(&id, None)
            .map_err(|e| Error::Identity(e.to_string()))?;
        let not_after = id.not_after();
        let description = format!(
            "{} evidence from the {} provider; RA-TLS certificate valid until {}",
            id.tee(),
            self.provider.name(),
            chrysalis_attestation::timefmt::format_rfc3339(not_after)
        );
        Ok(ServedIdentity {
            tls: Arc::new(tls),
            attestation: Some(Arc::new(RaTlsAttestation {
                provider: self.provider.clone(),
                identity: Arc::new(id),
                gpu: self.gpu.as_ref().and_then(|g| g.as_ref().ok().cloned()),
                runtime_events: self.runtime_events.clone(),
            })),
            not_after: Some(not_after),
            description,
        })
    }
}

/// How often a failed renewal is retried.
const RENEW_RETRY: Duration = Duration::from_secs(30);

/// Renews the identity `renew_before` its expiry until `stop` fires. A
/// failed renewal keeps the current identity (still valid) and is retried
/// every 30 s; evidence readiness fails only once the certificate expired.
pub async fn renewal_loop(
    manager: Arc<RaTlsManager>,
    store: Arc<IdentityStore>,
    renew_before: Duration,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let current = store.current();
        let Some(not_after) = current.not_after else {
            return;
        };
        let wake = retry_at.unwrap_or_else(|| {
            let left = not_after - OffsetDateTime::now_utc() - renew_before;
            let left = Duration::try_from(left).unwrap_or(Duration::ZERO);
            tokio::time::Instant::now() + left
        });
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = stop.changed() => return,
        }
        let m = manager.clone();
        match tokio::task::spawn_blocking(move || m.generate()).await {
            Ok(Ok(next)) => {
                let next = Arc::new(next);
                if let Some(na) = next.not_after {
                    metrics.certificate(na.unix_timestamp(), true);
                }
                tracing::info!(identity = %next.description, "RA-TLS certificate renewed");
                readiness.set(Input::Evidence, InputState::Ready, next.description.clone());
                store.swap(next);
                retry_at = None;
            }
            outcome => {
                let why = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => format!("renewal task failed: {e}"),
                    Ok(Ok(_)) => unreachable!("handled above"),
                };
                let expired = OffsetDateTime::now_utc() >= not_after;
                tracing::error!(
                    retry_in = %format_duration(RENEW_RETRY),
                    expired,
                    "RA-TLS certificate renewal failed: {why}"
                );
                readiness.set(
                    Input::Evidence,
                    if expired {
                        InputState::Failed
                    } else {
                        InputState::Ready
                    },
                    format!("renewal failing ({why}); current: {}", current.description),
                );
                retry_at = Some(tokio::time::Instant::now() + RENEW_RETRY);
            }
        }
    }
}
