//! The paying client: its channel file, the voucher it sends with each
//! request, and the checks of each receipt before paying for it. Shared
//! by `chrysalis chat --channel` and the Python client.
//!
//! A receipt is paid only when it is signed by the key of the verified
//! RA-TLS connection, that key is the one the registry had for the
//! machine when the channel opened (`key_hash`), it is for this channel,
//! carries the next sequence number, covers the request sent and the
//! response bytes received, charges the tokens the answer itself reported
//! and a price no higher than the channel's (the registry's price at
//! open), and its cumulative total is the previous one plus its amount
//! within the deposit.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tonlib_core::TonAddress;

use crate::error::{malformed, Error, Result};
use crate::receipt::{sha256_hex, SignedReceipt, SseReceiptScanner};
use crate::tokens::ChunkCounter;
use crate::voucher::{Voucher, VoucherKey};

/// Version of the channel file format.
pub const FILE_VERSION: u32 = 1;

/// The channel file (JSON, mode 0600: it holds the voucher seed), written
/// by `chrysalis ton channel open` and updated after every paid answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelFile {
    /// Format version ([`FILE_VERSION`]).
    pub version: u32,
    /// The channel contract, raw form `0:<hex>`.
    pub channel: String,
    /// The registry (user-friendly form).
    pub registry: String,
    /// The client's wallet.
    pub client: String,
    /// The channel's nonce.
    pub nonce: u64,
    /// The machine paid (hex: SHA-256 of its first RA-TLS key).
    pub machine_id: String,
    /// Ed25519 seed of the voucher key (hex). Secret.
    pub voucher_seed: String,
    /// The machine's operator (from the registry, via the channel).
    pub operator: String,
    /// Nanotons per million tokens (from the registry at open).
    pub price_per_million: u64,
    /// SHA-256 (hex) of the machine's RA-TLS SPKI when the channel opened.
    pub key_hash: String,
    /// Nanotons deposited.
    pub deposit: u64,
    /// Highest voucher signed (nanotons).
    pub paid: u64,
    /// Cumulative nanotons of the last paid receipt.
    pub charged: u64,
    /// Sequence number of the last paid receipt.
    pub seq: u64,
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

impl ChannelFile {
    /// Reads a channel file; refused when its mode lets others read it.
    pub fn load(path: &Path) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(io_err(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "holds the voucher key but is readable by others: chmod 600 it",
                ),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
        let f: Self = serde_json::from_str(&text)
            .map_err(|e| malformed("channel file", format!("{}: {e}", path.display())))?;
        if f.version != FILE_VERSION {
            return Err(malformed(
                "channel file",
                format!(
                    "{}: version {}, expected {FILE_VERSION}",
                    path.display(),
                    f.version
                ),
            ));
        }
        f.key()?;
        f.address()?;
        Ok(f)
    }

    /// Writes the file atomically with mode 0600; `new`: refuse to replace one.
    pub fn save(&self, path: &Path, new: bool) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        if new && path.exists() {
            return Err(io_err(
                path,
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "refusing to overwrite a channel file",
                ),
            ));
        }
        let tmp = PathBuf::from(format!("{}.tmp", path.display()));
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| malformed("channel file", e.to_string()))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io_err(&tmp, e))?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| io_err(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
    }

    /// The voucher key.
    pub fn key(&self) -> Result<VoucherKey> {
        let seed: [u8; 32] = hex::decode(&self.voucher_seed)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| malformed("channel file", "voucher_seed is not 64 hex digits"))?;
        VoucherKey::from_seed(&seed)
    }

    /// The channel's address.
    pub fn address(&self) -> Result<TonAddress> {
        TonAddress::from_hex_str(&self.channel)
            .map_err(|e| malformed("channel file", format!("channel {:?}: {e}", self.channel)))
    }

    /// Refuses a connection whose verified key (`spki`) is not the one the
    /// channel was opened for.
    pub fn check_key(&self, spki: &[u8]) -> Result<()> {
        let hash = hex::encode(Sha256::digest(spki));
        if hash != self.key_hash {
            return Err(Error::Channel(format!(
                "the agent's attested key (SHA-256 {hash}) is not the key the registry had for \
                 machine {} when the channel opened ({}); open a new channel",
                self.machine_id, self.key_hash
            )));
        }
        Ok(())
    }

    /// The voucher for everything paid receipts charged so far (signing
    /// it is what pays); records it in `paid`. Save the file before
    /// sending it.
    pub fn next_voucher(&mut self) -> Result<String> {
        let amount = self.charged;
        if amount > self.deposit {
            return Err(Error::Channel(format!(
                "the deposit of {} nanotons is used up ({amount} charged); open a new channel",
                self.deposit
            )));
        }
        let v = self.key()?.sign(&Voucher {
            channel: self.address()?,
            amount,
        })?;
        self.paid = self.paid.max(amount);
        v.encode()
    }

    /// Checks a receipt (`encoded`, as received) for `request` against the
    /// verified key `spki` and the response (`response_sha256`, hex; and
    /// the `usage` the answer reported, when it did); on success records it
    /// (`seq`, `charged`) and returns it. Save the file afterwards.
    pub fn accept_receipt(
        &mut self,
        spki: &[u8],
        encoded: &str,
        request: &[u8],
        response_sha256: &str,
        usage: Option<(u64, u64)>,
    ) -> Result<SignedReceipt> {
        self.check_key(spki)?;
        let r = SignedReceipt::parse(encoded)?;
        r.verify(spki)?;
        let rc = &r.receipt;
        let refused = |m: String| Error::Refused(m);
        let channel = TonAddress::from_hex_str(&rc.channel)
            .map_err(|e| refused(format!("channel {:?}: {e}", rc.channel)))?;
        if channel != self.address()? {
            return Err(refused(format!(
                "it is for channel {}, not {}",
                rc.channel, self.channel
            )));
        }
        if rc.request_sha256 != sha256_hex(request) {
            return Err(refused("it covers another request".into()));
        }
        if rc.response_sha256 != response_sha256 {
            return Err(refused(
                "it covers other response bytes than those received".into(),
            ));
        }
        if rc.seq != self.seq + 1 {
            return Err(refused(format!(
                "sequence number {} where {} was next",
                rc.seq,
                self.seq + 1
            )));
        }
        if rc.price_per_million > self.price_per_million {
            return Err(Error::Overcharge(format!(
                "{} nanotons per million tokens, above the registry's price of {} for this channel",
                rc.price_per_million, self.price_per_million
            )));
        }
        if let Some((p, c)) = usage {
            if (rc.prompt_tokens, rc.completion_tokens) != (p, c) {
                return Err(Error::Overcharge(format!(
                    "{}+{} tokens charged but the answer reported {p}+{c}",
                    rc.prompt_tokens, rc.completion_tokens
                )));
            }
        }
        if rc.cumulative != self.charged.saturating_add(rc.amount) {
            return Err(Error::Overcharge(format!(
                "cumulative {} is not the previous {} plus this receipt's {}",
                rc.cumulative, self.charged, rc.amount
            )));
        }
        if rc.cumulative > self.deposit {
            return Err(Error::Overcharge(format!(
                "cumulative {} is above the deposit {}",
                rc.cumulative, self.deposit
            )));
        }
        self.seq = rc.seq;
        self.charged = rc.cumulative;
        Ok(r)
    }
}

/// What [`PaidAnswer::finish`] found in an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The receipt's wire form.
    pub receipt: String,
    /// SHA-256 (hex) of the bytes the receipt covers.
    pub response_sha256: String,
    /// The `usage` the answer reported (prompt, completion), if any.
    pub usage: Option<(u64, u64)>,
}

/// A paid answer as the client receives it: every byte, to find the
/// receipt (event stream or header), hash the response and read the
/// `usage` the engine reported.
#[derive(Debug, Clone, Default)]
pub struct PaidAnswer {
    sse: SseReceiptScanner,
    body: Sha256,
    line: Vec<u8>,
    usage: Option<(u64, u64)>,
    json: Vec<u8>,
    chunks: ChunkCounter,
}

/// Longest line (or JSON body) scanned for `usage`, bytes.
const MAX_SCAN: usize = 16 << 20;

impl PaidAnswer {
    /// Nothing received yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes of the body.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<()> {
        self.sse.feed(chunk)?;
        self.body.update(chunk);
        if self.json.len() + chunk.len() <= MAX_SCAN {
            self.json.extend_from_slice(chunk);
        }
        // What follows the receipt (`data: [DONE]`) and the receipt event
        // itself are no JSON: neither counts.
        self.chunks.feed(chunk);
        for &b in chunk {
            if b != b'\n' {
                if self.line.len() < MAX_SCAN {
                    self.line.push(b);
                }
                continue;
            }
            let line = std::mem::take(&mut self.line);
            if let Some(data) = line.strip_prefix(b"data:") {
                if let Some(u) = usage_of(data.trim_ascii()) {
                    self.usage = Some(u);
                }
            }
        }
        Ok(())
    }

    /// Whether an event stream's receipt event has been read whole.
    pub fn has_receipt(&self) -> bool {
        self.sse.has_receipt()
    }

    /// For an event stream: the receipt event's data, the SHA-256 (hex) of
    /// the bytes before it and the stream's last usage. For a JSON answer
    /// (`header` = the `X-Chrysalis-Receipt` value): the header, the
    /// SHA-256 of the whole body and its usage.
    pub fn finish(self, header: Option<&str>) -> Result<Received> {
        match header {
            Some(h) => Ok(Received {
                receipt: h.to_string(),
                response_sha256: hex::encode(self.body.finalize()),
                usage: usage_of(&self.json),
            }),
            None => {
                let (digest, r) = self.sse.finish();
                let receipt =
                    r.ok_or_else(|| Error::Refused("the answer carries no usage receipt".into()))?;
                // No usage reported: the tokens counted by the shared rule.
                let usage = self.usage.or(Some((0, self.chunks.count())));
                Ok(Received {
                    receipt,
                    response_sha256: hex::encode(digest),
                    usage,
                })
            }
        }
    }
}

fn usage_of(json: &[u8]) -> Option<(u64, u64)> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    let u = &v["usage"];
    Some((
        u["prompt_tokens"].as_u64()?,
        u["completion_tokens"].as_u64().unwrap_or(0),
    ))
}
