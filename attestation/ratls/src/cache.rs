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
//! valid for that configuration's anchors and collateral. The bounds and
//! the eviction are [`chrysalis_attestation::ttl_cache::BoundedTtlCache`]'s.

use std::sync::Arc;
use std::time::Duration;

use chrysalis_attestation::ttl_cache::BoundedTtlCache;
pub use chrysalis_attestation::ttl_cache::CacheStats;
use time::OffsetDateTime;

use crate::peer::PeerCore;

/// A bounded, time-limited map from certificate hash to verified peer.
pub struct PeerCache {
    entries: BoundedTtlCache<[u8; 32], Arc<PeerCore>>,
}

impl std::fmt::Debug for PeerCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerCache")
            .field("capacity", &self.entries.capacity())
            .field("ttl", &self.entries.ttl())
            .field("stats", &self.stats())
            .finish()
    }
}

impl PeerCache {
    /// At most `capacity` entries (≥ 1), each for at most `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: BoundedTtlCache::new(capacity, ttl),
        }
    }

    /// The entry for `key` if it is still valid at `now` (counted as a hit
    /// or a miss). An entry is not used at a time before it was verified:
    /// an offline verification "as of" an earlier time must re-verify.
    pub(crate) fn lookup(&self, key: &[u8; 32], now: OffsetDateTime) -> Option<Arc<PeerCore>> {
        self.entries.get(key, now)
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
        self.entries.insert(key, core, now, limit);
    }

    /// Hit/miss counters and size.
    pub fn stats(&self) -> CacheStats {
        self.entries.stats()
    }

    /// Drops every entry (counters are kept).
    pub fn clear(&self) {
        self.entries.clear();
    }
}
