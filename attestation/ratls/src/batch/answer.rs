//! The batched answer's JSON and its verification by a client.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::fresh::FreshEvidence;
use crate::peer::VerifiedPeer;
use crate::verify::VerifierConfig;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::tree::{root_from_proof, Hash, ProofStep, FORMAT};

/// Largest batched answer [`BatchedEvidence::from_json`] accepts.
pub const MAX_BATCHED_JSON_LEN: usize = crate::fresh::MAX_FRESH_JSON_LEN + (64 << 10);

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
    pub fn from_json(text: &str) -> Result<Self> {
        if text.len() > MAX_BATCHED_JSON_LEN {
            return Err(Error::FreshEvidence(format!(
                "{} bytes is more than the {MAX_BATCHED_JSON_LEN} accepted",
                text.len()
            )));
        }
        serde_json::from_str(text).map_err(|e| {
            Error::FreshEvidence(format!("line {}, column {}: {e}", e.line(), e.column()))
        })
    }
}

/// Verifies a batched answer received over an RA-TLS connection whose
/// certificate has `expected_spki` (and commits to `cert_gpu_digest`):
///
/// 1. with `nonce` (batch mode), the proof leads from `H(0x00 ‖ nonce)` to
///    `window.root`;
/// 2. the evidence verifies as fresh evidence for the nonce `window.root`
///    ([`crate::fresh::verify_fresh`]: bound to its claims, the claims
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
) -> Result<VerifiedPeer> {
    if answer.format != FORMAT {
        return Err(Error::FreshEvidence(format!("format `{}`", answer.format)));
    }
    let root = answer.window.root;
    if let Some(nonce) = nonce {
        let proof = answer
            .proof
            .as_deref()
            .ok_or_else(|| Error::FreshEvidence("no inclusion proof for the nonce".into()))?;
        let computed = root_from_proof(nonce, proof);
        if computed != root {
            return Err(Error::NotInBatch {
                computed: hex::encode(computed),
                root: hex::encode(root),
            });
        }
    }
    let peer = crate::fresh::verify_fresh(
        &answer.fresh,
        expected_spki,
        cert_gpu_digest,
        &root,
        config,
        now,
    )?;
    let claims = crate::claims::Claims::from_der(&answer.fresh.claims)?;
    let age = (now - claims.created_at).whole_seconds();
    let max_secs = i64::try_from(max_age.as_secs())
        .unwrap_or(i64::MAX)
        .saturating_add(1);
    if age > max_secs || -age > max_secs {
        return Err(Error::StaleEvidence {
            age_secs: age,
            max_secs,
        });
    }
    Ok(peer)
}
