//! Verifying an RA-TLS certificate: the one function both TLS verifiers and
//! the offline `chrysalis verify --cert` use.
//!
//! Order (cheap and local checks first, so junk never reaches the
//! cryptography, and every failure has its own error):
//!
//! 1. parse the X.509 structure, key and RA-TLS extensions;
//! 2. validity at the verification time (`Expired` / `NotYetValid`);
//! 3. the self-signature with the certificate's own key;
//! 4. binding: evidence report_data = SHA-512(claims) (`EvidenceNotBound`),
//!    the claims name the certificate's SPKI (`KeyNotBound`), TEE and GPU
//!    digest consistent (`ClaimsMismatch`);
//! 5. the evidence, with the verifier's collateral or else the embedded
//!    one, against the verifier's anchors;
//! 6. the policy, with the claims' creation time.
//!
//! Steps 1–5 are cached by SHA-256 of the certificate DER; 2 and 6 run on
//! every hit.

use std::sync::Arc;
use std::time::Duration;

use chrysalis_attestation::verifier::{Anchors, Collateral};
use chrysalis_attestation::{CheckContext, Policy, Tee};
use time::OffsetDateTime;

use crate::cache::{CacheStats, PeerCache};
use crate::cert::{check_validity, CertFormat, RaTlsCertificate};
use crate::claims::{Claims, ClaimsPurpose};
use crate::collateral::EmbeddedCollateral;
use crate::error::{Error, Result};
use crate::peer::PeerCore;
pub use crate::peer::{CertificateInfo, CollateralSource, PeerFormat, VerifiedPeer};

/// Default verification-cache size (entries).
pub const DEFAULT_CACHE_CAPACITY: usize = 1024;
/// Default verification-cache lifetime of an entry.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(600);

/// What a relying party trusts and accepts: anchors, policy, optional
/// collateral of its own, and a verification cache.
///
/// Changing the anchors or the collateral gives the configuration a fresh
/// cache, so cached results never outlive the configuration that produced
/// them; the policy is applied on every verification and can change freely.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    policy: Policy,
    anchors: Anchors,
    collateral: Option<Collateral>,
    cache: Option<Arc<PeerCache>>,
    cache_params: Option<(usize, Duration)>,
    fixed_time: Option<OffsetDateTime>,
}

impl VerifierConfig {
    /// Production anchors (pinned Intel and AMD roots), `policy`, no
    /// collateral of its own (the certificate's is used), a cache of
    /// [`DEFAULT_CACHE_CAPACITY`] entries for [`DEFAULT_CACHE_TTL`].
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            anchors: Anchors::production(),
            collateral: None,
            cache: Some(Arc::new(PeerCache::new(
                DEFAULT_CACHE_CAPACITY,
                DEFAULT_CACHE_TTL,
            ))),
            cache_params: Some((DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_TTL)),
            fixed_time: None,
        }
    }

    /// Replaces the trust anchors (and the cache).
    pub fn with_anchors(mut self, anchors: Anchors) -> Self {
        self.anchors = anchors;
        self.renew_cache();
        self
    }

    /// Verifies with this collateral instead of what certificates embed
    /// (for evidence of the collateral's TEE), and renews the cache.
    pub fn with_collateral(mut self, collateral: Collateral) -> Self {
        self.collateral = Some(collateral);
        self.renew_cache();
        self
    }

    /// Replaces the policy (the cache is kept: the policy runs on every hit).
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// A cache of `capacity` entries, each for at most `ttl`.
    pub fn with_cache(mut self, capacity: usize, ttl: Duration) -> Self {
        self.cache_params = Some((capacity, ttl));
        self.renew_cache();
        self
    }

    /// No cache: every verification is a full one.
    pub fn without_cache(mut self) -> Self {
        self.cache_params = None;
        self.cache = None;
        self
    }

    /// Verify as of `time` instead of the clock (offline `--at`, tests).
    pub fn at_time(mut self, time: OffsetDateTime) -> Self {
        self.fixed_time = Some(time);
        self
    }

    fn renew_cache(&mut self) {
        self.cache = self
            .cache_params
            .map(|(c, t)| Arc::new(PeerCache::new(c, t)));
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The trust anchors.
    pub fn anchors(&self) -> &Anchors {
        &self.anchors
    }

    /// The verifier's own collateral, if any.
    pub fn collateral(&self) -> Option<&Collateral> {
        self.collateral.as_ref()
    }

    /// The cache's counters (`None` without a cache).
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache.as_ref().map(|c| c.stats())
    }

    /// The fixed verification time, if one was set.
    pub fn fixed_time(&self) -> Option<OffsetDateTime> {
        self.fixed_time
    }

    /// The verification time: the fixed one, else `clock`.
    pub(crate) fn time_or(&self, clock: OffsetDateTime) -> OffsetDateTime {
        self.fixed_time.unwrap_or(clock)
    }

    /// Collateral for evidence of `tee`: the verifier's own if it is for
    /// that TEE, else the embedded one, else an error.
    fn choose_collateral(
        &self,
        tee: Tee,
        embedded: Option<&EmbeddedCollateral>,
    ) -> Result<(Collateral, CollateralSource)> {
        if let Some(c) = self.collateral.as_ref().filter(|c| c.tee() == tee) {
            return Ok((c.clone(), CollateralSource::Verifier));
        }
        match embedded {
            Some(e) if e.tee() == tee => Ok((e.to_collateral()?, CollateralSource::Embedded)),
            Some(e) => Err(Error::Collateral(format!(
                "the embedded collateral is for {} but the evidence is {tee}",
                e.tee()
            ))),
            None => Err(Error::NoCollateral { tee }),
        }
    }
}

/// Verifies a DER certificate at `now` (see the module documentation for
/// the steps). `now` overrides [`VerifierConfig::at_time`].
pub fn verify_certificate_der(
    der: &[u8],
    config: &VerifierConfig,
    now: OffsetDateTime,
) -> Result<VerifiedPeer> {
    let key = if config.cache.is_some() {
        Some(sha256(der))
    } else {
        None
    };
    if let (Some(cache), Some(key)) = (&config.cache, &key) {
        if let Some(core) = cache.lookup(key, now) {
            if let Some(c) = &core.certificate {
                check_validity(c.not_before, c.not_after, now)?;
            }
            return decide(core, config, now, true);
        }
    }

    let cert = RaTlsCertificate::parse(der)?;
    cert.check_validity(now)?;
    cert.check_self_signature()?;
    check_binding(&cert)?;
    let tee = cert.evidence.evidence.tee();
    let (collateral, source) = config.choose_collateral(tee, cert.collateral.as_ref())?;
    let evidence =
        chrysalis_attestation::verifier::verify(&cert.evidence, &collateral, &config.anchors, now)?;
    let limit = match evidence.collateral_expires() {
        Some(c) => c.min(cert.not_after),
        None => cert.not_after,
    };
    let core = Arc::new(PeerCore {
        format: match cert.format {
            CertFormat::Chrysalis => PeerFormat::Chrysalis,
            CertFormat::Cocoon => PeerFormat::Cocoon,
        },
        evidence,
        spki_der: cert.spki_der,
        claims: cert.claims,
        certificate: Some(CertificateInfo {
            sha256: cert.der_sha256,
            not_before: cert.not_before,
            not_after: cert.not_after,
        }),
        collateral_source: source,
    });
    if let (Some(cache), Some(key)) = (&config.cache, key) {
        cache.insert(key, core.clone(), now, Some(limit));
    }
    decide(core, config, now, false)
}

/// The report_data binding and the claims' consistency with the
/// certificate (no cryptography: the evidence is verified afterwards).
fn check_binding(cert: &RaTlsCertificate) -> Result<()> {
    let expected = Claims::report_data(&cert.claims_bytes);
    let actual = cert.evidence.evidence.report_data();
    if actual != expected {
        return Err(Error::EvidenceNotBound {
            report_data: hex::encode(actual),
            expected: hex::encode(expected),
        });
    }
    match (&cert.format, &cert.claims) {
        (CertFormat::Chrysalis, Some(claims)) => {
            if claims.purpose != ClaimsPurpose::Certificate {
                return Err(Error::ClaimsMismatch(format!(
                    "claims purpose is {:?}, a certificate needs Certificate",
                    claims.purpose
                )));
            }
            if claims.spki_der != cert.spki_der {
                return Err(Error::KeyNotBound(format!(
                    "the claims name SubjectPublicKeyInfo …{}, the certificate has …{}",
                    short_hex(&claims.spki_der),
                    short_hex(&cert.spki_der)
                )));
            }
            check_tee(claims, cert.evidence.evidence.tee())?;
            if claims.gpu_evidence_digest != cert.gpu_evidence_digest {
                return Err(Error::ClaimsMismatch(format!(
                    "GPU evidence digest extension {} but claims {}",
                    opt_hex(cert.gpu_evidence_digest.as_ref()),
                    opt_hex(claims.gpu_evidence_digest.as_ref())
                )));
            }
            Ok(())
        }
        (CertFormat::Cocoon, _) => {
            // Cocoon's user claims are the raw Ed25519 key of the certificate.
            if cert.claims_bytes != cert.public_key {
                return Err(Error::KeyNotBound(format!(
                    "Cocoon user claims ({} bytes, …{}) are not the certificate's Ed25519 key {}",
                    cert.claims_bytes.len(),
                    short_hex(&cert.claims_bytes),
                    hex::encode(&cert.public_key)
                )));
            }
            Ok(())
        }
        (CertFormat::Chrysalis, None) => Err(Error::cert("Chrysalis certificate without claims")),
    }
}

pub(crate) fn check_tee(claims: &Claims, tee: Tee) -> Result<()> {
    if claims.tee != tee {
        return Err(Error::ClaimsMismatch(format!(
            "claims say TEE {} but the evidence is {tee}",
            claims.tee
        )));
    }
    Ok(())
}

/// Applies the policy and builds the peer.
pub(crate) fn decide(
    core: Arc<PeerCore>,
    config: &VerifierConfig,
    now: OffsetDateTime,
    from_cache: bool,
) -> Result<VerifiedPeer> {
    // RA-TLS binds report_data itself (SHA-512 of the claims, checked
    // before this point); a policy's own report_data could never apply, so
    // such a policy is refused rather than silently ignored.
    if config.policy.report_data.is_some() {
        return Err(Error::Attestation(
            chrysalis_attestation::Error::InvalidPolicy(
                "the policy sets report_data, but RA-TLS binds report_data itself (SHA-512 of the certificate's claims): remove report_data from the policy".into(),
            ),
        ));
    }
    let ctx = CheckContext {
        created_at: core.created_at(),
        expected_report_data: Some(*core.evidence.report_data()),
        now: Some(now),
    };
    let decision = config.policy.check(&core.evidence, &ctx);
    if !decision.accepted {
        return Err(Error::Rejected {
            reasons: decision.reasons,
            node: Some(Box::new(crate::error::RejectedNode {
                identity: core.evidence.identity().clone(),
                tcb_status: core.evidence.tcb_status(),
                simulated: core.evidence.is_simulated(),
            })),
        });
    }
    Ok(VerifiedPeer::new(core, decision, from_cache))
}

/// Verifies fresh evidence's parts (used by [`crate::fresh::verify_fresh`]).
pub(crate) fn verify_fresh_parts(
    evidence: &chrysalis_attestation::DecodedEvidence,
    claims: Claims,
    embedded: Option<&EmbeddedCollateral>,
    config: &VerifierConfig,
    now: OffsetDateTime,
) -> Result<VerifiedPeer> {
    let (collateral, source) = config.choose_collateral(evidence.evidence.tee(), embedded)?;
    let verified =
        chrysalis_attestation::verifier::verify(evidence, &collateral, &config.anchors, now)?;
    let core = Arc::new(PeerCore {
        format: PeerFormat::FreshEvidence,
        evidence: verified,
        spki_der: claims.spki_der.clone(),
        claims: Some(claims),
        certificate: None,
        collateral_source: source,
    });
    decide(core, config, now, false)
}

fn sha256(b: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(b).into()
}

/// The last 16 bytes, hex: where an SPKI's key bits differ.
fn short_hex(b: &[u8]) -> String {
    hex::encode(&b[b.len().saturating_sub(16)..])
}

fn opt_hex(b: Option<&[u8; 48]>) -> String {
    b.map(hex::encode).unwrap_or_else(|| "absent".into())
}
