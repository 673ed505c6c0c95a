//! Usage receipts, signed by the agent's attested TLS key.
//!
//! A receipt is a JSON object whose canonical form is its JCS (RFC 8785)
//! serialisation: keys in lexicographic order, no whitespace, strings are
//! lowercase hex or the fixed version tag, numbers are integers ≤ 2^53 − 1.
//! The signature covers exactly those bytes: ECDSA P-256 with SHA-256
//! (ASN.1 DER signature) or Ed25519, whichever key the RA-TLS certificate
//! carries. On the wire (`X-Chrysalis-Receipt` header, or the data of the
//! `chrysalis.receipt` SSE event) a signed receipt is
//! `base64url(canonical JSON) "." base64url(signature)`, both unpadded.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ED25519};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::error::{malformed, Error, Result};
use crate::price::{amount_due, MAX_SAFE_INTEGER};

/// The `v` field of every receipt of this format.
pub const RECEIPT_VERSION: &str = "chrysalis-receipt/1";
/// Largest encoded receipt accepted (bytes).
pub const MAX_ENCODED_LEN: usize = 4096;

/// One completed response's usage. Field order is the JCS order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// Nanotons due for this response: `ceil((prompt_tokens +
    /// completion_tokens) × price_per_million / 10^6)`.
    pub amount: u64,
    /// The channel, raw form `0:<64 hex>` (lowercase).
    pub channel: String,
    /// Completion tokens as the engine reported them.
    pub completion_tokens: u64,
    /// Cumulative nanotons due on this channel, this receipt included.
    pub cumulative: u64,
    /// Nanotons per million tokens in force.
    pub price_per_million: u64,
    /// Prompt tokens as the engine reported them.
    pub prompt_tokens: u64,
    /// SHA-256 (hex) of the request body as received.
    pub request_sha256: String,
    /// SHA-256 (hex) of the response body bytes sent before the receipt
    /// (streams: every byte before the receipt event).
    pub response_sha256: String,
    /// Sequence number on the channel, from 1, one per receipt.
    pub seq: u64,
    /// [`RECEIPT_VERSION`].
    pub v: String,
}

/// SHA-256 as lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Receipt {
    /// Checks every field's form and that `amount` is what the tokens cost
    /// at `price_per_million`.
    pub fn check(&self) -> Result<()> {
        let inv = |field, detail: &str| Error::Invalid {
            field,
            detail: detail.to_string(),
        };
        if self.v != RECEIPT_VERSION {
            return Err(inv("v", "unknown receipt version"));
        }
        let (wc, hash) = self
            .channel
            .split_once(':')
            .ok_or_else(|| inv("channel", "not <workchain>:<64 hex>"))?;
        if !(wc == "0" || wc == "-1") || !is_hex(hash, 64) {
            return Err(inv(
                "channel",
                "not 0:<64 lowercase hex> or -1:<64 lowercase hex>",
            ));
        }
        if !is_hex(&self.request_sha256, 64) {
            return Err(inv("request_sha256", "not 64 lowercase hex digits"));
        }
        if !is_hex(&self.response_sha256, 64) {
            return Err(inv("response_sha256", "not 64 lowercase hex digits"));
        }
        for (field, v) in [
            ("amount", self.amount),
            ("completion_tokens", self.completion_tokens),
            ("cumulative", self.cumulative),
            ("price_per_million", self.price_per_million),
            ("prompt_tokens", self.prompt_tokens),
            ("seq", self.seq),
        ] {
            if v > MAX_SAFE_INTEGER {
                return Err(inv(field, "above 2^53-1"));
            }
        }
        if self.seq == 0 {
            return Err(inv("seq", "sequence numbers start at 1"));
        }
        let tokens = self.prompt_tokens.saturating_add(self.completion_tokens);
        if amount_due(tokens, self.price_per_million) != Some(self.amount) {
            return Err(inv("amount", "not ceil(tokens x price_per_million / 10^6)"));
        }
        if self.cumulative < self.amount {
            return Err(inv("cumulative", "below this receipt's amount"));
        }
        Ok(())
    }

    /// The canonical (JCS) bytes that are signed.
    pub fn canonical(&self) -> Result<Vec<u8>> {
        self.check()?;
        serde_json::to_vec(self).map_err(|e| Error::Signing(format!("receipt JSON: {e}")))
    }
}

/// A receipt with its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedReceipt {
    /// The receipt.
    pub receipt: Receipt,
    /// The canonical bytes (what was signed).
    canonical: Vec<u8>,
    /// The signature (ECDSA P-256 DER or Ed25519, per the key).
    pub signature: Vec<u8>,
}

impl SignedReceipt {
    /// Signs `receipt` with `sign`, a function that signs bytes with the
    /// attested key (the agent passes its TLS key's signer).
    pub fn sign<E: std::fmt::Display>(
        receipt: Receipt,
        sign: impl FnOnce(&[u8]) -> std::result::Result<Vec<u8>, E>,
    ) -> Result<Self> {
        let canonical = receipt.canonical()?;
        let signature = sign(&canonical).map_err(|e| Error::Signing(e.to_string()))?;
        Ok(SignedReceipt {
            receipt,
            canonical,
            signature,
        })
    }

    /// The wire form: `base64url(json).base64url(signature)`.
    pub fn encode(&self) -> String {
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&self.canonical),
            URL_SAFE_NO_PAD.encode(&self.signature)
        )
    }

    /// Parses the wire form; the JSON must be exactly the canonical form of
    /// the receipt it holds. Not verified: call [`SignedReceipt::verify`].
    pub fn parse(s: &str) -> Result<Self> {
        if s.len() > MAX_ENCODED_LEN {
            return Err(malformed(
                "receipt",
                format!("{} bytes, at most {MAX_ENCODED_LEN}", s.len()),
            ));
        }
        let (json_b64, sig_b64) = s
            .split_once('.')
            .ok_or_else(|| malformed("receipt", "no '.' between receipt and signature"))?;
        let canonical = URL_SAFE_NO_PAD
            .decode(json_b64)
            .map_err(|e| malformed("receipt", format!("receipt base64url: {e}")))?;
        let signature = URL_SAFE_NO_PAD
            .decode(sig_b64)
            .map_err(|e| malformed("receipt", format!("signature base64url: {e}")))?;
        let receipt: Receipt = serde_json::from_slice(&canonical)
            .map_err(|e| malformed("receipt", format!("JSON: {e}")))?;
        if receipt.canonical()? != canonical {
            return Err(malformed("receipt", "JSON is not in canonical (JCS) form"));
        }
        Ok(SignedReceipt {
            receipt,
            canonical,
            signature,
        })
    }

    /// Verifies the signature under the RA-TLS certificate's
    /// SubjectPublicKeyInfo (DER): P-256 ECDSA-SHA256 or Ed25519.
    pub fn verify(&self, spki_der: &[u8]) -> Result<()> {
        let (rest, spki) = SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|e| Error::UnsupportedKey(format!("SubjectPublicKeyInfo: {e}")))?;
        if !rest.is_empty() {
            return Err(Error::UnsupportedKey(
                "trailing bytes after the SubjectPublicKeyInfo".into(),
            ));
        }
        let oid = spki.algorithm.algorithm.to_id_string();
        let alg: &dyn ring::signature::VerificationAlgorithm = match oid.as_str() {
            "1.2.840.10045.2.1" => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string());
                if curve.as_deref() != Some("1.2.840.10045.3.1.7") {
                    return Err(Error::UnsupportedKey(format!(
                        "EC key on curve {curve:?}, expected P-256"
                    )));
                }
                &ECDSA_P256_SHA256_ASN1
            }
            "1.3.101.112" => &ED25519,
            other => return Err(Error::UnsupportedKey(format!("algorithm {other}"))),
        };
        UnparsedPublicKey::new(alg, &*spki.subject_public_key.data)
            .verify(&self.canonical, &self.signature)
            .map_err(|_| Error::BadSignature {
                what: "receipt",
                key: format!("the attested key (SPKI SHA-256 {})", sha256_hex(spki_der)),
            })
    }
}

/// The line that opens the receipt event in a stream.
pub const SSE_EVENT_LINE: &[u8] = b"event: chrysalis.receipt\n";
/// Longest receipt data line accepted in a stream (bytes).
const MAX_DATA_LINE: usize = MAX_ENCODED_LEN + 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SseState {
    Hashing,
    InEvent,
    Done,
}

/// A client's view of a paid event stream: hashes every byte before the
/// `chrysalis.receipt` event (the receipt's `response_sha256`) and picks
/// up the event's data. Feed it the raw body bytes as they arrive.
#[derive(Debug, Clone)]
pub struct SseReceiptScanner {
    hasher: Sha256,
    state: SseState,
    at_line_start: bool,
    held: Vec<u8>,
    data_line: Vec<u8>,
    receipt: Option<String>,
}

impl Default for SseReceiptScanner {
    fn default() -> Self {
        Self {
            hasher: Sha256::new(),
            state: SseState::Hashing,
            at_line_start: true,
            held: Vec::new(),
            data_line: Vec::new(),
            receipt: None,
        }
    }
}

impl SseReceiptScanner {
    /// A scanner at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes of the body.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<()> {
        let mut hash_from = 0usize;
        for (i, &b) in chunk.iter().enumerate() {
            match self.state {
                SseState::Hashing => {
                    if self.at_line_start || !self.held.is_empty() {
                        // Hash what precedes this byte in the chunk first.
                        self.hasher.update(&chunk[hash_from..i]);
                        hash_from = i + 1;
                        self.held.push(b);
                        if SSE_EVENT_LINE.starts_with(&self.held) {
                            self.at_line_start = false;
                            if self.held.len() == SSE_EVENT_LINE.len() {
                                self.held.clear();
                                self.state = SseState::InEvent;
                            }
                            continue;
                        }
                        self.hasher.update(&self.held);
                        self.held.clear();
                    }
                    self.at_line_start = b == b'\n';
                }
                SseState::InEvent => {
                    hash_from = i + 1;
                    if b == b'\n' {
                        let line = std::mem::take(&mut self.data_line);
                        let data = line.strip_prefix(b"data: ").ok_or_else(|| {
                            malformed("receipt event", "no data line after the event line")
                        })?;
                        let text = std::str::from_utf8(data)
                            .map_err(|_| malformed("receipt event", "data is not UTF-8"))?;
                        self.receipt = Some(text.to_string());
                        self.state = SseState::Done;
                    } else {
                        if self.data_line.len() >= MAX_DATA_LINE {
                            return Err(malformed("receipt event", "data line too long"));
                        }
                        self.data_line.push(b);
                    }
                }
                SseState::Done => {
                    hash_from = chunk.len();
                    break;
                }
            }
        }
        if self.state == SseState::Hashing && hash_from < chunk.len() {
            self.hasher.update(&chunk[hash_from..]);
        }
        Ok(())
    }

    /// Whether the receipt event has been read.
    pub fn has_receipt(&self) -> bool {
        self.receipt.is_some()
    }

    /// The SHA-256 of the bytes before the receipt event, and the encoded
    /// receipt (`None` when the stream carried none).
    pub fn finish(self) -> ([u8; 32], Option<String>) {
        let mut h = self.hasher;
        if self.state == SseState::Hashing {
            h.update(&self.held);
        }
        (h.finalize().into(), self.receipt)
    }
}
