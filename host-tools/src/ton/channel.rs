//! `chrysalis ton channel open|claim|close`: payment channels to a
//! registered machine (the contract is `ton/contract/channel.tolk`; the
//! client side of paying is [`crate::pay`]).

use std::time::Duration;

use anyhow::{anyhow, Context};
use chrysalis_attestation::ErrorCategory;
use chrysalis_payments::voucher::SignedVoucher;
use chrysalis_ton::api::{StackArg, StackValue, TonApi};
use chrysalis_ton::channel::{
    self, ChannelMessage, ChannelParams, ChannelState, ChannelStatus, MachineTerms,
};
use chrysalis_ton::registry::{Machine, MachineId};
use chrysalis_ton::TonAddress;
use serde_json::{json, Value};

use super::args::{ApiOpts, ChannelCommand, ClaimArgs, CloseArgs, OpenArgs};
use super::input::{addr_text, load_wallet, parse_addr, parse_coins};
use super::outcome::{fail, report, tf};
use super::send::{prepare, Prepared};
use crate::client::{Failure, PolicyOpts};
use crate::pay::pf;
use chrysalis_payments::client::ChannelFile;

/// Runs `chrysalis ton channel`.
pub(super) fn run(c: ChannelCommand) -> i32 {
    match c {
        ChannelCommand::Open(o) => {
            let j = o.json;
            report(open(o), j)
        }
        ChannelCommand::Claim(c) => {
            let j = c.json;
            report(claim(c), j)
        }
        ChannelCommand::Close(c) => {
            let j = c.json;
            report(close(c), j)
        }
    }
}

fn malformed(e: anyhow::Error) -> Failure {
    fail(ErrorCategory::Malformed, e)
}

fn load_code(path: &std::path::Path) -> Result<tonlib_core::cell::Cell, Failure> {
    let text = std::fs::read_to_string(path)
        .with_context(|| path.display().to_string())
        .map_err(Failure::io)?;
    let j: Value =
        serde_json::from_str(&text).map_err(|e| malformed(anyhow!("{}: {e}", path.display())))?;
    let b64 = j["codeBoc64"].as_str().ok_or_else(|| {
        malformed(anyhow!(
            "{}: no codeBoc64 (the output of contract/compile.js)",
            path.display()
        ))
    })?;
    let root = tonlib_core::cell::BagOfCells::parse_base64(b64)
        .and_then(|b| b.single_root())
        .map_err(|e| malformed(anyhow!("{}: {e}", path.display())))?;
    Ok((*root).clone())
}

fn random_bytes<const N: usize>() -> Result<[u8; N], Failure> {
    let mut b = [0u8; N];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut b)
        .map_err(|_| Failure::io(anyhow!("no secure random source")))?;
    Ok(b)
}

fn get_machine(
    api: &TonApi,
    registry: &TonAddress,
    id: MachineId,
) -> Result<Option<Machine>, Failure> {
    let st = api
        .run_get_method(registry, "get_machine", &[StackArg::Uint(id.0.to_vec())])
        .map_err(tf)?;
    match st.first() {
        Some(StackValue::Cell(c)) => Ok(Some(Machine::from_cell(id, c).map_err(tf)?)),
        _ => Ok(None),
    }
}

fn int_at(st: &[StackValue], i: usize, what: &str) -> Result<u64, Failure> {
    match st.get(i) {
        Some(StackValue::Int(v)) => {
            u64::try_from(v).map_err(|_| malformed(anyhow!("{what}: {v} out of range")))
        }
        _ => Err(fail(
            ErrorCategory::Connection,
            anyhow!("{what}: not an integer in the getter's answer"),
        )),
    }
}

/// `get_channel()` of a channel.
fn channel_state(api: &TonApi, ch: &TonAddress) -> Result<ChannelState, Failure> {
    let st = api.run_get_method(ch, "get_channel", &[]).map_err(tf)?;
    Ok(ChannelState {
        status: ChannelStatus::from_code(int_at(&st, 0, "state")? as i64).map_err(tf)?,
        deposit: int_at(&st, 1, "deposit")?,
        claimed: int_at(&st, 2, "claimed")?,
        closing_since: int_at(&st, 3, "closing_since")? as u32,
        close_delay: int_at(&st, 4, "close_delay")? as u32,
    })
}

/// `get_terms()`: what the registry answered at open.
fn channel_terms(api: &TonApi, ch: &TonAddress) -> Result<Option<MachineTerms>, Failure> {
    let st = api.run_get_method(ch, "get_terms", &[]).map_err(tf)?;
    match st.first() {
        Some(StackValue::Cell(c)) => Ok(Some(MachineTerms::from_cell(c).map_err(tf)?)),
        _ => Ok(None),
    }
}

/// The client key stored in the channel (`get_parties()`, item 3).
fn channel_client_key(api: &TonApi, ch: &TonAddress) -> Result<[u8; 32], Failure> {
    let st = api.run_get_method(ch, "get_parties", &[]).map_err(tf)?;
    match st.get(3) {
        Some(StackValue::Int(v)) => {
            let (_, bytes) = v.to_bytes_be();
            let mut k = [0u8; 32];
            if bytes.len() > 32 {
                return Err(malformed(anyhow!("client key does not fit 256 bits")));
            }
            k[32 - bytes.len()..].copy_from_slice(&bytes);
            Ok(k)
        }
        _ => Err(fail(
            ErrorCategory::Connection,
            anyhow!("get_parties: no client key"),
        )),
    }
}

/// A channel exit code as a Failure (exit 4), naming what it means.
fn refused(code: i64) -> Failure {
    let what = channel::describe_exit_code(code)
        .map(|(n, m)| format!("{n}: {m}"))
        .unwrap_or_else(|| "not a channel exit code (see host-tools/ton/README.md)".into());
    fail(
        ErrorCategory::Rejected,
        anyhow!("the channel refused the message with exit code {code} ({what})"),
    )
}

fn send(
    p: &Prepared,
    action: &str,
    extra: Value,
    json_out: bool,
    api: &ApiOpts,
) -> Result<(), Failure> {
    let o = p
        .run(action, extra, false, json_out, api)?
        .ok_or_else(|| Failure::io(anyhow!("nothing sent")))?;
    match o.destination_exit_code {
        Some(0) | None => Ok(()),
        Some(c) => Err(refused(c)),
    }
}

/// Polls until the channel leaves `Pending` (the registry's answer).
fn wait_settled(api: &ApiOpts, ch: &TonAddress) -> Result<ChannelState, Failure> {
    let deadline = std::time::Instant::now() + Duration::from_secs(api.wait);
    loop {
        let s = channel_state(&api.client(), ch);
        match s {
            Ok(s) if !matches!(s.status, ChannelStatus::New | ChannelStatus::Pending) => {
                return Ok(s)
            }
            _ if std::time::Instant::now() >= deadline => {
                return Err(fail(
                    ErrorCategory::Connection,
                    anyhow!(
                    "channel {} did not open within {} s (registry answer pending); check it later",
                    addr_text(ch),
                    api.wait
                ),
                ))
            }
            _ => std::thread::sleep(Duration::from_millis(if api.wait <= 10 {
                250
            } else {
                2000
            })),
        }
    }
}

/// `chrysalis ton channel open`.
fn open(o: OpenArgs) -> Result<Value, Failure> {
    let wallet = load_wallet(&o.wallet)?;
    let registry = parse_addr(&o.registry)?;
    let id = MachineId::from_hex(&o.machine).map_err(|e| malformed(e.into()))?;
    let deposit = parse_coins("deposit", &o.deposit)?.nanotons();
    if deposit == 0 {
        return Err(malformed(anyhow!("--deposit must be above 0")));
    }
    let code = load_code(&o.code)?;
    if o.out.exists() {
        return Err(Failure::io(anyhow!(
            "{} exists; refusing to overwrite a channel file",
            o.out.display()
        )));
    }
    let api = o.api.client();
    let m = get_machine(&api, &registry, id)?.ok_or_else(|| {
        fail(
            ErrorCategory::Rejected,
            anyhow!(
                "machine {} is not in registry {}; nothing was sent",
                id.to_hex(),
                addr_text(&registry)
            ),
        )
    })?;
    if m.leaving_since != 0 {
        return Err(fail(
            ErrorCategory::Rejected,
            anyhow!(
                "machine {} is leaving the registry; nothing was sent",
                id.to_hex()
            ),
        ));
    }
    let seed: [u8; 32] = random_bytes()?;
    let nonce = u64::from_be_bytes(random_bytes()?);
    let key = chrysalis_payments::voucher::VoucherKey::from_seed(&seed)
        .map_err(|e| malformed(e.into()))?;
    let params = ChannelParams {
        registry: registry.clone(),
        client: wallet.address().clone(),
        nonce,
        client_key: key.public_key(),
        machine: id,
    };
    let address = params.address(&code).map_err(tf)?;
    let data = params.initial_data().map_err(tf)?;
    // The file (with the voucher key) exists before anything is sent.
    let mut file = ChannelFile {
        version: 1,
        channel: address.to_hex(),
        registry: addr_text(&registry),
        client: addr_text(wallet.address()),
        nonce,
        machine_id: id.to_hex(),
        voucher_seed: hex::encode(seed),
        operator: addr_text(&m.operator),
        price_per_million: m.price_per_million,
        key_hash: hex::encode(MachineId::of_key(&m.public_key).0),
        deposit,
        paid: 0,
        charged: 0,
        seq: 0,
    };
    file.save(&o.out, true).map_err(pf)?;
    let body = ChannelMessage::Open { query_id: nonce }
        .to_cell()
        .map_err(tf)?;
    let p = prepare(
        wallet,
        address.clone(),
        body,
        deposit + channel::OPEN_FEE,
        false,
        Some((code, data)),
        None,
        None,
        &o.api,
    )?;
    let extra = json!({"channel": addr_text(&address), "machine_id": id.to_hex(), "deposit_nanoton": deposit.to_string()});
    send(&p, "open a payment channel", extra.clone(), o.json, &o.api)?;
    let st = wait_settled(&o.api, &address)?;
    if st.status != ChannelStatus::Open {
        return Err(fail(
            ErrorCategory::Rejected,
            anyhow!("the registry did not confirm machine {} (unknown or leaving): the channel refunded the deposit", id.to_hex()),
        ));
    }
    // What the channel holds is what counts: the registry's answer.
    let terms = channel_terms(&o.api.client(), &address)?.ok_or_else(|| {
        fail(
            ErrorCategory::Connection,
            anyhow!("open channel without terms"),
        )
    })?;
    file.operator = addr_text(&terms.operator);
    file.price_per_million = terms.price_per_million;
    file.key_hash = hex::encode(terms.key_hash);
    file.deposit = st.deposit;
    file.save(&o.out, false).map_err(pf)?;
    let mut v = p.describe("open a payment channel", &extra)?;
    v["confirmed"] = json!(true);
    v["channel_file"] = json!(o.out.display().to_string());
    v["terms"] = serde_json::to_value(&terms).unwrap_or(Value::Null);
    v["state"] = serde_json::to_value(&st).unwrap_or(Value::Null);
    if !o.json {
        println!(
            "opened channel {} to machine {} with {} nanotons at {} nanotons per million tokens; channel file {}",
            addr_text(&address),
            id.to_hex(),
            st.deposit,
            terms.price_per_million,
            o.out.display()
        );
    }
    Ok(v)
}

/// `chrysalis ton channel claim`.
fn claim(c: ClaimArgs) -> Result<Value, Failure> {
    let wallet = load_wallet(&c.wallet)?;
    let vouchers = fetch_vouchers(&c.agent, &c.policy)?;
    let api = c.api.client();
    let mut claimed = Vec::new();
    let mut skipped = Vec::new();
    for v in vouchers {
        let ch = v.voucher.channel.clone();
        let skip = |why: String| json!({"channel": addr_text(&ch), "amount": v.voucher.amount, "skipped": why});
        if v.verify().is_err() {
            skipped.push(skip("bad signature".into()));
            continue;
        }
        let st = match channel_state(&api, &ch) {
            Ok(s) => s,
            Err(e) => {
                skipped.push(skip(format!("not a channel on chain: {:#}", e.error)));
                continue;
            }
        };
        let terms = channel_terms(&api, &ch)?;
        if terms.as_ref().map(|t| &t.operator) != Some(wallet.address()) {
            skipped.push(skip("this wallet is not the channel's operator".into()));
            continue;
        }
        if channel_client_key(&api, &ch)? != v.client_key {
            skipped.push(skip(
                "signed by another key than the channel's client key".into(),
            ));
            continue;
        }
        if !matches!(st.status, ChannelStatus::Open | ChannelStatus::Closing) {
            skipped.push(skip(format!("channel is {:?}", st.status)));
            continue;
        }
        if v.voucher.amount <= st.claimed {
            skipped.push(skip(format!("already claimed {}", st.claimed)));
            continue;
        }
        if v.voucher.amount > st.deposit {
            skipped.push(skip(format!(
                "above the deposit {} (the client overspent)",
                st.deposit
            )));
            continue;
        }
        let body = ChannelMessage::Claim {
            query_id: v.voucher.amount,
            voucher: v.clone(),
        }
        .to_cell()
        .map_err(tf)?;
        let w = load_wallet(&c.wallet)?;
        let p = prepare(
            w,
            ch.clone(),
            body,
            5 * channel::MESSAGE_FEE,
            true,
            None,
            None,
            None,
            &c.api,
        )?;
        let extra = json!({"channel": addr_text(&ch), "amount": v.voucher.amount});
        send(&p, "claim a voucher", extra, c.json, &c.api)?;
        let after = channel_state(&api, &ch)?;
        if after.claimed != v.voucher.amount {
            return Err(fail(
                ErrorCategory::Rejected,
                anyhow!(
                    "channel {} shows {} claimed after the claim of {}",
                    addr_text(&ch),
                    after.claimed,
                    v.voucher.amount
                ),
            ));
        }
        if !c.json {
            println!(
                "claimed {} nanotons from channel {} ({} in total)",
                v.voucher.amount - st.claimed,
                addr_text(&ch),
                after.claimed
            );
        }
        claimed.push(json!({"channel": addr_text(&ch), "paid": v.voucher.amount - st.claimed, "claimed": after.claimed}));
    }
    if !c.json && claimed.is_empty() {
        println!("nothing to claim ({} voucher(s) skipped)", skipped.len());
    }
    Ok(json!({"claimed": claimed, "skipped": skipped}))
}

/// GET /v1/chrysalis/vouchers over a verified RA-TLS connection.
fn fetch_vouchers(agent: &str, policy: &PolicyOpts) -> Result<Vec<SignedVoucher>, Failure> {
    use crate::client;
    // The operator's own agent is verified like any client verifies a node
    // (published releases by default, fresh evidence).
    let cfg = client::node_config(policy, &client::GpuOpts::default())?;
    let (status, body) = client::runtime().block_on(async {
        let (_, mut conn) = super::attested::connect_agent(agent, &cfg).await?;
        Ok::<_, Failure>(conn.get("/v1/chrysalis/vouchers").await?)
    })?;
    if status != 200 {
        return Err(fail(
            ErrorCategory::Connection,
            anyhow!(
                "GET /v1/chrysalis/vouchers answered {status}: {}",
                String::from_utf8_lossy(&body)
            ),
        ));
    }
    let j: Value =
        serde_json::from_slice(&body).map_err(|e| malformed(anyhow!("vouchers: {e}")))?;
    let list = j["vouchers"]
        .as_array()
        .ok_or_else(|| malformed(anyhow!("vouchers: no list")))?;
    list.iter()
        .map(|v| {
            let s = v["voucher"]
                .as_str()
                .ok_or_else(|| malformed(anyhow!("vouchers: entry without voucher")))?;
            SignedVoucher::parse(s).map_err(|e| malformed(e.into()))
        })
        .collect()
}

/// `chrysalis ton channel close`.
fn close(c: CloseArgs) -> Result<Value, Failure> {
    let file = ChannelFile::load(&c.channel).map_err(pf)?;
    let wallet = load_wallet(&c.wallet)?;
    let ch = file.address().map_err(pf)?;
    let st = channel_state(&c.api.client(), &ch)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (msg, action) = match st.status {
        ChannelStatus::Open => (
            ChannelMessage::StartClose { query_id: now },
            "start closing a payment channel",
        ),
        ChannelStatus::Closing => {
            let at = u64::from(st.closing_since) + u64::from(st.close_delay);
            if now < at {
                return Err(fail(
                    ErrorCategory::Rejected,
                    anyhow!("the close delay runs until unix time {at} ({} s from now): the operator can still claim; run this again then", at - now),
                ));
            }
            (
                ChannelMessage::FinishClose { query_id: now },
                "finish closing a payment channel",
            )
        }
        other => {
            return Err(fail(
                ErrorCategory::Rejected,
                anyhow!("channel {} is {other:?}: nothing to close", addr_text(&ch)),
            ))
        }
    };
    let body = msg.to_cell().map_err(tf)?;
    let p = prepare(
        wallet,
        ch.clone(),
        body,
        5 * channel::MESSAGE_FEE,
        true,
        None,
        None,
        None,
        &c.api,
    )?;
    let extra = json!({"channel": addr_text(&ch)});
    send(&p, action, extra.clone(), c.json, &c.api)?;
    let after = channel_state(&c.api.client(), &ch)?;
    let mut v = p.describe(action, &extra)?;
    v["confirmed"] = json!(true);
    v["state"] = serde_json::to_value(&after).unwrap_or(Value::Null);
    if !c.json {
        match after.status {
            ChannelStatus::Closing => println!(
                "closing channel {}: the operator can claim until unix time {}; then run `chrysalis ton channel close` again for the rest ({} of {} nanotons claimed so far)",
                addr_text(&ch),
                u64::from(after.closing_since) + u64::from(after.close_delay),
                after.claimed,
                after.deposit
            ),
            _ => println!(
                "closed channel {}: {} nanotons went to the operator, the rest came back to your wallet",
                addr_text(&ch),
                after.claimed
            ),
        }
    }
    Ok(v)
}
