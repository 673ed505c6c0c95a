//! Signing a message to the registry, and printing it (dry run) or sending
//! it and waiting for its transaction and the registry's exit code.

use chrysalis_attestation::ErrorCategory;
use std::time::Duration;

use anyhow::anyhow;
use chrysalis_ton::api::{Outcome, WaitOptions};
use chrysalis_ton::registry::describe_exit_code;
use chrysalis_ton::wallet::{OperatorWallet, Transfer};
use chrysalis_ton::TonAddress;
use serde_json::{json, Value};

use super::args::{ApiOpts, SendOpts};
use super::input::addr_text;
use super::outcome::{fail, tf};
use crate::client::Failure;

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The message expiry: --valid-until, else now + 300 s. It is also the
/// query id, so one (seqno, valid_until) always gives the identical message.
pub(super) fn expiry(given: Option<u32>) -> u32 {
    given.unwrap_or_else(|| (now_unix() + 300) as u32)
}

/// Signs `body` to `to` and either prints it (dry run) or sends it and waits.
pub(super) struct Prepared {
    pub(super) wallet: OperatorWallet,
    to: TonAddress,
    ext: chrysalis_ton::wallet::SignedExternal,
    value: u64,
}

/// [`prepare`] for an ordinary registry message: the registry's message
/// value, bounced if refused, no StateInit, seqno and expiry from `send`.
pub(super) fn prepare_registry(
    wallet: OperatorWallet,
    registry: TonAddress,
    body: tonlib_core::cell::Cell,
    send: &SendOpts,
    valid_until: u32,
) -> Result<Prepared, Failure> {
    prepare(
        wallet,
        registry,
        body,
        chrysalis_ton::registry::MESSAGE_VALUE,
        true,
        None,
        send.seqno,
        Some(valid_until),
        &send.api,
    )
}

#[allow(clippy::too_many_arguments)]
pub(super) fn prepare(
    wallet: OperatorWallet,
    to: TonAddress,
    body: tonlib_core::cell::Cell,
    value: u64,
    bounce: bool,
    state_init: Option<(tonlib_core::cell::Cell, tonlib_core::cell::Cell)>,
    seqno: Option<u32>,
    valid_until: Option<u32>,
    api: &ApiOpts,
) -> Result<Prepared, Failure> {
    let seqno = match seqno {
        Some(s) => s,
        None => api.client().seqno(wallet.address()).map_err(tf)?,
    };
    let valid_until = expiry(valid_until);
    let t = Transfer {
        to: to.clone(),
        value,
        bounce,
        body,
        state_init,
    };
    let ext = wallet.sign(&t, seqno, valid_until).map_err(tf)?;
    Ok(Prepared {
        wallet,
        to,
        ext,
        value,
    })
}

impl Prepared {
    pub(super) fn describe(&self, action: &str, extra: &Value) -> Result<Value, Failure> {
        let mut v = json!({
            "action": action,
            "boc": self.ext.boc_base64().map_err(tf)?,
            "message_hash": self.ext.hash_hex(),
            "wallet": addr_text(self.wallet.address()),
            "wallet_version": self.wallet.kind().as_str(),
            "registry": addr_text(&self.to),
            "seqno": self.ext.seqno,
            "valid_until": self.ext.valid_until,
            "value_nanoton": self.value.to_string(),
            "state_init_included": self.ext.seqno == 0,
        });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, x) in e {
                o.insert(k.clone(), x.clone());
            }
        }
        Ok(v)
    }

    /// Prints the dry run, or sends and waits with a spinner.
    pub(super) fn run(
        &self,
        action: &str,
        extra: Value,
        dry_run: bool,
        json_out: bool,
        api: &ApiOpts,
    ) -> Result<Option<Outcome>, Failure> {
        let mut v = self.describe(action, &extra)?;
        if dry_run {
            v["dry_run"] = json!(true);
            if json_out {
                println!("{v}");
            } else {
                println!("DRY RUN: nothing sent. Would {action}:");
                print_fields(&v);
            }
            return Ok(None);
        }
        let pb = if json_out {
            indicatif::ProgressBar::hidden()
        } else {
            let pb = indicatif::ProgressBar::new_spinner();
            pb.enable_steady_tick(Duration::from_millis(120));
            pb
        };
        let opts = WaitOptions {
            timeout: Duration::from_secs(api.wait),
            interval: Duration::from_millis(if api.wait <= 10 { 250 } else { 2000 }),
            send_attempts: 4,
        };
        let res = api
            .client()
            .send_and_wait(&self.ext, self.wallet.address(), opts, |m| {
                pb.set_message(m.to_string())
            });
        pb.finish_and_clear();
        let outcome = res.map_err(tf)?;
        Ok(Some(outcome))
    }
}

impl Prepared {
    /// The whole send of a command whose result is "done": the dry run, or
    /// send, wait, check the destination's exit code, print `done()` (text
    /// mode) and return the description marked confirmed.
    pub(super) fn send_confirmed(
        &self,
        action: &str,
        extra: Value,
        dry_run: bool,
        json_out: bool,
        api: &ApiOpts,
        done: impl FnOnce() -> String,
    ) -> Result<Value, Failure> {
        let Some(o) = self.run(action, extra.clone(), dry_run, json_out, api)? else {
            // Null: the dry run printed its own output.
            return Ok(Value::Null);
        };
        check_outcome(&o)?;
        if !json_out {
            println!("{}", done());
        }
        let mut v = self.describe(action, &extra)?;
        v["confirmed"] = json!(true);
        Ok(v)
    }
}

fn print_fields(v: &Value) {
    if let Some(o) = v.as_object() {
        for (k, x) in o {
            let s = match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            println!("  {k:<20} {s}");
        }
    }
}

/// A registry exit code as a Failure (exit 4), naming what it means.
fn refused(code: i64) -> Failure {
    let what = describe_exit_code(code)
        .map(|(n, m)| format!("{n}: {m}"))
        .unwrap_or_else(|| "not a registry exit code (see README)".into());
    fail(
        ErrorCategory::Rejected,
        anyhow!("the registry refused the message with exit code {code} ({what}); the value bounced back to your wallet minus fees"),
    )
}

/// Exit 4 when the registry refused the message (its exit code named).
pub(super) fn check_outcome(o: &Outcome) -> Result<(), Failure> {
    match o.destination_exit_code {
        Some(0) | None => Ok(()),
        Some(c) => Err(refused(c)),
    }
}
