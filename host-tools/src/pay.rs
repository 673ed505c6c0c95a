//! Paying through a channel as a client: the channel file, the voucher
//! sent with each request and the check of each receipt.
//!
//! `chrysalis ton channel open` writes the channel file (mode 0600: it
//! holds the channel's Ed25519 voucher seed); `chrysalis chat --channel
//! FILE` then, per request:
//!
//! 1. sends a voucher for everything the verified receipts charged so far
//!    (`X-Chrysalis-Voucher`), and
//! 2. checks the receipt of the answer before paying for it: signed by the
//!    key of the verified RA-TLS connection, that key being the one the
//!    registry had for the machine when the channel opened, for this
//!    channel, the next sequence number, the request and response bytes
//!    it covers, tokens equal to the `usage` the stream itself reported,
//!    and a price no higher than the channel's (the registry's price at
//!    open). A receipt failing any check is refused (exit 3 for a bad
//!    signature or hash, 4 for an overcharge) and nothing more is paid.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};
use chrysalis_attestation::ErrorCategory;
use chrysalis_payments::receipt::{sha256_hex, SignedReceipt, SseReceiptScanner};
use chrysalis_payments::voucher::{Voucher, VoucherKey};
use chrysalis_payments::TonAddress;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::client::Failure;

/// Request header of the voucher.
pub const VOUCHER_HEADER: &str = "x-chrysalis-voucher";
/// Version of the channel file format.
const FILE_VERSION: u32 = 1;

/// The channel file: what `chrysalis ton channel open` learned and what
/// `chat` has paid. JSON, mode 0600.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelFile {
    /// Format version (1).
    pub version: u32,
    /// The channel contract, raw form `0:<hex>`.
    pub channel: String,
    /// The registry.
    pub registry: String,
    /// The client's wallet.
    pub client: String,
    /// The channel's nonce.
    pub nonce: u64,
    /// The machine paid (SHA-256 of its first RA-TLS key).
    pub machine_id: String,
    /// Ed25519 seed of the voucher key (hex). Secret.
    pub voucher_seed: String,
    /// The machine's operator (from the registry at open).
    pub operator: String,
    /// Nanotons per million tokens (from the registry at open).
    pub price_per_million: u64,
    /// SHA-256 of the machine's RA-TLS SPKI when the channel opened (hex).
    pub key_hash: String,
    /// Nanotons deposited.
    pub deposit: u64,
    /// Highest voucher signed (nanotons).
    pub paid: u64,
    /// Cumulative nanotons of the last verified receipt.
    pub charged: u64,
    /// Sequence number of the last verified receipt.
    pub seq: u64,
}

fn io(e: anyhow::Error) -> Failure {
    Failure::new(ErrorCategory::Io, e)
}

impl ChannelFile {
    /// Reads a channel file (refused when others can read it).
    pub fn load(path: &Path) -> Result<Self, Failure> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .with_context(|| format!("channel file {}", path.display()))
            .map_err(io)?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(io(anyhow!(
                "channel file {} holds the voucher key but is readable by others: chmod 600 it",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading {}", path.display()))
            .map_err(io)?;
        let f: Self = serde_json::from_str(&text).map_err(|e| {
            Failure::new(
                ErrorCategory::Malformed,
                anyhow!("channel file {}: {e}", path.display()),
            )
        })?;
        if f.version != FILE_VERSION {
            return Err(Failure::new(
                ErrorCategory::Malformed,
                anyhow!("channel file {}: version {}, expected {FILE_VERSION}", path.display(), f.version),
            ));
        }
        Ok(f)
    }

    /// Writes the file atomically with mode 0600 (`new`: refuse to replace one).
    pub fn save(&self, path: &Path, new: bool) -> Result<(), Failure> {
        use std::os::unix::fs::OpenOptionsExt;
        if new && path.exists() {
            return Err(io(anyhow!("{} exists; refusing to overwrite a channel file", path.display())));
        }
        let tmp = PathBuf::from(format!("{}.tmp", path.display()));
        let text = serde_json::to_string_pretty(self).map_err(|e| io(e.into()))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))
            .map_err(io)?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))
            .map_err(io)?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
            .map_err(io)
    }

    /// The voucher key.
    pub fn key(&self) -> Result<VoucherKey, Failure> {
        let seed: [u8; 32] = hex::decode(&self.voucher_seed)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| Failure::new(ErrorCategory::Malformed, anyhow!("channel file: voucher_seed is not 64 hex digits")))?;
        VoucherKey::from_seed(&seed).map_err(|e| Failure::new(ErrorCategory::Malformed, anyhow::Error::new(e)))
    }

    /// The channel's address.
    pub fn address(&self) -> Result<TonAddress, Failure> {
        self.channel
            .parse()
            .map_err(|e| Failure::new(ErrorCategory::Malformed, anyhow!("channel file: channel {:?}: {e}", self.channel)))
    }
}

/// One paid request of `chat`.
pub struct Payer {
    path: PathBuf,
    file: ChannelFile,
    spki: Vec<u8>,
    scanner: SseReceiptScanner,
    usage: Option<(u64, u64)>,
    line: Vec<u8>,
}

impl Payer {
    /// Opens the channel file for a connection whose verified RA-TLS key
    /// is `spki`: refused unless that key is the one the channel was
    /// opened for.
    pub fn open(path: &Path, spki: &[u8]) -> Result<Self, Failure> {
        let file = ChannelFile::load(path)?;
        let hash = hex::encode(Sha256::digest(spki));
        if hash != file.key_hash {
            return Err(Failure::new(
                ErrorCategory::Rejected,
                anyhow!(
                    "the agent's attested key (SHA-256 {hash}) is not the key the registry had for machine {} when the channel opened ({}); open a new channel",
                    file.machine_id,
                    file.key_hash
                ),
            ));
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            spki: spki.to_vec(),
            scanner: SseReceiptScanner::new(),
            usage: None,
            line: Vec::new(),
        })
    }

    /// The voucher header for this request: everything charged by
    /// verified receipts so far (signing it is what pays). The file
    /// records the voucher before it is sent.
    pub fn voucher_header(&mut self) -> Result<String, Failure> {
        let amount = self.file.charged;
        if amount > self.file.deposit {
            return Err(Failure::new(
                ErrorCategory::Rejected,
                anyhow!("the channel's deposit of {} nanotons is used up ({} charged); open a new channel", self.file.deposit, amount),
            ));
        }
        let v = self
            .file
            .key()?
            .sign(&Voucher {
                channel: self.file.address()?,
                amount,
            })
            .map_err(|e| Failure::new(ErrorCategory::Malformed, anyhow::Error::new(e)))?;
        if amount > self.file.paid {
            self.file.paid = amount;
            self.file.save(&self.path, false)?;
        }
        v.encode()
            .map_err(|e| Failure::new(ErrorCategory::Malformed, anyhow::Error::new(e)))
    }

    /// Feeds a chunk of the event stream.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), Failure> {
        self.scanner
            .feed(chunk)
            .map_err(|e| Failure::new(ErrorCategory::Verification, anyhow::Error::new(e)))?;
        if self.scanner.has_receipt() {
            return Ok(());
        }
        // The usage the engine reported in the stream (the receipt must
        // charge exactly that).
        for &b in chunk {
            if b != b'\n' {
                if self.line.len() < (1 << 20) {
                    self.line.push(b);
                }
                continue;
            }
            let line = std::mem::take(&mut self.line);
            if let Some(data) = line.strip_prefix(b"data:") {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data.trim_ascii()) {
                    let u = &v["usage"];
                    if let (Some(p), Some(c)) = (u["prompt_tokens"].as_u64(), u["completion_tokens"].as_u64()) {
                        self.usage = Some((p, c));
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks the stream's receipt for `request` and records it.
    /// Returns (amount, cumulative).
    pub fn finish(mut self, request: &[u8]) -> Result<(u64, u64), Failure> {
        let scanner = std::mem::take(&mut self.scanner);
        let (digest, encoded) = scanner.finish();
        let encoded = encoded.ok_or_else(|| {
            Failure::new(ErrorCategory::Verification, anyhow!("the agent sent no usage receipt"))
        })?;
        check_receipt(&self.file, &self.spki, &encoded, request, &hex::encode(digest), self.usage)
            .map(|(seq, amount, cumulative)| {
                self.file.seq = seq;
                self.file.charged = cumulative;
                (amount, cumulative)
            })
            .and_then(|r| self.file.save(&self.path, false).map(|_| r))
    }
}

/// Every check of a receipt against the channel, the attested key, the
/// request and the response. Returns (seq, amount, cumulative).
pub fn check_receipt(
    file: &ChannelFile,
    spki: &[u8],
    encoded: &str,
    request: &[u8],
    response_sha256: &str,
    usage: Option<(u64, u64)>,
) -> Result<(u64, u64, u64), Failure> {
    let verr = |m: String| Failure::new(ErrorCategory::Verification, anyhow!("usage receipt refused: {m}"));
    let rej = |m: String| Failure::new(ErrorCategory::Rejected, anyhow!("usage receipt refused: {m}"));
    let r = SignedReceipt::parse(encoded).map_err(|e| verr(e.to_string()))?;
    r.verify(spki).map_err(|e| verr(e.to_string()))?;
    let rc = &r.receipt;
    let channel = TonAddress::from_hex_str(&rc.channel).map_err(|e| verr(format!("channel: {e}")))?;
    if channel != file.address()? {
        return Err(verr(format!("it is for channel {}, not {}", rc.channel, file.channel)));
    }
    if rc.request_sha256 != sha256_hex(request) {
        return Err(verr("it covers another request".into()));
    }
    if rc.response_sha256 != response_sha256 {
        return Err(verr("it covers other response bytes than those received".into()));
    }
    if rc.seq != file.seq + 1 {
        return Err(rej(format!("sequence number {} where {} was next", rc.seq, file.seq + 1)));
    }
    if rc.price_per_million > file.price_per_million {
        return Err(rej(format!(
            "it charges {} nanotons per million tokens, above the registry's price of {} for this channel (overcharge)",
            rc.price_per_million, file.price_per_million
        )));
    }
    if let Some((p, c)) = usage {
        if (rc.prompt_tokens, rc.completion_tokens) != (p, c) {
            return Err(rej(format!(
                "it charges {}+{} tokens but the engine reported {p}+{c} in the answer",
                rc.prompt_tokens, rc.completion_tokens
            )));
        }
    }
    if rc.cumulative != file.charged.saturating_add(rc.amount) {
        return Err(rej(format!(
            "cumulative {} is not the previous {} plus this receipt's {}",
            rc.cumulative, file.charged, rc.amount
        )));
    }
    if rc.cumulative > file.deposit {
        return Err(rej(format!("cumulative {} is above the deposit {}", rc.cumulative, file.deposit)));
    }
    Ok((rc.seq, rc.amount, rc.cumulative))
}

/// After the answer: checks its receipt, then pays for it at once with a
/// voucher sent along `GET /v1/models` (not charged), so the operator can
/// claim everything received.
pub async fn settle(
    payer: Payer,
    request: &[u8],
    sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Full<hyper::body::Bytes>>,
) -> Result<(), Failure> {
    use http_body_util::BodyExt;
    let path = payer.path.clone();
    let spki = payer.spki.clone();
    let (amount, cumulative) = payer.finish(request)?;
    let mut next = Payer::open(&path, &spki)?;
    let voucher = next.voucher_header()?;
    let req = hyper::Request::get("/v1/models")
        .header("host", "chrysalis")
        .header(VOUCHER_HEADER, voucher)
        .body(http_body_util::Full::new(hyper::body::Bytes::new()))
        .map_err(|e| Failure::new(ErrorCategory::Malformed, e))?;
    let conn_err = |e: hyper::Error| Failure::new(ErrorCategory::Connection, e);
    let resp = sender.send_request(req).await.map_err(conn_err)?;
    let status = resp.status();
    let _ = resp.into_body().collect().await.map_err(conn_err)?;
    if !status.is_success() {
        return Err(Failure::new(
            ErrorCategory::Connection,
            anyhow!("the agent did not take the voucher for {cumulative} nanotons: HTTP {status}"),
        ));
    }
    eprintln!(
        "paid {amount} nanotons for this answer (receipt verified against the attested key); {cumulative} nanotons in total on channel {}",
        next.file.channel
    );
    Ok(())
}
