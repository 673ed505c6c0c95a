//! Evidence bound to a fresh nonce: the request, and its verification
//! without I/O (for transports that do their own HTTP, like the Python
//! binding).
//!
//! The certificate's evidence may be hours old and replayable by anyone
//! who holds its key; evidence whose claims carry our random nonce, for the
//! same key, was produced after we asked.

use chrysalis_ratls::{FreshEvidence, VerifiedPeer, VerifierConfig};
use time::OffsetDateTime;

use crate::error::{Error, Result};

/// Nonce length in bytes.
pub const NONCE_LEN: usize = 32;

/// A new random nonce.
pub fn new_nonce() -> Result<[u8; NONCE_LEN]> {
    let mut nonce = [0u8; NONCE_LEN];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut nonce)
        .map_err(|_| Error::NoRandom)?;
    Ok(nonce)
}

/// The request path that asks for evidence bound to `nonce`.
pub fn request_path(nonce: &[u8]) -> String {
    format!("/attestation?nonce={}", hex::encode(nonce))
}

/// Largest body of the node's answer kept in an error message.
const MAX_ERROR_BODY: usize = 512;

/// Verifies the node's answer (`status`, `body`) to [`request_path`]: it
/// must be evidence bound to `nonce`, for the key of `peer`, committing to
/// the same GPU evidence, authentic and accepted by the policy.
pub fn verify_answer(
    status: u16,
    body: &[u8],
    peer: &VerifiedPeer,
    nonce: &[u8],
    verifier: &VerifierConfig,
    now: OffsetDateTime,
) -> Result<(VerifiedPeer, FreshEvidence)> {
    if status != 200 {
        let mut text = String::from_utf8_lossy(body).into_owned();
        if text.len() > MAX_ERROR_BODY {
            let mut end = MAX_ERROR_BODY;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push('…');
        }
        return Err(Error::FreshEvidenceRefused { status, body: text });
    }
    let fresh = FreshEvidence::from_json(&String::from_utf8_lossy(body))?;
    let verified = chrysalis_ratls::verify_fresh(
        &fresh,
        peer.spki_der(),
        peer.gpu_evidence_digest(),
        nonce,
        verifier,
        now,
    )?;
    Ok((verified, fresh))
}
