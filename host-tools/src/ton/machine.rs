//! An operator's machine in the registry: `register`, `update`,
//! `heartbeat`, `unregister`, `withdraw`.

use anyhow::anyhow;
use chrysalis_attestation::ErrorCategory;
use chrysalis_ton::api::{StackArg, StackValue, TonApi};
use chrysalis_ton::registry::{
    self, Endpoint, Label, Machine, MachineId, Register, RegistryMessage,
};
use chrysalis_ton::{Coins, TonAddress};
use serde_json::{json, Value};

use super::args::{ApiOpts, MachineArgs, RegisterArgs, UpdateArgs};
use super::attested::{attest, attested_json};
use super::input::{addr_text, load_wallet, parse_addr, parse_coins};
use super::outcome::{fail, report, tf};
use super::send::{check_outcome, expiry, prepare, prepare_registry};
use crate::client::Failure;

fn endpoint_of(agent: &str, given: Option<&str>) -> Result<Endpoint, Failure> {
    let text = match given {
        Some(e) => e.to_string(),
        None => agent
            .strip_prefix("https://")
            .and_then(|r| r.split('/').next())
            .unwrap_or(agent)
            .to_string(),
    };
    Endpoint::parse(&text).map_err(|e| fail(ErrorCategory::Malformed, e.into()))
}

/// `chrysalis ton register`.
pub(super) fn register(r: RegisterArgs) -> Result<Value, Failure> {
    // Everything offline is checked before the network is touched.
    let wallet = load_wallet(&r.send.wallet)?;
    let registry_addr = parse_addr(&r.send.registry)?;
    let endpoint = endpoint_of(&r.agent, r.endpoint.as_deref())?;
    let price = parse_coins("price", &r.price)?.nanotons();
    let stake = parse_coins("stake", &r.stake)?.nanotons();
    if let Some(m) = &r.model {
        Label::parse("model", m).map_err(|e| fail(ErrorCategory::Malformed, e.into()))?;
    }
    let a = attest(&r.agent, &r.policy, r.model.is_none())?;
    let model_text = match (&r.model, &a.model) {
        (Some(m), _) => m.clone(),
        (None, Some(m)) => m.clone(),
        (None, None) => {
            eprintln!("warning: the agent did not list a model (GET /v1/models); registering \"unspecified\" (use --model)");
            "unspecified".into()
        }
    };
    let model =
        Label::parse("model", &model_text).map_err(|e| fail(ErrorCategory::Malformed, e.into()))?;
    let id = MachineId::of_key(a.peer.spki_der());
    if !r.send.dry_run {
        check_min_stake(&r.send.api, &registry_addr, stake)?;
        if get_machine(&r.send.api.client(), &registry_addr, id)?.is_some() {
            return Err(fail(ErrorCategory::Rejected, anyhow!("machine {} (this agent's key) is already registered (already_registered); use `chrysalis ton update`; nothing was sent", id.to_hex())));
        }
    }
    let vu = expiry(r.send.valid_until);
    let msg = RegistryMessage::Register(Register {
        query_id: u64::from(vu),
        measurement: a.measurement,
        public_key: a.peer.spki_der().to_vec(),
        endpoint: endpoint.clone(),
        model: model.clone(),
        price_per_million: price,
        stake,
    });
    let body = msg.to_cell().map_err(tf)?;
    let p = prepare(
        wallet,
        registry_addr.clone(),
        body,
        stake + registry::FEE_RESERVE,
        true,
        None,
        r.send.seqno,
        Some(vu),
        &r.send.api,
    )?;
    let mut extra = attested_json(&a);
    extra["endpoint"] = json!(endpoint.as_str());
    extra["model"] = json!(model.as_str());
    extra["price_per_million_nanoton"] = json!(price.to_string());
    extra["stake_nanoton"] = json!(stake.to_string());
    let Some(outcome) = p.run(
        "register a machine",
        extra.clone(),
        r.send.dry_run,
        r.send.json,
        &r.send.api,
    )?
    else {
        return Ok(Value::Null);
    };
    check_outcome(&outcome)?;
    // Confirm from the chain that the attested key and measurement are there.
    let m = get_machine(&r.send.api.client(), &registry_addr, id)?.ok_or_else(|| {
        fail(ErrorCategory::Rejected, anyhow!("the transaction landed but machine {} is not in the registry: the registry refused it (measurement not allowed, stake too low, or already registered); the stake bounced back", id.to_hex()))
    })?;
    let sent_matches = m.operator == *p.wallet.address()
        && m.endpoint == endpoint.as_str()
        && m.model == model.as_str()
        && m.price_per_million == price
        && m.stake == stake;
    if !sent_matches {
        return Err(fail(
            ErrorCategory::Rejected,
            anyhow!(
                "machine {} on chain is not the registration just sent: the registry refused it",
                id.to_hex()
            ),
        ));
    }
    if m.measurement != a.measurement || m.public_key != a.peer.spki_der() {
        return Err(fail(
            ErrorCategory::Verification,
            anyhow!(
                "machine {} on chain does not hold the attested key and measurement",
                id.to_hex()
            ),
        ));
    }
    let mut v = p.describe("register a machine", &extra)?;
    v["confirmed"] = json!(true);
    v["waited_s"] = json!(outcome.waited_s);
    v["machine"] = serde_json::to_value(&m).unwrap_or(Value::Null);
    if !r.send.json {
        println!(
            "registered machine {} ({} {}) at {} in registry {}",
            id.to_hex(),
            model.as_str(),
            a.measurement.to_hex(),
            endpoint.as_str(),
            addr_text(&registry_addr)
        );
        if a.peer.is_simulated() {
            println!("WARNING: SIMULATED evidence; this registration proves nothing");
        }
    }
    Ok(v)
}

fn check_min_stake(api: &ApiOpts, registry_addr: &TonAddress, stake: u64) -> Result<(), Failure> {
    let cfg = api
        .client()
        .run_get_method(registry_addr, "get_config", &[])
        .map_err(tf)?;
    if let Some(min) = cfg.get(1).and_then(StackValue::as_i64) {
        if (stake as i128) < min as i128 {
            return Err(fail(
                ErrorCategory::Rejected,
                anyhow!(
                    "--stake {} TON is below the registry's minimum {} TON; nothing was sent",
                    Coins::from_nanotons(stake),
                    Coins::from_nanotons(min as u64)
                ),
            ));
        }
    }
    Ok(())
}

fn get_machine(
    api: &TonApi,
    registry_addr: &TonAddress,
    id: MachineId,
) -> Result<Option<Machine>, Failure> {
    let st = api
        .run_get_method(
            registry_addr,
            "get_machine",
            &[StackArg::Uint(id.0.to_vec())],
        )
        .map_err(tf)?;
    match st.first() {
        Some(StackValue::Cell(c)) => Ok(Some(Machine::from_cell(id, c).map_err(tf)?)),
        _ => Ok(None),
    }
}

/// `chrysalis ton update`.
pub(super) fn update(u: UpdateArgs) -> Result<Value, Failure> {
    let wallet = load_wallet(&u.send.wallet)?;
    let registry_addr = parse_addr(&u.send.registry)?;
    let id = MachineId::from_hex(&u.id).map_err(|e| fail(ErrorCategory::Malformed, e.into()))?;
    let endpoint = endpoint_of(&u.agent, u.endpoint.as_deref())?;
    let price = parse_coins("price", &u.price)?.nanotons();
    let a = attest(&u.agent, &u.policy, u.model.is_none())?;
    let model_text = u
        .model
        .clone()
        .or(a.model.clone())
        .unwrap_or_else(|| "unspecified".into());
    let model =
        Label::parse("model", &model_text).map_err(|e| fail(ErrorCategory::Malformed, e.into()))?;
    let vu = expiry(u.send.valid_until);
    let msg = RegistryMessage::Update(chrysalis_ton::registry::Update {
        query_id: u64::from(vu),
        id,
        measurement: a.measurement,
        public_key: a.peer.spki_der().to_vec(),
        endpoint,
        model,
        price_per_million: price,
    });
    let body = msg.to_cell().map_err(tf)?;
    let p = prepare_registry(wallet, registry_addr, body, &u.send, vu)?;
    let extra = attested_json(&a);
    p.send_confirmed(
        "update a machine",
        extra,
        u.send.dry_run,
        u.send.json,
        &u.send.api,
        || format!("updated machine {}", id.to_hex()),
    )
}

/// `heartbeat`, `unregister` or `withdraw` (`what`), with the exit code.
pub(super) fn machine_op(m: MachineArgs, what: &str) -> i32 {
    let j = m.send.json;
    let r = (|| {
        let wallet = load_wallet(&m.send.wallet)?;
        let registry_addr = parse_addr(&m.send.registry)?;
        let id =
            MachineId::from_hex(&m.id).map_err(|e| fail(ErrorCategory::Malformed, e.into()))?;
        let vu = expiry(m.send.valid_until);
        let q = u64::from(vu);
        let msg = match what {
            "heartbeat" => RegistryMessage::Heartbeat { query_id: q, id },
            "unregister" => RegistryMessage::Unregister { query_id: q, id },
            _ => RegistryMessage::WithdrawStake { query_id: q, id },
        };
        let body = msg.to_cell().map_err(tf)?;
        let p = prepare_registry(wallet, registry_addr, body, &m.send, vu)?;
        let extra = json!({"machine_id": id.to_hex()});
        p.send_confirmed(what, extra, m.send.dry_run, j, &m.send.api, || {
            format!("{what}: done for machine {}", id.to_hex())
        })
    })();
    report(r, j)
}
