//! A bounded, time-limited cache: the one behind the verifier's
//! [`crate::cache::VerificationCache`] and the RA-TLS peer cache.
//!
//! * **Bounded**: at most `capacity` entries (at least one). Inserting a new
//!   key into a full cache first drops the entries expired at that time,
//!   then, if it is still full, the oldest insertion.
//! * **Time-limited**: an entry is served from the time it was inserted
//!   until `ttl` later, and never after the `limit` given with it (a
//!   certificate's notAfter, a collateral's expiry). Times are the caller's
//!   (`now` arguments), so verification "as of" another time works; an
//!   entry is not served at a time before it was inserted.
//! * **Counted**: every [`BoundedTtlCache::get`] is a hit or a miss
//!   ([`CacheStats`]).
//!
//! Thread-safe behind a mutex; a poisoned mutex makes the cache act empty
//! instead of panicking.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;

/// Counters of a [`BoundedTtlCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that found nothing valid.
    pub misses: u64,
    /// Entries held now (expired ones included until they are evicted).
    pub entries: usize,
}

struct Entry<V> {
    value: V,
    inserted: OffsetDateTime,
    limit: Option<OffsetDateTime>,
    seq: u64,
}

impl<V> Entry<V> {
    /// Served at `now`: inserted at or before it, within the TTL and the
    /// limit.
    fn valid_at(&self, now: OffsetDateTime, ttl: Duration) -> bool {
        now >= self.inserted && !self.expired_at(now, ttl)
    }

    /// Past the TTL or the limit at `now` (never before its insertion).
    fn expired_at(&self, now: OffsetDateTime, ttl: Duration) -> bool {
        now - self.inserted > ttl || self.limit.is_some_and(|l| now > l)
    }
}

struct Inner<K, V> {
    map: HashMap<K, Entry<V>>,
    /// Insertion counter: the smallest `seq` is the oldest entry.
    seq: u64,
}

/// A map from `K` to `V` of bounded size whose entries expire (see the
/// module documentation).
pub struct BoundedTtlCache<K, V> {
    inner: Mutex<Inner<K, V>>,
    capacity: usize,
    ttl: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl<K, V> std::fmt::Debug for BoundedTtlCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedTtlCache")
            .field("capacity", &self.capacity)
            .field("ttl", &self.ttl)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<K, V> BoundedTtlCache<K, V> {
    /// At most `capacity` entries (at least one), each for at most `ttl`.
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

    /// Hit and miss counters and the number of entries.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.len(),
        }
    }

    /// Number of entries held (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.map.len()).unwrap_or(0)
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry (the counters are kept).
    pub fn clear(&self) {
        if let Ok(mut i) = self.inner.lock() {
            i.map.clear();
        }
    }

    /// The most entries held at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How long an entry lives at most.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

impl<K: Eq + Hash + Clone, V: Clone> BoundedTtlCache<K, V> {
    /// The value for `key` if it is valid at `now` (counted as a hit or a
    /// miss).
    pub fn get(&self, key: &K, now: OffsetDateTime) -> Option<V> {
        let found = self.inner.lock().ok().and_then(|inner| {
            inner
                .map
                .get(key)
                .filter(|e| e.valid_at(now, self.ttl))
                .map(|e| e.value.clone())
        });
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Caches `value` for `key` from `now` for the TTL, and not after
    /// `limit`. Replaces an entry of the same key (which then counts as the
    /// newest); in a full cache, evicts the expired entries and then the
    /// oldest.
    pub fn insert(&self, key: K, value: V, now: OffsetDateTime, limit: Option<OffsetDateTime>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.map.len() >= self.capacity && !inner.map.contains_key(&key) {
            // O(n), but n is bounded and this runs only when full.
            let ttl = self.ttl;
            inner.map.retain(|_, e| !e.expired_at(now, ttl));
            if inner.map.len() >= self.capacity {
                let oldest = inner
                    .map
                    .iter()
                    .min_by_key(|(_, e)| e.seq)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    inner.map.remove(&oldest);
                }
            }
        }
        inner.seq += 1;
        let seq = inner.seq;
        inner.map.insert(
            key,
            Entry {
                value,
                inserted: now,
                limit,
                seq,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap()
    }

    fn secs(s: i64) -> time::Duration {
        time::Duration::seconds(s)
    }

    fn cache(capacity: usize, ttl_s: u64) -> BoundedTtlCache<u32, &'static str> {
        BoundedTtlCache::new(capacity, Duration::from_secs(ttl_s))
    }

    #[test]
    fn serves_what_was_inserted_and_counts() {
        let c = cache(4, 60);
        assert!(c.is_empty());
        assert_eq!(c.get(&1, t0()), None);
        c.insert(1, "one", t0(), None);
        assert_eq!(c.get(&1, t0()), Some("one"));
        assert_eq!(
            c.get(&1, t0() + secs(60)),
            Some("one"),
            "the TTL is inclusive"
        );
        assert_eq!(c.get(&2, t0()), None);
        assert_eq!(
            c.stats(),
            CacheStats {
                hits: 2,
                misses: 2,
                entries: 1
            }
        );
    }

    #[test]
    fn never_holds_more_than_capacity() {
        let c = cache(3, 60);
        for k in 0..10 {
            c.insert(k, "v", t0() + secs(k.into()), None);
            assert!(c.len() <= 3);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.capacity(), 3);
        // Capacity 0 means 1.
        let one = cache(0, 60);
        one.insert(1, "a", t0(), None);
        one.insert(2, "b", t0(), None);
        assert_eq!(one.len(), 1);
        assert_eq!(one.get(&2, t0()), Some("b"));
    }

    #[test]
    fn expires_after_the_ttl() {
        let c = cache(4, 60);
        c.insert(1, "one", t0(), None);
        assert_eq!(c.get(&1, t0() + secs(61)), None);
        assert_eq!(c.stats().misses, 1);
    }

    #[test]
    fn expires_at_the_limit_before_the_ttl() {
        let c = cache(4, 600);
        c.insert(1, "one", t0(), Some(t0() + secs(10)));
        assert_eq!(c.get(&1, t0() + secs(10)), Some("one"));
        assert_eq!(c.get(&1, t0() + secs(11)), None);
        // A limit after the TTL does not extend it.
        c.insert(2, "two", t0(), Some(t0() + secs(10_000)));
        assert_eq!(c.get(&2, t0() + secs(601)), None);
    }

    #[test]
    fn not_served_before_its_insertion() {
        let c = cache(4, 60);
        c.insert(1, "one", t0(), None);
        assert_eq!(c.get(&1, t0() - secs(1)), None);
    }

    #[test]
    fn evicts_the_oldest_insertion_when_full() {
        let c = cache(2, 600);
        c.insert(1, "one", t0(), None);
        c.insert(2, "two", t0(), None);
        // Reading 1 does not make it newer: eviction goes by insertion.
        assert_eq!(c.get(&1, t0()), Some("one"));
        c.insert(3, "three", t0(), None);
        assert_eq!(c.get(&1, t0()), None, "oldest evicted");
        assert_eq!(c.get(&2, t0()), Some("two"));
        assert_eq!(c.get(&3, t0()), Some("three"));
        // Re-inserting a key makes it the newest, without evicting.
        c.insert(2, "two again", t0(), None);
        assert_eq!(c.len(), 2);
        c.insert(4, "four", t0(), None);
        assert_eq!(c.get(&3, t0()), None, "3 is now the oldest");
        assert_eq!(c.get(&2, t0()), Some("two again"));
        assert_eq!(c.get(&4, t0()), Some("four"));
    }

    #[test]
    fn evicts_expired_entries_before_the_oldest() {
        let c = cache(3, 600);
        c.insert(1, "old but valid", t0(), None);
        c.insert(2, "expires soon", t0() + secs(1), Some(t0() + secs(5)));
        c.insert(3, "expires soon too", t0() + secs(2), Some(t0() + secs(5)));
        c.insert(4, "new", t0() + secs(10), None);
        assert_eq!(c.len(), 2, "both expired entries went");
        assert_eq!(c.get(&1, t0() + secs(10)), Some("old but valid"));
        assert_eq!(c.get(&4, t0() + secs(10)), Some("new"));
    }

    #[test]
    fn clear_keeps_the_counters() {
        let c = cache(4, 60);
        c.insert(1, "one", t0(), None);
        assert!(c.get(&1, t0()).is_some());
        c.clear();
        assert!(c.is_empty());
        assert_eq!(c.get(&1, t0()), None);
        assert_eq!(
            c.stats(),
            CacheStats {
                hits: 1,
                misses: 1,
                entries: 0
            }
        );
    }

    #[test]
    fn a_huge_ttl_never_expires() {
        let c = cache(4, u64::MAX);
        c.insert(1, "one", t0(), None);
        assert_eq!(c.get(&1, t0() + secs(100 * 365 * 86_400)), Some("one"));
    }
}
