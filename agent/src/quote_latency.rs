//! `--sim-quote-latency`: an evidence provider that takes as long as a
//! real quote.
//!
//! On TDX hardware a configfs-tsm quote takes about a second and quotes are
//! serialised per guest (and across the guests of a host). [`SlowQuotes`]
//! wraps any [`EvidenceProvider`] so that each evidence request waits for
//! the ones before it (first come, first served, like the host's quote
//! queue), sleeps `latency`, then asks the wrapped provider: the simulator
//! then behaves like the hardware for tests and benchmarks of fresh
//! evidence.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use chrysalis_attestation::provider::{EvidenceProvider, RawEvidence};
use chrysalis_attestation::Tee;

/// See the module documentation.
pub struct SlowQuotes {
    inner: Arc<dyn EvidenceProvider>,
    latency: Duration,
    /// (next ticket, ticket being served): a first-come-first-served queue.
    queue: Mutex<(u64, u64)>,
    turn: Condvar,
}

/// Ends a turn in the queue, even if the wrapped provider panics.
struct Turn<'a>(&'a SlowQuotes);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut q = self.0.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.1 += 1;
        drop(q);
        self.0.turn.notify_all();
    }
}

impl std::fmt::Debug for SlowQuotes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlowQuotes")
            .field("inner", &self.inner.name())
            .field("latency", &self.latency)
            .finish()
    }
}

impl SlowQuotes {
    /// `inner`, with each evidence request taking `latency` more, one at a
    /// time.
    pub fn new(inner: Arc<dyn EvidenceProvider>, latency: Duration) -> Self {
        Self {
            inner,
            latency,
            queue: Mutex::new((0, 0)),
            turn: Condvar::new(),
        }
    }
}

impl EvidenceProvider for SlowQuotes {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn tee(&self) -> Tee {
        self.inner.tee()
    }

    fn evidence(&self, report_data: &[u8; 64]) -> chrysalis_attestation::Result<RawEvidence> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let ticket = q.0;
        q.0 += 1;
        while q.1 != ticket {
            q = self.turn.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        drop(q);
        let _turn = Turn(self);
        std::thread::sleep(self.latency);
        self.inner.evidence(report_data)
    }

    fn extend_rtmr3(&self, digest: &[u8; 48]) -> chrysalis_attestation::Result<()> {
        self.inner.extend_rtmr3(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn quotes_take_the_latency_one_at_a_time() {
        let sim = chrysalis_sim::SimProvider::new(Tee::Tdx).unwrap();
        let slow = Arc::new(SlowQuotes::new(Arc::new(sim), Duration::from_millis(150)));
        assert_eq!(slow.name(), "sim");
        assert_eq!(slow.tee(), Tee::Tdx);
        let t0 = Instant::now();
        let threads: Vec<_> = (0..2)
            .map(|i| {
                let s = slow.clone();
                std::thread::spawn(move || s.evidence(&[i; 64]).unwrap())
            })
            .collect();
        for t in threads {
            let ev = t.join().unwrap();
            assert_eq!(ev.tee, Tee::Tdx);
        }
        // Serialised: two quotes take at least twice the latency.
        assert!(
            t0.elapsed() >= Duration::from_millis(300),
            "{:?}",
            t0.elapsed()
        );
    }
}
