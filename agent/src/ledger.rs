//! The payment channels an agent has seen, in memory: settings from the
//! measured runtime configuration, the best voucher of each channel, what
//! each was charged, and the admission rule (see [`crate::payment`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrysalis_payments::price::amount_due;
use chrysalis_payments::receipt::{Receipt, RECEIPT_VERSION};
use chrysalis_payments::voucher::SignedVoucher;
use http::header::{HeaderName, HeaderValue};
use http::StatusCode;
use serde::Deserialize;

use crate::api_error::ApiError;
use crate::error::{Error, Result};
use crate::runtime_config::RuntimeConfig;
use crate::usage::Usage;

/// Key of the payments section in the runtime configuration.
pub const CONFIG_KEY: &str = "payments";
/// Request header carrying the client's latest voucher.
pub const VOUCHER_HEADER: HeaderName = HeaderName::from_static("x-chrysalis-voucher");
/// Channels kept in memory at most; a new channel beyond is refused.
pub const MAX_CHANNELS: usize = 100_000;

/// The `payments` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentSettings {
    /// Refuse requests without a voucher (402). When false, requests
    /// without one are served without a receipt.
    pub required: bool,
    /// Nanotons per million tokens (prompt + completion).
    pub price_per_million: u64,
    /// Nanotons a channel may owe beyond its best voucher and still be served.
    pub unpaid_credit: u64,
    /// Requests running at once on one channel.
    #[serde(default = "one")]
    pub max_in_flight_per_channel: u32,
}

fn one() -> u32 {
    1
}

impl PaymentSettings {
    /// The settings `config` names, or `None` when it has no `payments` section.
    pub fn from_config(config: &RuntimeConfig) -> Result<Option<Self>> {
        let value: serde_json::Value = serde_json::from_slice(&config.canonical)
            .map_err(|e| Error::Config(format!("runtime configuration: {e}")))?;
        let Some(section) = value.get(CONFIG_KEY) else {
            return Ok(None);
        };
        let s: Self = serde_json::from_value(section.clone()).map_err(|e| {
            Error::Config(format!(
                "runtime configuration: `{CONFIG_KEY}` must be {{\"required\": bool, \
                 \"price_per_million\": nanotons, \"unpaid_credit\": nanotons, \
                 \"max_in_flight_per_channel\": n}}: {e}"
            ))
        })?;
        if s.max_in_flight_per_channel == 0 {
            return Err(Error::Config(format!(
                "runtime configuration: `{CONFIG_KEY}.max_in_flight_per_channel` must be at least 1"
            )));
        }
        if amount_due(1_000_000, s.price_per_million).is_none() {
            return Err(Error::Config(format!(
                "runtime configuration: `{CONFIG_KEY}.price_per_million` above 2^53-1"
            )));
        }
        Ok(Some(s))
    }
}

#[derive(Debug)]
struct Channel {
    client_key: [u8; 32],
    /// Nanotons charged (the last receipt's cumulative).
    charged: u64,
    /// Receipts issued.
    seq: u64,
    /// The highest voucher.
    best: Option<SignedVoucher>,
    in_flight: u32,
}

impl Channel {
    fn paid(&self) -> u64 {
        self.best.as_ref().map_or(0, |v| v.voucher.amount)
    }
}

/// The channels this agent has seen (in memory only).
#[derive(Debug)]
pub struct Ledger {
    settings: PaymentSettings,
    channels: Mutex<HashMap<String, Channel>>,
}

/// One paid request in flight; charged once when its response completes.
#[derive(Debug)]
pub struct Ticket {
    ledger: Arc<Ledger>,
    channel: String,
    request_sha256: String,
}

pub(crate) fn payment_error(status: StatusCode, code: &'static str, message: String) -> ApiError {
    ApiError {
        status,
        kind: "invalid_request_error",
        code,
        message,
        retry_after: None,
        allow: None,
    }
}

impl Ledger {
    /// An empty ledger.
    pub fn new(settings: PaymentSettings) -> Self {
        Self {
            settings,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &PaymentSettings {
        &self.settings
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Channel>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the voucher in `header` (verified; the channel pinned to
    /// its first key; kept when it is the channel's highest) and returns
    /// the channel it is for, with the lock held.
    fn accept<'a>(
        &'a self,
        header: &HeaderValue,
    ) -> std::result::Result<(std::sync::MutexGuard<'a, HashMap<String, Channel>>, String), ApiError>
    {
        let bad = |m: String| payment_error(StatusCode::PAYMENT_REQUIRED, "bad_voucher", m);
        let text = header
            .to_str()
            .map_err(|_| bad(format!("{VOUCHER_HEADER} is not ASCII")))?;
        let v = SignedVoucher::parse(text).map_err(|e| bad(format!("{VOUCHER_HEADER}: {e}")))?;
        v.verify()
            .map_err(|e| bad(format!("{VOUCHER_HEADER}: {e}")))?;
        let channel = v.voucher.channel.to_hex();
        let mut map = self.lock();
        if !map.contains_key(&channel) && map.len() >= MAX_CHANNELS {
            return Err(payment_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_channels",
                format!("this agent tracks at most {MAX_CHANNELS} channels"),
            ));
        }
        let ch = map.entry(channel.clone()).or_insert_with(|| Channel {
            client_key: v.client_key,
            charged: 0,
            seq: 0,
            best: None,
            in_flight: 0,
        });
        if ch.client_key != v.client_key {
            return Err(bad(format!(
                "channel {channel} is paid with vouchers of key {}, not {}",
                hex::encode(ch.client_key),
                hex::encode(v.client_key)
            )));
        }
        if ch.best.is_none() || v.voucher.amount > ch.paid() {
            ch.best = Some(v);
        }
        Ok((map, channel))
    }

    /// Records a voucher sent without a charged request (e.g. with
    /// `GET /v1/models`): how a client pays for its last answer.
    pub fn settle(&self, header: &HeaderValue) -> std::result::Result<(), ApiError> {
        self.accept(header).map(|_| ())
    }

    /// Admits a request carrying `header` (the voucher) for a body whose
    /// SHA-256 is `request_sha256`; `Ok(None)` for an unpaid request where
    /// payment is optional.
    pub fn admit(
        self: &Arc<Self>,
        header: Option<&HeaderValue>,
        request_sha256: String,
    ) -> std::result::Result<Option<Ticket>, ApiError> {
        let Some(header) = header else {
            if self.settings.required {
                return Err(payment_error(
                    StatusCode::PAYMENT_REQUIRED,
                    "voucher_required",
                    format!(
                        "this agent is paid through a TON payment channel: send the channel's \
                         latest voucher in the {VOUCHER_HEADER} header (chrysalis chat --channel FILE)"
                    ),
                ));
            }
            return Ok(None);
        };
        let (mut map, channel) = self.accept(header)?;
        let Some(ch) = map.get_mut(&channel) else {
            return Err(payment_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "payment_state",
                "the channel vanished from the ledger".into(),
            ));
        };
        let owed = ch.charged.saturating_sub(ch.paid());
        if owed > self.settings.unpaid_credit {
            return Err(payment_error(
                StatusCode::PAYMENT_REQUIRED,
                "payment_required",
                format!(
                    "channel {channel} has been charged {} nanotons and its best voucher covers {}: \
                     {owed} unpaid is more than the credit of {} nanotons; send a voucher for at \
                     least {}",
                    ch.charged,
                    ch.paid(),
                    self.settings.unpaid_credit,
                    ch.charged.saturating_sub(self.settings.unpaid_credit)
                ),
            ));
        }
        if ch.in_flight >= self.settings.max_in_flight_per_channel {
            let mut e = payment_error(
                StatusCode::TOO_MANY_REQUESTS,
                "channel_busy",
                format!(
                    "channel {channel} already has {} request(s) running, the most this agent \
                     allows per channel",
                    ch.in_flight
                ),
            );
            e.retry_after = Some(1);
            return Err(e);
        }
        ch.in_flight += 1;
        Ok(Some(Ticket {
            ledger: self.clone(),
            channel,
            request_sha256,
        }))
    }

    /// The best voucher of every channel, as the vouchers endpoint answers.
    pub fn vouchers_json(&self) -> String {
        let map = self.lock();
        let mut list: Vec<serde_json::Value> = map
            .iter()
            .filter_map(|(channel, ch)| {
                let v = ch.best.as_ref()?;
                Some(serde_json::json!({
                    "channel": channel,
                    "amount": v.voucher.amount,
                    "charged": ch.charged,
                    "receipts": ch.seq,
                    "voucher": v.encode().ok()?,
                }))
            })
            .collect();
        list.sort_by(|a, b| a["channel"].as_str().cmp(&b["channel"].as_str()));
        serde_json::json!({ "vouchers": list }).to_string()
    }
}

impl Ticket {
    /// Charges the completed response: the next receipt of the channel.
    pub fn charge(&self, usage: Usage, response_sha256: [u8; 32]) -> Receipt {
        let price = self.ledger.settings.price_per_million;
        let tokens = usage.prompt_tokens.saturating_add(usage.completion_tokens);
        // A count too large to price is charged at the largest amount.
        let amount =
            amount_due(tokens, price).unwrap_or(chrysalis_payments::price::MAX_SAFE_INTEGER);
        let mut map = self.ledger.lock();
        let (seq, cumulative) = match map.get_mut(&self.channel) {
            Some(ch) => {
                ch.charged = ch.charged.saturating_add(amount);
                ch.seq += 1;
                (ch.seq, ch.charged)
            }
            None => (1, amount),
        };
        drop(map);
        Receipt {
            amount,
            channel: self.channel.clone(),
            completion_tokens: usage.completion_tokens,
            cumulative,
            price_per_million: price,
            prompt_tokens: usage.prompt_tokens,
            request_sha256: self.request_sha256.clone(),
            response_sha256: hex::encode(response_sha256),
            seq,
            v: RECEIPT_VERSION.to_string(),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(ch) = self.ledger.lock().get_mut(&self.channel) {
            ch.in_flight = ch.in_flight.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrysalis_payments::voucher::{Voucher, VoucherKey};
    use chrysalis_payments::TonAddress;

    fn settings(credit: u64) -> PaymentSettings {
        PaymentSettings {
            required: true,
            price_per_million: 1_000_000,
            unpaid_credit: credit,
            max_in_flight_per_channel: 1,
        }
    }

    fn channel(n: u8) -> TonAddress {
        TonAddress::new(0, [n; 32].into())
    }

    fn voucher(key: &VoucherKey, ch: &TonAddress, amount: u64) -> HeaderValue {
        let v = key
            .sign(&Voucher {
                channel: ch.clone(),
                amount,
            })
            .unwrap();
        HeaderValue::from_str(&v.encode().unwrap()).unwrap()
    }

    const TOKENS: Usage = Usage {
        prompt_tokens: 60,
        completion_tokens: 40,
    };

    #[test]
    fn config_section() {
        let c = RuntimeConfig::parse(
            br#"{"payments":{"required":true,"price_per_million":5,"unpaid_credit":7}}"#,
            "t",
        )
        .unwrap();
        let s = PaymentSettings::from_config(&c).unwrap().unwrap();
        assert_eq!(s.max_in_flight_per_channel, 1);
        assert_eq!(s.price_per_million, 5);
        let none = RuntimeConfig::parse(br#"{"model":"m"}"#, "t").unwrap();
        assert!(PaymentSettings::from_config(&none).unwrap().is_none());
        for bad in [
            &br#"{"payments":{"required":true,"price_per_million":5}}"#[..],
            br#"{"payments":{"required":true,"price_per_million":5,"unpaid_credit":1,"typo":1}}"#,
            br#"{"payments":{"required":true,"price_per_million":5,"unpaid_credit":1,"max_in_flight_per_channel":0}}"#,
        ] {
            let c = RuntimeConfig::parse(bad, "t").unwrap();
            assert!(PaymentSettings::from_config(&c).is_err());
        }
    }

    #[test]
    fn unpaid_beyond_credit_is_refused_until_a_voucher_covers_it() {
        let ledger = Arc::new(Ledger::new(settings(50)));
        let key = VoucherKey::from_seed(&[1; 32]).unwrap();
        let ch = channel(1);
        // No voucher: 402.
        let e = ledger.admit(None, "00".repeat(32)).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (402, "voucher_required"));
        // A first request with a voucher for 0; charged 100 tokens = 100 nanotons.
        let t = ledger
            .admit(Some(&voucher(&key, &ch, 0)), "00".repeat(32))
            .unwrap()
            .unwrap();
        // One request at a time per channel.
        let busy = ledger
            .admit(Some(&voucher(&key, &ch, 0)), "00".repeat(32))
            .unwrap_err();
        assert_eq!((busy.status.as_u16(), busy.code), (429, "channel_busy"));
        let r = t.charge(TOKENS, [0; 32]);
        assert_eq!((r.seq, r.amount, r.cumulative), (1, 100, 100));
        r.check().unwrap();
        drop(t);
        // A client that stops paying: 100 owed > 50 credit.
        let e = ledger
            .admit(Some(&voucher(&key, &ch, 0)), "00".repeat(32))
            .unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (402, "payment_required"));
        assert!(e.message.contains("at least 50"), "{}", e.message);
        // A voucher for 60 covers it (40 owed <= 50).
        let t = ledger
            .admit(Some(&voucher(&key, &ch, 60)), "00".repeat(32))
            .unwrap()
            .unwrap();
        let r = t.charge(TOKENS, [0; 32]);
        assert_eq!((r.seq, r.cumulative), (2, 200));
        drop(t);
        // Replaying the voucher for 60 does not cover the new 140 owed.
        let e = ledger
            .admit(Some(&voucher(&key, &ch, 60)), "00".repeat(32))
            .unwrap_err();
        assert_eq!(e.code, "payment_required");
        // The endpoint serves the best voucher.
        let j: serde_json::Value = serde_json::from_str(&ledger.vouchers_json()).unwrap();
        assert_eq!(j["vouchers"][0]["amount"], 60);
        assert_eq!(j["vouchers"][0]["charged"], 200);
        let v = SignedVoucher::parse(j["vouchers"][0]["voucher"].as_str().unwrap()).unwrap();
        v.verify().unwrap();
        assert_eq!(v.voucher.amount, 60);
    }

    #[test]
    fn forged_or_foreign_vouchers_are_refused() {
        let ledger = Arc::new(Ledger::new(settings(0)));
        let key = VoucherKey::from_seed(&[1; 32]).unwrap();
        let other = VoucherKey::from_seed(&[2; 32]).unwrap();
        let ch = channel(1);
        drop(
            ledger
                .admit(Some(&voucher(&key, &ch, 0)), String::new())
                .unwrap(),
        );
        // Another key for the same channel.
        let e = ledger
            .admit(Some(&voucher(&other, &ch, 10)), String::new())
            .unwrap_err();
        assert_eq!(e.code, "bad_voucher");
        // A tampered amount.
        let mut v = key
            .sign(&Voucher {
                channel: ch.clone(),
                amount: 5,
            })
            .unwrap();
        v.voucher.amount = 500;
        let h = HeaderValue::from_str(&v.encode().unwrap()).unwrap();
        let e = ledger.admit(Some(&h), String::new()).unwrap_err();
        assert_eq!(e.code, "bad_voucher");
        assert!(e.message.contains("signature"), "{}", e.message);
        // Garbage.
        let e = ledger
            .admit(Some(&HeaderValue::from_static("AAAA")), String::new())
            .unwrap_err();
        assert_eq!(e.code, "bad_voucher");
    }
}
