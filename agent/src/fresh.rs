//! Fresh evidence without a quote per client: one quote per *window*.
//!
//! A TDX quote or SNP report can take about a second and is serialised per
//! host, so the agent never takes one per client. Instead each identity
//! (certificate key) has a [`Batcher`] that takes one quote per window,
//! over the root of a hash tree whose leaves are the nonces of every client
//! that asked during the window:
//!
//! * `GET /attestation/batch?nonce=HEX` — the client's nonce joins the
//!   next window; the answer is that window's evidence plus the inclusion
//!   proof of the nonce. Client-chosen freshness (the quote was taken after
//!   the client chose its nonce), one quote per window however many clients
//!   ask; a client waits at most one quote in flight plus its own.
//! * `GET /attestation/latest` — the most recent window's evidence at
//!   once, never older than [`FreshSettings::max_age`] (N = 2 × the
//!   refresh interval): while clients ask, a window is quoted every
//!   interval even without nonces. Freshness by the TEE's clock (the
//!   claims' `createdAt`), for clients that cannot wait for a quote.
//!
//! The legacy `GET /attestation?nonce=HEX` (one quote per request, verified
//! by `chrysalis_ratls::verify_fresh` with the client's own nonce) stays for
//! existing clients, bounded separately (see [`crate::attestation`]).
//!
//! ## The tree (format `chrysalis-fresh-batch-v1`)
//!
//! SHA-256 with domain separation:
//! * leaf 0, the window header: `H(0x02 ‖ "chrysalis-fresh-batch-v1" ‖
//!   sequence (u64, big-endian) ‖ previous root (32 bytes, zeros first))`,
//!   which chains the windows;
//! * leaf i ≥ 1, a client nonce: `H(0x00 ‖ nonce)`, in arrival order;
//! * inner node: `H(0x01 ‖ left ‖ right)`; the last node of an odd level
//!   moves up unchanged.
//!
//! The window's evidence is ordinary fresh evidence (the
//! `chrysalis_ratls::FreshEvidence` JSON) whose claims nonce is the root:
//! `chrysalis_ratls::verify_fresh(fresh, spki, gpu, root, …)` checks it.
//! [`verify_batched`] does that plus the inclusion proof and the age.

use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrysalis_ratls::{FreshEvidence, VerifiedPeer, VerifierConfig};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::{watch, Notify};

use crate::identity::AttestationSource;

/// The answer format named in every batched answer.
pub const FORMAT: &str = "chrysalis-fresh-batch-v1";

/// A hash of the tree.
pub type Hash = [u8; 32];

/// Largest batched answer [`BatchedEvidence::from_json`] accepts.
pub const MAX_BATCHED_JSON_LEN: usize = chrysalis_ratls::fresh::MAX_FRESH_JSON_LEN + (64 << 10);

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

// ------------------------------------------------------------------ tree

fn h(parts: &[&[u8]]) -> Hash {
    let mut d = Sha256::new();
    for p in parts {
        d.update(p);
    }
    d.finalize().into()
}

/// The leaf of a client nonce.
pub fn nonce_leaf(nonce: &[u8]) -> Hash {
    h(&[&[0x00], nonce])
}

/// The header leaf (leaf 0) of window `sequence`.
pub fn header_leaf(sequence: u64, previous_root: &Hash) -> Hash {
    h(&[
        &[0x02],
        FORMAT.as_bytes(),
        &sequence.to_be_bytes(),
        previous_root,
    ])
}

fn node(left: &Hash, right: &Hash) -> Hash {
    h(&[&[0x01], left, right])
}

/// Every level of the tree over `leaves` (at least one), leaves first,
/// the root alone last.
fn levels(leaves: Vec<Hash>) -> Vec<Vec<Hash>> {
    let mut all = vec![leaves];
    while all.last().map_or(0, Vec::len) > 1 {
        let below = all.last().expect("non-empty");
        let up = below
            .chunks(2)
            .map(|p| match p {
                [l, r] => node(l, r),
                [one] => *one,
                _ => unreachable!("chunks of two"),
            })
            .collect();
        all.push(up);
    }
    all
}

/// Which side a proof step's hash goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// `H(0x01 ‖ hash ‖ running)`.
    Left,
    /// `H(0x01 ‖ running ‖ hash)`.
    Right,
}

/// One step of an inclusion proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofStep {
    /// Where the sibling goes.
    pub side: Side,
    /// The sibling, hex in JSON.
    #[serde(with = "hex::serde")]
    pub hash: Hash,
}

fn proof(levels: &[Vec<Hash>], mut index: usize) -> Vec<ProofStep> {
    let mut out = Vec::new();
    for level in &levels[..levels.len() - 1] {
        let sibling = index ^ 1;
        if sibling < level.len() {
            out.push(ProofStep {
                side: if sibling < index {
                    Side::Left
                } else {
                    Side::Right
                },
                hash: level[sibling],
            });
        }
        index /= 2;
    }
    out
}

/// The root that `nonce` and `proof` lead to.
pub fn root_from_proof(nonce: &[u8], proof: &[ProofStep]) -> Hash {
    proof.iter().fold(nonce_leaf(nonce), |acc, s| match s.side {
        Side::Left => node(&s.hash, &acc),
        Side::Right => node(&acc, &s.hash),
    })
}

// ------------------------------------------------------------------ answers

/// The window an answer comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowInfo {
    /// Window number (per identity, from 1).
    pub sequence: u64,
    /// Leaves in the tree (the header and the nonces).
    pub leaves: usize,
    /// The tree's root: the nonce of the window's evidence (hex).
    #[serde(with = "hex::serde")]
    pub root: Hash,
    /// The previous window's root (zeros for the first), hashed into the
    /// header leaf (hex).
    #[serde(with = "hex::serde")]
    pub previous_root: Hash,
}

/// `GET /attestation/batch` and `/attestation/latest` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchedEvidence {
    /// [`FORMAT`].
    pub format: String,
    /// `batch` or `latest`.
    pub mode: String,
    /// The window.
    pub window: WindowInfo,
    /// N in seconds, as the agent is configured (informative: a client
    /// checks against its own bound).
    pub max_age_secs: u64,
    /// Inclusion proof of the client's nonce (`batch` only).
    pub proof: Option<Vec<ProofStep>>,
    /// The window's evidence: claims nonce = `window.root`.
    pub fresh: FreshEvidence,
}

impl BatchedEvidence {
    /// Parses an answer (bounded size, no unknown fields).
    pub fn from_json(text: &str) -> Result<Self, VerifyError> {
        if text.len() > MAX_BATCHED_JSON_LEN {
            return Err(VerifyError::Format(format!(
                "{} bytes is more than the {MAX_BATCHED_JSON_LEN} accepted",
                text.len()
            )));
        }
        serde_json::from_str(text).map_err(|e| {
            VerifyError::Format(format!("line {}, column {}: {e}", e.line(), e.column()))
        })
    }
}

/// Why a batched answer was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Not a `chrysalis-fresh-batch-v1` answer.
    #[error("not a {FORMAT} answer: {0}")]
    Format(String),
    /// The nonce's proof does not lead to the window's root.
    #[error("the nonce is not in the window's tree (proof leads to {computed}, root is {root})")]
    NotIncluded {
        /// Root computed from the nonce and proof (hex).
        computed: String,
        /// The window's root (hex).
        root: String,
    },
    /// The evidence is older than allowed (by its claims' `createdAt`).
    #[error("the evidence is {age_secs} s old; at most {max_secs} s accepted")]
    Stale {
        /// Age in seconds.
        age_secs: i64,
        /// The bound in seconds (N plus one second of rounding).
        max_secs: i64,
    },
    /// The evidence itself did not verify (binding, key, TEE, policy).
    #[error(transparent)]
    Evidence(#[from] chrysalis_ratls::Error),
}

/// Verifies a batched answer received over an RA-TLS connection whose
/// certificate has `expected_spki` (and commits to `cert_gpu_digest`):
///
/// 1. with `nonce` (batch mode), the proof leads from `H(0x00 ‖ nonce)` to
///    `window.root`;
/// 2. the evidence verifies as fresh evidence for the nonce `window.root`
///    (`chrysalis_ratls::verify_fresh`: bound to its claims, the claims
///    name the connection's key, the policy accepts);
/// 3. its claims' `createdAt` is at most `max_age` (+1 s: whole seconds)
///    before `now`, and not more than `max_age` after it.
pub fn verify_batched(
    answer: &BatchedEvidence,
    expected_spki: &[u8],
    cert_gpu_digest: Option<&[u8; 48]>,
    nonce: Option<&[u8]>,
    max_age: Duration,
    config: &VerifierConfig,
    now: OffsetDateTime,
) -> Result<VerifiedPeer, VerifyError> {
    if answer.format != FORMAT {
        return Err(VerifyError::Format(format!("format `{}`", answer.format)));
    }
    let root = answer.window.root;
    if let Some(nonce) = nonce {
        let proof = answer
            .proof
            .as_deref()
            .ok_or_else(|| VerifyError::Format("no inclusion proof for the nonce".into()))?;
        let computed = root_from_proof(nonce, proof);
        if computed != root {
            return Err(VerifyError::NotIncluded {
                computed: hex::encode(computed),
                root: hex::encode(root),
            });
        }
    }
    let peer = chrysalis_ratls::verify_fresh(
        &answer.fresh,
        expected_spki,
        cert_gpu_digest,
        &root,
        config,
        now,
    )?;
    let claims = chrysalis_ratls::Claims::from_der(&answer.fresh.claims)?;
    let age = (now - claims.created_at).whole_seconds();
    let max_secs = i64::try_from(max_age.as_secs())
        .unwrap_or(i64::MAX)
        .saturating_add(1);
    if age > max_secs || -age > max_secs {
        return Err(VerifyError::Stale {
            age_secs: age,
            max_secs,
        });
    }
    Ok(peer)
}

// ------------------------------------------------------------------ windows

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
    fn every_leaf_proves_into_the_root() {
        for n in 1..=17usize {
            let nonces: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; 1 + i % 5]).collect();
            let mut leaves = vec![header_leaf(7, &[9; 32])];
            leaves.extend(nonces.iter().map(|x| nonce_leaf(x)));
            let lv = levels(leaves);
            let root = lv.last().unwrap()[0];
            for (i, x) in nonces.iter().enumerate() {
                let p = proof(&lv, i + 1);
                assert_eq!(root_from_proof(x, &p), root, "n={n} i={i}");
                assert!(p.len() <= 5);
                // Another nonce does not prove with this proof.
                assert_ne!(root_from_proof(b"other", &p), root);
            }
        }
    }

    #[test]
    fn domain_separation() {
        // A nonce that looks like an inner node is not one.
        let a = nonce_leaf(b"a");
        let b = nonce_leaf(b"b");
        let inner = node(&a, &b);
        let mut fake = vec![0x01];
        fake.extend_from_slice(&a);
        fake.extend_from_slice(&b);
        assert_ne!(nonce_leaf(&fake[1..]), inner);
        assert_ne!(header_leaf(1, &[0; 32]), header_leaf(2, &[0; 32]));
        assert_ne!(header_leaf(1, &[0; 32]), header_leaf(1, &[1; 32]));
    }

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
