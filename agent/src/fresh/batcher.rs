//! The windows of one identity ([`Batcher`]), and the batchers of the
//! identities in use ([`FreshHub`]).

use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{watch, Notify};

use crate::identity::AttestationSource;
use chrysalis_ratls::batch::tree::{
    header_leaf, levels, nonce_leaf, proof, Hash, ProofStep, FORMAT,
};
use chrysalis_ratls::batch::WindowInfo;

/// Windows are quoted on schedule only while `/attestation/latest` was
/// asked within this many refresh intervals; then the batcher sleeps until
/// the next request.
const IDLE_INTERVALS: u32 = 12;

/// How windows are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreshSettings {
    /// While clients ask for `/attestation/latest`, a new window is quoted
    /// this long after the previous one started.
    pub interval: Duration,
    /// Client nonces one window takes at most (503 beyond).
    pub max_batch: usize,
    /// How long a request waits for its window.
    pub wait: Duration,
}

impl FreshSettings {
    /// N: `/attestation/latest` never serves a window whose quote was
    /// started longer ago than this (2 × `interval`).
    pub fn max_age(&self) -> Duration {
        self.interval.saturating_mul(2)
    }
}

/// Why a request could not be answered from a window.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The window's nonce list is full.
    #[error("{0} nonces are already waiting for the next quote")]
    Full(usize),
    /// No window was published in time.
    #[error("no evidence within {0} ms")]
    Timeout(u128),
    /// The TEE did not produce evidence for the window.
    #[error("{0}")]
    Failed(String),
}

/// Where a window is published to the requests waiting for it.
type WindowRx = watch::Receiver<Option<Arc<Window>>>;

/// A batcher and the identity it quotes for.
type HubEntry = (Weak<dyn AttestationSource>, Arc<Batcher>);

/// One quoted window.
#[derive(Debug)]
struct Window {
    info: WindowInfo,
    levels: Vec<Vec<Hash>>,
    started: Instant,
    outcome: Result<Published, String>,
}

#[derive(Debug)]
struct Published {
    /// The evidence JSON (`FreshEvidence`).
    fresh: String,
    /// The whole `/attestation/latest` answer, shared by every client.
    latest: Bytes,
}

impl Window {
    fn answer(
        &self,
        mode: &str,
        proof: Option<&[ProofStep]>,
        max_age: Duration,
        fresh: &str,
    ) -> String {
        let window = serde_json::to_string(&self.info).unwrap_or_default();
        let proof = serde_json::to_string(&proof).unwrap_or_else(|_| "null".into());
        format!(
            "{{\"format\":\"{FORMAT}\",\"mode\":\"{mode}\",\"window\":{window},\
             \"max_age_secs\":{},\"proof\":{proof},\"fresh\":{fresh}}}",
            max_age.as_secs()
        )
    }
}

#[derive(Debug)]
struct State {
    /// Leaves of the next window (index 0 is reserved for the header).
    pending: Vec<Hash>,
    /// Where the next window is published.
    slot: watch::Sender<Option<Arc<Window>>>,
    /// A request waits for the next window without a nonce.
    forced: bool,
    /// The last `/attestation/latest` request.
    last_demand: Instant,
}

/// The windows of one identity; see the module documentation.
pub struct Batcher {
    source: Weak<dyn AttestationSource>,
    settings: FreshSettings,
    state: Mutex<State>,
    latest: RwLock<Option<Arc<Window>>>,
    wake: Notify,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Batcher {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn idle_after(&self) -> Duration {
        self.settings.interval.saturating_mul(IDLE_INTERVALS)
    }

    fn current_latest(&self) -> Option<Arc<Window>> {
        self.latest
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Joins the next window (with a nonce leaf, or forcing a window
    /// without one); returns where it will be published and the leaf index.
    fn join(&self, leaf: Option<Hash>) -> Result<(WindowRx, usize), Refusal> {
        let mut st = self.lock();
        let index = match leaf {
            Some(l) => {
                if st.pending.len() >= self.settings.max_batch {
                    return Err(Refusal::Full(st.pending.len()));
                }
                st.pending.push(l);
                st.pending.len()
            }
            None => {
                st.forced = true;
                0
            }
        };
        let rx = st.slot.subscribe();
        drop(st);
        self.wake.notify_one();
        Ok((rx, index))
    }

    async fn wait(&self, mut rx: WindowRx) -> Result<Arc<Window>, Refusal> {
        let wait = self.settings.wait;
        match tokio::time::timeout(wait, rx.wait_for(|w| w.is_some())).await {
            Ok(Ok(w)) => Ok(w.clone().expect("waited for Some")),
            Ok(Err(_)) => Err(Refusal::Failed("the evidence refresher ended".into())),
            Err(_) => Err(Refusal::Timeout(wait.as_millis())),
        }
    }

    /// `GET /attestation/latest`: the current window's answer, or the next
    /// window's when the current one is older than N (or missing).
    pub async fn latest(&self) -> Result<Bytes, Refusal> {
        let was_idle = {
            let mut st = self.lock();
            let idle = st.last_demand.elapsed() > self.idle_after();
            st.last_demand = Instant::now();
            idle
        };
        if was_idle {
            // The refresher stopped quoting on schedule: it starts again.
            self.wake.notify_one();
        }
        if let Some(w) = self.current_latest() {
            if w.started.elapsed() <= self.settings.max_age() {
                if let Ok(p) = &w.outcome {
                    return Ok(p.latest.clone());
                }
            }
        }
        let (rx, _) = self.join(None)?;
        let w = self.wait(rx).await?;
        match &w.outcome {
            Ok(p) => Ok(p.latest.clone()),
            Err(why) => Err(Refusal::Failed(why.clone())),
        }
    }

    /// `GET /attestation/batch?nonce=HEX`: the next window's answer with
    /// the inclusion proof of `nonce`.
    pub async fn batch(&self, nonce: &[u8]) -> Result<String, Refusal> {
        let (rx, index) = self.join(Some(nonce_leaf(nonce)))?;
        let w = self.wait(rx).await?;
        match &w.outcome {
            Ok(p) => {
                let steps = proof(&w.levels, index);
                Ok(w.answer("batch", Some(&steps), self.settings.max_age(), &p.fresh))
            }
            Err(why) => Err(Refusal::Failed(why.clone())),
        }
    }

    /// Takes the pending leaves as the next window, quotes it, publishes it.
    async fn quote_window(&self, sequence: u64, previous_root: Hash) -> Option<Hash> {
        let (slot, mut leaves) = {
            let mut st = self.lock();
            let (next, _) = watch::channel(None);
            let slot = std::mem::replace(&mut st.slot, next);
            st.forced = false;
            let mut leaves = Vec::with_capacity(st.pending.len() + 1);
            leaves.push([0; 32]);
            leaves.append(&mut st.pending);
            (slot, leaves)
        };
        leaves[0] = header_leaf(sequence, &previous_root);
        let count = leaves.len();
        let levels = levels(leaves);
        let root = levels.last().expect("a root")[0];
        let info = WindowInfo {
            sequence,
            leaves: count,
            root,
            previous_root,
        };
        let started = Instant::now();
        let outcome = match self.source.upgrade() {
            None => Err("this certificate's identity is gone".to_string()),
            Some(source) => {
                match tokio::task::spawn_blocking(move || source.fresh_evidence_json(&root)).await {
                    Ok(r) => r,
                    Err(e) => Err(format!("evidence task failed: {e}")),
                }
            }
        };
        let mut window = Window {
            info,
            levels,
            started,
            outcome: Err(String::new()),
        };
        window.outcome = outcome.map(|fresh| {
            let latest =
                Bytes::from(window.answer("latest", None, self.settings.max_age(), &fresh));
            Published { fresh, latest }
        });
        if let Err(why) = &window.outcome {
            tracing::error!(sequence, "fresh evidence for a window failed: {why}");
        }
        let ok = window.outcome.is_ok();
        let window = Arc::new(window);
        slot.send_replace(Some(window.clone()));
        if ok {
            *self.latest.write().unwrap_or_else(|p| p.into_inner()) = Some(window);
            Some(root)
        } else {
            None
        }
    }

    /// When the next window is due: now (nonces wait, or a request forced
    /// one), at the next interval (clients ask for `latest`), or not until
    /// woken (`None`).
    fn next_due(&self) -> Option<tokio::time::Instant> {
        let now = tokio::time::Instant::now();
        let st = self.lock();
        if !st.pending.is_empty() || st.forced {
            return Some(now);
        }
        if st.last_demand.elapsed() > self.idle_after() {
            return None;
        }
        drop(st);
        Some(match self.current_latest() {
            Some(w) => tokio::time::Instant::from_std(w.started + self.settings.interval),
            None => now,
        })
    }

    /// The refresher: one window at a time, for as long as the identity
    /// lives.
    async fn run(self: Arc<Self>) {
        let mut sequence = 0u64;
        let mut previous_root = [0u8; 32];
        loop {
            if self.source.strong_count() == 0 {
                // Requests still waiting get an answer, not a hang.
                let _ = self.quote_window(sequence + 1, previous_root).await;
                return;
            }
            match self.next_due() {
                Some(at) if at <= tokio::time::Instant::now() => {}
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.wake.notified() => {}
                    }
                    continue;
                }
                None => {
                    // Idle: wake on a request, or now and then to notice
                    // that the identity is gone.
                    let _ =
                        tokio::time::timeout(Duration::from_secs(60), self.wake.notified()).await;
                    continue;
                }
            }
            sequence += 1;
            match self.quote_window(sequence, previous_root).await {
                Some(root) => previous_root = root,
                // The TEE failed (the requests waiting were told): not
                // again at once.
                None => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }
}

/// The batchers of the identities in use, made on first use.
pub struct FreshHub {
    settings: FreshSettings,
    runtime: Option<tokio::runtime::Handle>,
    entries: Mutex<Vec<HubEntry>>,
}

impl std::fmt::Debug for FreshHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FreshHub")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl FreshHub {
    /// A hub whose refreshers run on the current Tokio runtime (when there
    /// is one; else on the runtime of the first request).
    pub fn new(settings: FreshSettings) -> Self {
        Self {
            settings,
            runtime: tokio::runtime::Handle::try_current().ok(),
            entries: Mutex::new(Vec::new()),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &FreshSettings {
        &self.settings
    }

    /// The batcher of `source`, started (and its first window quoted) when
    /// it is new.
    pub fn batcher(&self, source: &Arc<dyn AttestationSource>) -> Arc<Batcher> {
        let key = Arc::as_ptr(source).cast::<()>();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, b)) = entries
            .iter()
            .find(|(w, _)| w.as_ptr().cast::<()>() == key && w.strong_count() > 0)
        {
            return b.clone();
        }
        entries.retain(|(w, _)| w.strong_count() > 0);
        let (slot, _) = watch::channel(None);
        let b = Arc::new(Batcher {
            source: Arc::downgrade(source),
            settings: self.settings,
            state: Mutex::new(State {
                pending: Vec::new(),
                slot,
                forced: false,
                last_demand: Instant::now(),
            }),
            latest: RwLock::new(None),
            wake: Notify::new(),
        });
        entries.push((Arc::downgrade(source), b.clone()));
        let run = b.clone().run();
        match &self.runtime {
            Some(rt) => drop(rt.spawn(run)),
            None => drop(tokio::spawn(run)),
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_bound() {
        let s = FreshSettings {
            interval: Duration::from_secs(5),
            max_batch: 1,
            wait: Duration::from_secs(1),
        };
        assert_eq!(s.max_age(), Duration::from_secs(10));
    }
}
