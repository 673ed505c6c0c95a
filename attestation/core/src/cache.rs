//! A verification cache: repeat verifications of the same evidence with the
//! same collateral cost a hash and a lookup instead of a dozen signature
//! checks. Bounded in size (oldest entry evicted) and in time (an entry
//! lives at most `ttl`, and never past its collateral's expiry).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::error::Result;
use crate::verified::VerifiedEvidence;

struct Entry {
    evidence: VerifiedEvidence,
    inserted: OffsetDateTime,
    seq: u64,
}

/// A bounded, time-limited map from (evidence bytes, collateral) to the
/// verification result. Only successful verifications are cached.
pub struct VerificationCache {
    inner: Mutex<Inner>,
    capacity: usize,
    ttl: Duration,
}

struct Inner {
    map: HashMap<[u8; 32], Entry>,
    seq: u64,
}

impl VerificationCache {
    /// A cache holding at most `capacity` results for at most `ttl` each.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner {
                map: HashMap::with_capacity(capacity.min(1024)),
                seq: 0,
            }),
            capacity: capacity.max(1),
            ttl,
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
        let inner = self.inner.lock().ok()?;
        let e = inner.map.get(key)?;
        let fresh = now >= e.inserted
            && now - e.inserted <= self.ttl
            && e.evidence.collateral_expires().is_none_or(|exp| now <= exp);
        fresh.then(|| e.evidence.clone())
    }

    fn insert(&self, key: [u8; 32], evidence: VerifiedEvidence, now: OffsetDateTime) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.map.len() >= self.capacity && !inner.map.contains_key(&key) {
            // Evict the oldest entry; O(n) but n is small and eviction is rare.
            if let Some(oldest) = inner.map.iter().min_by_key(|(_, e)| e.seq).map(|(k, _)| *k) {
                inner.map.remove(&oldest);
            }
        }
        inner.seq += 1;
        let seq = inner.seq;
        inner.map.insert(
            key,
            Entry {
                evidence,
                inserted: now,
                seq,
            },
        );
    }

    /// Number of cached results.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.map.len()).unwrap_or(0)
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
