//! A blocking client for the TON HTTP API (toncenter-style).
//!
//! Sending: v2 `POST {base}/v2/sendBoc {"boc"}` or v3 `POST {base}/v3/message
//! {"boc"}`. Reading: v2 `GET {base}/v2/getAddressInformation`, `POST
//! {base}/v2/runGetMethod`. Outcome (v3 only): `GET
//! {base}/v3/transactionsByMessage` then `GET {base}/v3/adjacentTransactions`.
//! The API key goes in the `X-API-Key` header, never in a URL or a message.

use std::io::Read;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use tonlib_core::cell::{BagOfCells, Cell};
use tonlib_core::TonAddress;

use crate::wallet::SignedExternal;
use crate::{Error, Result};

/// Largest API answer read (bytes).
const MAX_RESPONSE: u64 = 8 << 20;
/// One request's timeout.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Which send endpoint to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// `POST /v2/sendBoc`.
    V2,
    /// `POST /v3/message` (also lets the client read the registry's exit code).
    V3,
}

/// A TON HTTP API endpoint.
pub struct TonApi {
    base: String,
    key: Option<String>,
    version: ApiVersion,
    agent: ureq::Agent,
}

impl std::fmt::Debug for TonApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TonApi")
            .field("base", &self.base)
            .field("key", &self.key.as_ref().map(|_| "***"))
            .field("version", &self.version)
            .finish()
    }
}

/// A getter argument.
#[derive(Debug, Clone)]
pub enum StackArg {
    /// An integer (e.g. a 256-bit id), big-endian bytes.
    Uint(Vec<u8>),
}

/// A getter result item.
#[derive(Debug, Clone)]
pub enum StackValue {
    /// An integer (decimal text; may exceed 64 bits).
    Int(num_bigint::BigInt),
    /// A cell (or slice).
    Cell(Cell),
    /// Null.
    Null,
}

impl StackValue {
    /// As an i64, if it is a small integer.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            StackValue::Int(i) => i64::try_from(i).ok(),
            _ => None,
        }
    }
}

/// Balance and state of an account.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AccountState {
    /// Nanotons.
    pub balance: u64,
    /// "active", "uninitialized" or "frozen".
    pub state: String,
}

/// What happened after sending.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// The wallet's seqno moved past the message's: it was executed.
    pub confirmed: bool,
    /// Seconds waited.
    pub waited_s: u64,
    /// The destination contract's TVM exit code, when the API tells (v3).
    pub destination_exit_code: Option<i64>,
}

/// How long and how often to wait for the transaction.
#[derive(Debug, Clone, Copy)]
pub struct WaitOptions {
    /// Total seconds to wait.
    pub timeout: Duration,
    /// Between polls.
    pub interval: Duration,
    /// Attempts for a send that failed on the network or with 429.
    pub send_attempts: u32,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            timeout: Duration::from_secs(90),
            interval: Duration::from_secs(2),
            send_attempts: 4,
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn parse_cell_b64(url: &str, s: &str) -> Result<Cell> {
    let boc = BagOfCells::parse_base64(s).map_err(|e| Error::BadResponse {
        url: url.into(),
        detail: format!("bad cell: {e}"),
    })?;
    let root = boc.single_root().map_err(|e| Error::BadResponse {
        url: url.into(),
        detail: format!("bad cell: {e}"),
    })?;
    Ok((*root).clone())
}

impl TonApi {
    /// `base` ends before `/v2` (e.g. `https://toncenter.com/api`).
    pub fn new(base: &str, key: Option<String>, version: ApiVersion) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        TonApi {
            base: base.trim_end_matches('/').to_string(),
            key: key.filter(|k| !k.is_empty()),
            version,
            agent,
        }
    }

    fn request(&self, path: &str, body: Option<&Value>) -> Result<Value> {
        let url = format!("{}{}", self.base, path);
        let shown = url.split('?').next().unwrap_or(&url).to_string();
        let net = |e: ureq::Error| Error::Network {
            url: shown.clone(),
            detail: e.to_string(),
        };
        let mut resp = match body {
            Some(b) => {
                let mut r = self
                    .agent
                    .post(&url)
                    .header("Content-Type", "application/json");
                if let Some(k) = &self.key {
                    r = r.header("X-API-Key", k);
                }
                r.send(b.to_string().as_bytes()).map_err(net)?
            }
            None => {
                let mut r = self.agent.get(&url);
                if let Some(k) = &self.key {
                    r = r.header("X-API-Key", k);
                }
                r.call().map_err(net)?
            }
        };
        let status = resp.status().as_u16();
        let mut text = String::new();
        resp.body_mut()
            .as_reader()
            .take(MAX_RESPONSE)
            .read_to_string(&mut text)
            .map_err(|e| Error::Network {
                url: shown.clone(),
                detail: e.to_string(),
            })?;
        if status == 429 {
            return Err(Error::RateLimited { url: shown });
        }
        let v: Value = serde_json::from_str(&text).map_err(|_| Error::Api {
            url: shown.clone(),
            status,
            detail: text.chars().take(300).collect(),
        })?;
        if !(200..300).contains(&status) || v.get("ok") == Some(&Value::Bool(false)) {
            let detail = v
                .get("error")
                .and_then(|e| e.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            return Err(Error::Api {
                url: shown,
                status,
                detail,
            });
        }
        Ok(v)
    }

    fn v2_result(&self, path: &str, body: Option<&Value>) -> Result<Value> {
        let v = self.request(path, body)?;
        v.get("result").cloned().ok_or_else(|| Error::BadResponse {
            url: format!("{}{}", self.base, path.split('?').next().unwrap_or(path)),
            detail: "no \"result\"".into(),
        })
    }

    /// Sends one external message BOC. v3 answers with the hash to track
    /// (`message_hash_norm`, else `message_hash`), returned as hex.
    pub fn send_boc(&self, boc_b64: &str) -> Result<Option<String>> {
        match self.version {
            ApiVersion::V2 => {
                self.request("/v2/sendBoc", Some(&json!({ "boc": boc_b64 })))?;
                Ok(None)
            }
            ApiVersion::V3 => {
                let v = self.request("/v3/message", Some(&json!({ "boc": boc_b64 })))?;
                Ok(v["message_hash_norm"]
                    .as_str()
                    .or(v["message_hash"].as_str())
                    .and_then(hash_hex))
            }
        }
    }

    /// Balance and state of `addr`.
    pub fn account(&self, addr: &TonAddress) -> Result<AccountState> {
        let path = format!("/v2/getAddressInformation?address={}", addr.to_base64_url());
        let r = self.v2_result(&path, None)?;
        let bad = |d: &str| Error::BadResponse {
            url: format!("{}/v2/getAddressInformation", self.base),
            detail: d.into(),
        };
        let balance = match &r["balance"] {
            Value::String(s) => s.parse().map_err(|_| bad("balance is not a number"))?,
            Value::Number(n) => n.as_u64().ok_or_else(|| bad("balance"))?,
            _ => return Err(bad("no balance")),
        };
        let state = r["state"].as_str().unwrap_or("uninitialized").to_string();
        Ok(AccountState { balance, state })
    }

    /// Runs a getter (v2 `runGetMethod`).
    pub fn run_get_method(
        &self,
        addr: &TonAddress,
        method: &str,
        args: &[StackArg],
    ) -> Result<Vec<StackValue>> {
        let stack: Vec<Value> = args
            .iter()
            .map(|a| match a {
                StackArg::Uint(b) => json!(["num", format!("0x{}", hex::encode(b))]),
            })
            .collect();
        let url = format!("{}/v2/runGetMethod", self.base);
        let r = self.v2_result(
            "/v2/runGetMethod",
            Some(&json!({"address": addr.to_base64_url(), "method": method, "stack": stack})),
        )?;
        let exit_code = r["exit_code"].as_i64().unwrap_or(0);
        if exit_code != 0 && exit_code != 1 {
            return Err(Error::GetMethod {
                method: method.into(),
                exit_code,
            });
        }
        let items = r["stack"].as_array().ok_or_else(|| Error::BadResponse {
            url: url.clone(),
            detail: "no stack".into(),
        })?;
        items
            .iter()
            .map(|it| {
                let kind = it[0].as_str().unwrap_or("");
                match kind {
                    "num" => {
                        let s = it[1].as_str().unwrap_or("");
                        let (neg, digits) = match s.strip_prefix('-') {
                            Some(d) => (true, d),
                            None => (false, s),
                        };
                        let hexd = digits.strip_prefix("0x").unwrap_or(digits);
                        let mag = num_bigint::BigUint::parse_bytes(hexd.as_bytes(), 16)
                            .ok_or_else(|| Error::BadResponse {
                                url: url.clone(),
                                detail: format!("bad number {s:?}"),
                            })?;
                        let sign = if neg {
                            num_bigint::Sign::Minus
                        } else {
                            num_bigint::Sign::Plus
                        };
                        Ok(StackValue::Int(num_bigint::BigInt::from_biguint(sign, mag)))
                    }
                    "cell" | "slice" => {
                        let bytes = it[1]["bytes"].as_str().ok_or_else(|| Error::BadResponse {
                            url: url.clone(),
                            detail: "cell without bytes".into(),
                        })?;
                        Ok(StackValue::Cell(parse_cell_b64(&url, bytes)?))
                    }
                    "null" => Ok(StackValue::Null),
                    other => Err(Error::BadResponse {
                        url: url.clone(),
                        detail: format!("unsupported stack item {other:?}"),
                    }),
                }
            })
            .collect()
    }

    /// The wallet's seqno (0 while the wallet is not deployed).
    pub fn seqno(&self, wallet: &TonAddress) -> Result<u32> {
        if self.account(wallet)?.state != "active" {
            return Ok(0);
        }
        let st = self.run_get_method(wallet, "seqno", &[])?;
        st.first()
            .and_then(StackValue::as_i64)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| Error::BadResponse {
                url: format!("{}/v2/runGetMethod", self.base),
                detail: "seqno is not a number".into(),
            })
    }

    /// v3: exit code of the transaction caused by the wallet's outgoing
    /// message for external message `ext_hash_hex`, when it is known.
    fn destination_exit_code(&self, ext_hash_hex: &str) -> Result<Option<i64>> {
        let wallet_tx = self.request(
            &format!("/v3/transactionsByMessage?msg_hash={ext_hash_hex}&direction=in"),
            None,
        )?;
        let Some(hash) = wallet_tx["transactions"][0]["hash"].as_str() else {
            return Ok(None);
        };
        let adj = self.request(
            &format!("/v3/adjacentTransactions?hash={hash}&direction=out"),
            None,
        )?;
        Ok(adj["transactions"][0]["description"]["compute_ph"]["exit_code"].as_i64())
    }

    /// Sends `ext` from `wallet` and waits (bounded) until the wallet's
    /// seqno passes it. A send that fails on the network or with 429 is
    /// retried with the **same** BOC (same seqno and valid_until), so one
    /// intent never becomes two different messages. `progress` is told
    /// what is happening.
    pub fn send_and_wait(
        &self,
        ext: &SignedExternal,
        wallet: &TonAddress,
        opts: WaitOptions,
        mut progress: impl FnMut(&str),
    ) -> Result<Outcome> {
        let boc = ext.boc_base64()?;
        let start = std::time::Instant::now();
        let mut attempt = 0;
        let tracked = loop {
            attempt += 1;
            progress(&format!(
                "sending message {} (attempt {attempt})",
                &ext.hash_hex()[..16]
            ));
            match self.send_boc(&boc) {
                Ok(h) => break h.unwrap_or_else(|| ext.hash_hex()),
                Err(e @ (Error::Network { .. } | Error::RateLimited { .. }))
                    if attempt < opts.send_attempts =>
                {
                    progress(&format!("{e}; resending the same message"));
                    std::thread::sleep(opts.interval * attempt);
                }
                Err(e) => return Err(e),
            }
        };
        let polls = (opts.timeout.as_millis() / opts.interval.as_millis().max(1)).max(1);
        for _ in 0..polls {
            let waited = start.elapsed().as_secs();
            progress(&format!("waiting for the transaction ({waited} s)"));
            match self.seqno(wallet) {
                Ok(s) if s > ext.seqno => {
                    let destination_exit_code = if self.version == ApiVersion::V3 {
                        self.destination_exit_code(&tracked).ok().flatten()
                    } else {
                        None
                    };
                    return Ok(Outcome {
                        confirmed: true,
                        waited_s: start.elapsed().as_secs(),
                        destination_exit_code,
                    });
                }
                Ok(_) | Err(Error::Network { .. } | Error::RateLimited { .. }) => {}
                Err(e) => return Err(e),
            }
            std::thread::sleep(opts.interval);
        }
        Err(Error::NotConfirmed {
            message_hash: ext.hash_hex(),
            waited_s: start.elapsed().as_secs(),
            seqno: ext.seqno,
            valid_until: ext.valid_until,
        })
    }
}

/// A 32-byte message hash as the API gives it (hex, base64 or base64url)
/// to lower-case hex; `None` when it is none of those.
fn hash_hex(s: &str) -> Option<String> {
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(s.to_ascii_lowercase());
    }
    let e = base64::engine::general_purpose::STANDARD
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s))
        .ok()?;
    (e.len() == 32).then(|| hex::encode(e))
}

/// Standard base64 of bytes (for callers building BOC text).
pub fn base64_std(bytes: &[u8]) -> String {
    b64(bytes)
}

#[cfg(test)]
mod tests {
    use super::hash_hex;

    #[test]
    fn message_hashes_in_any_api_encoding() {
        let hex64 = "ab".repeat(32);
        assert_eq!(hash_hex(&hex64).unwrap(), hex64);
        let b64 = super::b64(&[0xab; 32]);
        assert_eq!(hash_hex(&b64).unwrap(), hex64);
        assert_eq!(
            hash_hex(&b64.replace('+', "-").replace('/', "_")).unwrap(),
            hex64
        );
        assert!(hash_hex("lost").is_none());
        assert!(hash_hex("").is_none());
    }
}
