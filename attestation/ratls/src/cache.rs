//! The verification cache of the RA-TLS verifiers: repeat handshakes with
//! the same certificate skip parsing and evidence verification.
//!
//! Keyed by SHA-256 of the certificate DER. An entry holds what the
//! expensive steps established (the verified evidence, the bindings, the
//! validity window) and lives at most `ttl`, never past the certificate's
//! notAfter nor the collateral's expiry. The policy and the certificate's
//! validity are still checked on every hit (both are cheap), so a policy
//! change or an expired certificate takes effect at once.
//!
//! A cache belongs to one [`crate::VerifierConfig`]: its entries are only
//! valid for that configuration's anchors and collateral.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use crate::verify::PeerCore;

/// Counters of a [`PeerCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that had to verify.
    pub misses: u64,
    /// Entries held now.
    pub entries: usize,
}

struct Entry {
    core: Arc<PeerCore>,
    inserted: OffsetDateTime,
    expires: OffsetDateTime,
    seq: u64,
}

struct Inner {
    map: HashMap<[u8; 32], Entry>,
    seq: u64,
}

/// A bounded, time-limited map from certificate hash to verified peer.
pub struct PeerCache {
    inner: Mutex<Inner>,
    capacity: usize,
    ttl: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for PeerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerCache")
            .field("capacity", &self.capacity)
            .field("ttl", &self.ttl)
            .field("stats", &self.stats())
            .finish()
    }
}

impl PeerCache {
    /// At most `capacity` entries (≥ 1), each for at most `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        let capacity = capacity.max(1);
        Self {
            inner: Mutex::new(Inner {
                map: HashMap::with_capacity(capacity.min(1024)),
                seq: 0,
            }),
            capacity,
            ttl,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The entry for `key` if it is still valid at `now` (counted as a hit
    /// or a miss). An entry is not used at a time before it was verified:
    /// an offline verification "as of" an earlier time must re-verify.
    pub(crate) fn lookup(&self, key: &[u8; 32], now: OffsetDateTime) -> Option<Arc<PeerCore>> {
        let found = self.inner.lock().ok().and_then(|inner| {
            inner
                .map
                .get(key)
                .filter(|e| e.inserted <= now && now <= e.expires)
                .map(|e| e.core.clone())
        });
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Caches a verified peer; `limit` is the latest time it may be used
    /// (certificate notAfter, collateral expiry).
    pub(crate) fn insert(
        &self,
        key: [u8; 32],
        core: Arc<PeerCore>,
        now: OffsetDateTime,
        limit: Option<OffsetDateTime>,
    ) {
        let ttl = time::Duration::try_from(self.ttl).unwrap_or(time::Duration::MAX);
        let mut expires = now.checked_add(ttl).unwrap_or(now);
        if let Some(l) = limit {
            expires = expires.min(l);
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.map.len() >= self.capacity && !inner.map.contains_key(&key) {
            // Drop expired entries first, then the oldest; O(n), but n is
            // bounded and eviction happens only when full.
            inner.map.retain(|_, e| now <= e.expires);
            if inner.map.len() >= self.capacity {
                if let Some(oldest) = inner.map.iter().min_by_key(|(_, e)| e.seq).map(|(k, _)| *k) {
                    inner.map.remove(&oldest);
                }
            }
        }
        inner.seq += 1;
        let seq = inner.seq;
        inner.map.insert(
            key,
            Entry {
                core,
                inserted: now,
                expires,
                seq,
            },
        );
    }

    /// Hit/miss counters and size.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.inner.lock().map(|i| i.map.len()).unwrap_or(0),
        }
    }

    /// Drops every entry (counters are kept).
    pub fn clear(&self) {
        if let Ok(mut i) = self.inner.lock() {
            i.map.clear();
        }
    }
}
