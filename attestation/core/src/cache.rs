//! A verification cache: repeat verifications of the same evidence with the
//! same collateral cost a hash and a lookup instead of a dozen signature
//! checks. Bounded in size (oldest entry evicted) and in time (an entry
//! lives at most `ttl`, and never past its collateral's expiry); a typed
//! wrapper of [`crate::ttl_cache::BoundedTtlCache`].

use std::time::Duration;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::error::Result;
use crate::ttl_cache::{BoundedTtlCache, CacheStats};
use crate::verified::VerifiedEvidence;

/// A bounded, time-limited map from (evidence bytes, collateral) to the
/// verification result. Only successful verifications are cached.
#[derive(Debug)]
pub struct VerificationCache {
    entries: BoundedTtlCache<[u8; 32], VerifiedEvidence>,
}

impl VerificationCache {
    /// A cache holding at most `capacity` results for at most `ttl` each.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: BoundedTtlCache::new(capacity, ttl),
        }
    }

    /// The cache key: SHA-256 over the evidence bytes and a collateral
    /// fingerprint, length-prefixed so the two cannot run together.
    pub fn key(evidence: &[u8], collateral_fingerprint: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update((evidence.len() as u64).to_le_bytes());
        h.update(evidence);
        h.update(collateral_fingerprint);
        h.finalize().into()
    }

    /// Returns the cached result for `key` if it is still valid at `now`,
    /// else runs `verify` and caches a success.
    pub fn get_or_verify(
        &self,
        key: [u8; 32],
        now: OffsetDateTime,
        verify: impl FnOnce() -> Result<VerifiedEvidence>,
    ) -> Result<VerifiedEvidence> {
        if let Some(hit) = self.lookup(&key, now) {
            return Ok(hit);
        }
        let ev = verify()?;
        self.insert(key, ev.clone(), now);
        Ok(ev)
    }

    /// A still-valid cached result.
    pub fn lookup(&self, key: &[u8; 32], now: OffsetDateTime) -> Option<VerifiedEvidence> {
        self.entries.get(key, now)
    }

    /// Caches a success until the TTL or its collateral's expiry.
    fn insert(&self, key: [u8; 32], evidence: VerifiedEvidence, now: OffsetDateTime) {
        let limit = evidence.collateral_expires();
        self.entries.insert(key, evidence, now, limit);
    }

    /// Number of cached results.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Hit and miss counters and the number of cached results.
    pub fn stats(&self) -> CacheStats {
        self.entries.stats()
    }
}
