//! [`NodeConfig`]: what a client trusts and accepts, built once and shared
//! by its connections (the verification cache lives in it).

use std::sync::Arc;
use std::time::Duration;

use chrysalis_attestation::verifier::{Anchors, Collateral};
use chrysalis_attestation::TcbStatus;
use chrysalis_ratls::VerifierConfig;
use chrysalis_releases::NotVerifiable;
use time::OffsetDateTime;

use crate::gpu::GpuRequirement;
use crate::pin::ImagePin;

/// Connect + handshake timeout by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// How to verify a node. [`NodeConfig::new`] gives the strict default:
/// production Intel and AMD roots, UpToDate TCB, no debug, no simulated
/// evidence, fresh evidence on, GPU evidence required where the matched
/// configuration needs it.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub(crate) pin: ImagePin,
    pub(crate) verifier: Arc<VerifierConfig>,
    pub(crate) not_verifiable: Vec<(String, NotVerifiable)>,
    pub(crate) gpu: GpuRequirement,
    pub(crate) fresh: bool,
    pub(crate) connect_timeout: Duration,
}

impl NodeConfig {
    /// The strict configuration for `pin`.
    pub fn new(pin: ImagePin) -> NodeConfig {
        let (policy, not_verifiable) = pin.base_policy();
        NodeConfig {
            pin,
            verifier: Arc::new(VerifierConfig::new(policy).with_anchors(Anchors::production())),
            not_verifiable,
            gpu: GpuRequirement::default(),
            fresh: true,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    fn map_verifier(mut self, f: impl FnOnce(VerifierConfig) -> VerifierConfig) -> Self {
        let v = Arc::try_unwrap(self.verifier).unwrap_or_else(|shared| (*shared).clone());
        self.verifier = Arc::new(f(v));
        self
    }

    /// Accept SIMULATED evidence (development only; every output says so).
    pub fn allow_simulated(self, allow: bool) -> Self {
        self.map_verifier(|v| {
            let allow = allow || v.policy().allow_simulated;
            let p = v.policy().clone().allow_simulated(allow);
            v.with_policy(p)
        })
    }

    /// Also accept these TCB statuses.
    pub fn accept_tcb(self, statuses: impl IntoIterator<Item = TcbStatus>) -> Self {
        let statuses: Vec<_> = statuses.into_iter().collect();
        self.map_verifier(|v| {
            let p = v.policy().clone().accept_tcb(statuses);
            v.with_policy(p)
        })
    }

    /// Replaces the trust anchors (tests: simulated roots).
    pub fn with_anchors(self, anchors: Anchors) -> Self {
        self.map_verifier(|v| v.with_anchors(anchors))
    }

    /// Uses this collateral instead of the certificate's.
    pub fn with_collateral(self, collateral: Collateral) -> Self {
        self.map_verifier(|v| v.with_collateral(collateral))
    }

    /// Verifies as of `time` instead of now.
    pub fn at_time(self, time: OffsetDateTime) -> Self {
        self.map_verifier(|v| v.at_time(time))
    }

    /// The GPU requirement and collateral.
    pub fn with_gpu(mut self, gpu: GpuRequirement) -> Self {
        self.gpu = gpu;
        self
    }

    /// Ask for nonce-bound fresh evidence after the handshake (default on).
    /// Off, the node is judged on its certificate alone, which a leaked key
    /// could replay; GPU evidence is only served with fresh evidence, so a
    /// required GPU check turns it back on.
    pub fn fresh(mut self, fresh: bool) -> Self {
        self.fresh = fresh;
        self
    }

    /// Connect + handshake timeout.
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = t;
        self
    }

    /// The RA-TLS verifier configuration (policy, anchors, cache).
    pub fn verifier(&self) -> &Arc<VerifierConfig> {
        &self.verifier
    }

    /// What image is accepted.
    pub fn pin(&self) -> &ImagePin {
        &self.pin
    }

    /// Published configurations left out of the policy, with the reason.
    pub fn not_verifiable(&self) -> &[(String, NotVerifiable)] {
        &self.not_verifiable
    }

    /// The GPU requirement.
    pub fn gpu(&self) -> &GpuRequirement {
        &self.gpu
    }

    /// Whether fresh evidence is asked for.
    pub fn wants_fresh(&self) -> bool {
        self.fresh || self.gpu.forced()
    }
}
