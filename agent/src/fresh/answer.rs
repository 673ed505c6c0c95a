//! The batched answer's JSON and its verification by a client.

use std::time::Duration;

use chrysalis_ratls::{FreshEvidence, VerifiedPeer, VerifierConfig};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::tree::{root_from_proof, Hash, ProofStep, FORMAT};

/// Largest batched answer [`BatchedEvidence::from_json`] accepts.
pub const MAX_BATCHED_JSON_LEN: usize = chrysalis_ratls::fresh::MAX_FRESH_JSON_LEN + (64 << 10);

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
