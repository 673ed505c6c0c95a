//! What a verification established about a peer: the policy-independent
//! core the verification cache holds ([`PeerCore`]) and the accepted peer
//! handed to callers ([`VerifiedPeer`]), with the facts they carry.

use std::sync::Arc;

use chrysalis_attestation::{Decision, Tee, VerifiedEvidence};
use serde::Serialize;
use time::OffsetDateTime;

use crate::claims::Claims;

/// Where the collateral that verified the evidence came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CollateralSource {
    /// The verifier's own ([`crate::VerifierConfig::with_collateral`]).
    Verifier,
    /// The certificate's collateral extension (or fresh evidence's).
    Embedded,
}

/// What kind of object was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerFormat {
    /// A Chrysalis RA-TLS certificate.
    Chrysalis,
    /// A Telegram Cocoon RA-TLS certificate.
    Cocoon,
    /// Fresh evidence answering a nonce.
    FreshEvidence,
}

/// Facts about the certificate a peer presented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateInfo {
    /// SHA-256 of the certificate DER.
    #[serde(with = "hex::serde")]
    pub sha256: [u8; 32],
    /// notBefore.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// notAfter.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

/// The expensive, policy-independent result of a verification (what the
/// cache holds).
#[derive(Debug, Serialize)]
pub(crate) struct PeerCore {
    pub(crate) format: PeerFormat,
    pub(crate) evidence: VerifiedEvidence,
    #[serde(with = "hex::serde")]
    pub(crate) spki_der: Vec<u8>,
    pub(crate) claims: Option<Claims>,
    pub(crate) certificate: Option<CertificateInfo>,
    pub(crate) collateral_source: CollateralSource,
}

impl PeerCore {
    pub(crate) fn created_at(&self) -> Option<OffsetDateTime> {
        self.claims.as_ref().map(|c| c.created_at)
    }
}

/// A peer whose evidence verified, whose key is bound in it, and whose
/// policy decision accepted it. Only this crate builds one.
#[derive(Debug, Clone)]
pub struct VerifiedPeer {
    core: Arc<PeerCore>,
    decision: Decision,
    from_cache: bool,
}

/// JSON: the core fields flattened, then `decision` and `from_cache`.
impl Serialize for VerifiedPeer {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct View<'a> {
            #[serde(flatten)]
            core: &'a PeerCore,
            decision: &'a Decision,
            from_cache: bool,
        }
        View {
            core: &self.core,
            decision: &self.decision,
            from_cache: self.from_cache,
        }
        .serialize(s)
    }
}

impl VerifiedPeer {
    /// A peer whose policy decision accepted it (built by the verifiers).
    pub(crate) fn new(core: Arc<PeerCore>, decision: Decision, from_cache: bool) -> Self {
        Self {
            core,
            decision,
            from_cache,
        }
    }

    /// Chrysalis or Cocoon certificate, or fresh evidence.
    pub fn format(&self) -> PeerFormat {
        self.core.format
    }
    /// The verified evidence (measurements, TCB, anchor).
    pub fn evidence(&self) -> &VerifiedEvidence {
        &self.core.evidence
    }
    /// The TEE.
    pub fn tee(&self) -> Tee {
        self.core.evidence.tee()
    }
    /// The policy decision (accepted; warnings such as simulated evidence).
    pub fn decision(&self) -> &Decision {
        &self.decision
    }
    /// True when the evidence chained to a simulated root.
    pub fn is_simulated(&self) -> bool {
        self.core.evidence.is_simulated()
    }
    /// DER SubjectPublicKeyInfo of the attested key.
    pub fn spki_der(&self) -> &[u8] {
        &self.core.spki_der
    }
    /// The Chrysalis claims (`None` for Cocoon certificates).
    pub fn claims(&self) -> Option<&Claims> {
        self.core.claims.as_ref()
    }
    /// When the evidence was created, per the claims.
    pub fn created_at(&self) -> Option<OffsetDateTime> {
        self.core.created_at()
    }
    /// SHA-384 of the GPU evidence bound in the claims, for the GPU verifier.
    pub fn gpu_evidence_digest(&self) -> Option<&[u8; 48]> {
        self.core
            .claims
            .as_ref()
            .and_then(|c| c.gpu_evidence_digest.as_ref())
    }
    /// The certificate (`None` for fresh evidence).
    pub fn certificate(&self) -> Option<&CertificateInfo> {
        self.core.certificate.as_ref()
    }
    /// Whose collateral verified the evidence.
    pub fn collateral_source(&self) -> CollateralSource {
        self.core.collateral_source
    }
    /// True when steps 1–5 came from the verification cache.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }
}
