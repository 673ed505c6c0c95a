//! The registry on a real TVM (@ton/sandbox): Rust builds and signs wallet
//! external messages, the sandbox runs the real wallet contracts and the
//! registry, getters show the result.

mod common;

use chrysalis_ton::registry::{
    self, Endpoint, ImageMeasurement, Label, Machine, MachineId, Register, RegistryMessage, TeeType,
};
use chrysalis_ton::wallet::{OperatorWallet, Secret, Transfer, WalletKind};
use chrysalis_ton::TonAddress;
use common::{ton_available, Harness};
use serde_json::{json, Value};
use tonlib_core::cell::{BagOfCells, Cell};

const NOW: u64 = 1_800_000_000;
const TON: u64 = 1_000_000_000;
const MIN_STAKE: u64 = 10 * TON;

// Fixed test mnemonics (generated once with `chrysalis ton wallet new`);
// test-only keys, never funded anywhere.
fn secret(i: usize) -> Secret {
    // Deterministic keys keep the @ton/ton comparison reproducible.
    let seeds = [SEED_ADMIN, SEED_OPERATOR, SEED_OTHER];
    Secret::from_words(seeds[i]).unwrap()
}

const SEED_ADMIN: &str = include_str!("data/admin.mnemonic");
const SEED_OPERATOR: &str = include_str!("data/operator.mnemonic");
const SEED_OTHER: &str = include_str!("data/other.mnemonic");

struct World {
    h: Harness,
    registry: TonAddress,
    now: u64,
    seqnos: std::collections::HashMap<String, u32>,
}

fn addr(a: &TonAddress) -> String {
    a.to_base64_url()
}

impl World {
    fn new() -> World {
        let mut h = Harness::start(NOW);
        let admin = OperatorWallet::new(WalletKind::V4R2, &secret(0)).unwrap();
        for i in 0..3 {
            for kind in [WalletKind::V4R2, WalletKind::V5R1] {
                let w = OperatorWallet::new(kind, &secret(i)).unwrap();
                h.call(json!({"cmd":"fund","address":addr(w.address()),"amount":(1000*TON).to_string()}));
            }
        }
        let r = h.call(
            json!({"cmd":"deploy_registry","admin":addr(admin.address()),
            "min_stake":MIN_STAKE.to_string(),"unstake_delay":3600}),
        );
        let registry = r["address"].as_str().unwrap().parse().unwrap();
        World {
            h,
            registry,
            now: NOW,
            seqnos: Default::default(),
        }
    }

    /// Signs `msg` to the registry from `w` with its next seqno and sends it.
    fn send(&mut self, w: &OperatorWallet, msg: &RegistryMessage, value: u64) -> (Value, String) {
        let key = addr(w.address());
        let seqno = *self.seqnos.get(&key).unwrap_or(&0);
        let t = Transfer {
            to: self.registry.clone(),
            value,
            bounce: true,
            body: msg.to_cell().unwrap(),
            state_init: None,
        };
        let ext = w.sign(&t, seqno, (self.now + 600) as u32).unwrap();
        let boc = ext.boc_base64().unwrap();
        let r = self.h.call(json!({"cmd":"send_external","boc":boc}));
        if r["accepted"] == true {
            self.seqnos.insert(key, seqno + 1);
        }
        (r, boc)
    }

    /// The registry's transaction in a send result.
    fn registry_tx(&self, r: &Value) -> Value {
        r["txs"]
            .as_array()
            .unwrap_or_else(|| panic!("external message refused: {r}"))
            .iter()
            .find(|t| t["address"] == addr(&self.registry))
            .cloned()
            .unwrap_or_else(|| panic!("no registry transaction in {r}"))
    }

    fn set_now(&mut self, now: u64) {
        self.now = now;
        self.h.call(json!({"cmd":"set_now","now":now}));
    }

    fn get(&mut self, method: &str, args: Value) -> Vec<Value> {
        let r = self
            .h
            .call(json!({"cmd":"get","address":addr(&self.registry),"method":method,"args":args}));
        assert_eq!(r["exit_code"], 0, "{method}: {r}");
        r["stack"].as_array().unwrap().clone()
    }

    fn machines(&mut self) -> Vec<Machine> {
        let st = self.get("get_machines", json!([]));
        let root = match st[0]["type"].as_str().unwrap() {
            "null" => None,
            "cell" => Some(cell_from_b64(st[0]["boc"].as_str().unwrap())),
            other => panic!("get_machines returned {other}"),
        };
        Machine::list_from_dict(root.as_ref()).unwrap()
    }
}

fn cell_from_b64(b: &str) -> Cell {
    let boc = BagOfCells::parse_base64(b).unwrap();
    (*boc.single_root().unwrap()).clone()
}

fn int_arg(bytes: &[u8; 32]) -> Value {
    json!({"type":"int","value": num_bigint::BigUint::from_bytes_be(bytes).to_string()})
}

fn sim_measurement() -> ImageMeasurement {
    ImageMeasurement::tdx(&chrysalis_ton::registry::TdxRegisters {
        mrtd: [1; 48],
        rtmr: [[2; 48], [3; 48], [4; 48], [5; 48]],
        mrconfigid: [0; 48],
        mrowner: [0; 48],
        mrownerconfig: [0; 48],
    })
}

fn spki(n: u8) -> Vec<u8> {
    // A P-256 SubjectPublicKeyInfo-shaped blob (91 bytes) distinct per n.
    let mut v = vec![0x30, 0x59];
    v.extend(std::iter::repeat_n(n, 89));
    v
}

fn register_msg(key: u8, m: ImageMeasurement, endpoint: &str, stake: u64) -> RegistryMessage {
    RegistryMessage::Register(Register {
        query_id: 7,
        measurement: m,
        public_key: spki(key),
        endpoint: Endpoint::parse(endpoint).unwrap(),
        model: Label::parse("model", "llama-3.1-8b-instruct").unwrap(),
        price_per_million: 2 * TON,
        stake,
    })
}

fn allow(w: &mut World, admin: &OperatorWallet, m: ImageMeasurement) -> String {
    let (r, boc) = w.send(
        admin,
        &RegistryMessage::AddMeasurement {
            query_id: 1,
            measurement: m,
            tee: TeeType::Tdx,
            release: Label::parse("release", "chrysalis-0.1.0").unwrap(),
        },
        registry::MESSAGE_VALUE,
    );
    assert_eq!(w.registry_tx(&r)["exit_code"], 0, "{r}");
    boc
}

#[test]
fn register_lifecycle_and_negative_cases() {
    if !ton_available("register_lifecycle_and_negative_cases") {
        return;
    }
    let mut w = World::new();
    let admin = OperatorWallet::new(WalletKind::V4R2, &secret(0)).unwrap();
    let op = OperatorWallet::new(WalletKind::V5R1, &secret(1)).unwrap();
    let other = OperatorWallet::new(WalletKind::V4R2, &secret(2)).unwrap();
    let m = sim_measurement();

    // Config getter.
    let cfg = w.get("get_config", json!([]));
    assert_eq!(cfg[1]["value"], MIN_STAKE.to_string());
    assert_eq!(cfg[2]["value"], "3600");

    // Non-admin changing the allowed set: 201.
    let (r, _) = w.send(
        &other,
        &RegistryMessage::AddMeasurement {
            query_id: 1,
            measurement: m,
            tee: TeeType::Tdx,
            release: Label::parse("release", "evil").unwrap(),
        },
        registry::MESSAGE_VALUE,
    );
    let tx = w.registry_tx(&r);
    assert_eq!(tx["exit_code"], 201, "{tx}");
    // ... and the refused message bounced back to the sender's wallet.
    let bounce = &tx["out"][0];
    assert_eq!(bounce["bounced"], true, "{tx}");
    assert_eq!(bounce["to"], addr(other.address()));

    // Measurement not allowed: 202.
    let (r, _) = w.send(
        &op,
        &register_msg(1, m, "node1.example.com:8443", MIN_STAKE),
        MIN_STAKE + TON,
    );
    assert_eq!(w.registry_tx(&r)["exit_code"], 202);

    let allow_boc = allow(&mut w, &admin, m);
    // Replaying the admin's (wallet v4r2) message: exit code 33, not accepted.
    let r = w.h.call(json!({"cmd":"send_external","boc":allow_boc}));
    assert_eq!(r["accepted"], false, "{r}");
    assert_eq!(r["exit_code"], 33, "{r}");
    let allowed = w.get("is_measurement_allowed", json!([int_arg(&m.0)]));
    assert_eq!(allowed[0]["value"], "1");

    // Too little stake: 203.
    let (r, _) = w.send(
        &op,
        &register_msg(1, m, "node1.example.com:8443", MIN_STAKE - 1),
        MIN_STAKE + TON,
    );
    assert_eq!(w.registry_tx(&r)["exit_code"], 203);
    // Value below stake + fees: 212.
    let (r, _) = w.send(
        &op,
        &register_msg(1, m, "node1.example.com:8443", MIN_STAKE),
        MIN_STAKE,
    );
    assert_eq!(w.registry_tx(&r)["exit_code"], 212);

    // Malformed endpoint (built past the Rust check): 204.
    let body = tonlib_core::cell::CellBuilder::new()
        .store_u32(32, registry::op::REGISTER)
        .unwrap()
        .store_u64(64, 7)
        .unwrap()
        .store_slice(&m.0)
        .unwrap()
        .store_reference(&std::sync::Arc::new(
            tonlib_core::cell::CellBuilder::new()
                .store_slice(&spki(1))
                .unwrap()
                .build()
                .unwrap(),
        ))
        .unwrap()
        .store_reference(&std::sync::Arc::new(
            tonlib_core::cell::CellBuilder::new()
                .store_slice(b"host:0x50")
                .unwrap()
                .build()
                .unwrap(),
        ))
        .unwrap()
        .store_reference(&std::sync::Arc::new(
            tonlib_core::cell::CellBuilder::new()
                .store_slice(b"m")
                .unwrap()
                .build()
                .unwrap(),
        ))
        .unwrap()
        .store_coins(&num_bigint::BigUint::from(1u32))
        .unwrap()
        .store_coins(&num_bigint::BigUint::from(MIN_STAKE))
        .unwrap()
        .build()
        .unwrap();
    let seqno = w.seqnos[&addr(op.address())];
    let ext = op
        .sign(
            &Transfer {
                to: w.registry.clone(),
                value: MIN_STAKE + TON,
                bounce: true,
                body,
                state_init: None,
            },
            seqno,
            (NOW + 600) as u32,
        )
        .unwrap();
    let r =
        w.h.call(json!({"cmd":"send_external","boc":ext.boc_base64().unwrap()}));
    w.seqnos.insert(addr(op.address()), seqno + 1);
    assert_eq!(w.registry_tx(&r)["exit_code"], 204);

    // Success: stake kept, excess returned.
    let (r, boc) = w.send(
        &op,
        &register_msg(1, m, "node1.example.com:8443", MIN_STAKE),
        MIN_STAKE + 3 * TON,
    );
    let tx = w.registry_tx(&r);
    assert_eq!(tx["exit_code"], 0, "{tx}");
    let excess = &tx["out"][0];
    assert_eq!(excess["op"], registry::op::EXCESS);
    let ex: u64 = excess["value"].as_str().unwrap().parse().unwrap();
    // The excess pays its own forwarding fee.
    let expected = 3 * TON - registry::FEE_RESERVE;
    assert!(ex <= expected && ex > expected - TON / 100, "excess {ex}");

    let machines = w.machines();
    assert_eq!(machines.len(), 1);
    let mc = &machines[0];
    assert_eq!(mc.id, MachineId::of_key(&spki(1)));
    assert_eq!(mc.operator, *op.address());
    assert_eq!(mc.measurement, m);
    assert_eq!(mc.public_key, spki(1));
    assert_eq!(mc.endpoint, "node1.example.com:8443");
    assert_eq!(mc.stake, MIN_STAKE);
    assert_eq!(mc.registered_at as u64, NOW);
    assert_eq!(w.get("get_machine_count", json!([]))[0]["value"], "1");
    let one = w.get("get_machine", json!([int_arg(&mc.id.0)]));
    let parsed =
        Machine::from_cell(mc.id, &cell_from_b64(one[0]["boc"].as_str().unwrap())).unwrap();
    assert_eq!(&parsed, mc);

    // Replayed external message: the wallet refuses it, no transaction.
    let r = w.h.call(json!({"cmd":"send_external","boc":boc}));
    assert_eq!(r["accepted"], false, "{r}");
    // Wallet v5r1 exit code 133: seqno already used.
    assert_eq!(r["exit_code"], 133, "{r}");

    // Same key again: 207.
    let (r, _) = w.send(
        &op,
        &register_msg(1, m, "node1.example.com:8443", MIN_STAKE),
        MIN_STAKE + TON,
    );
    assert_eq!(w.registry_tx(&r)["exit_code"], 207);

    // Update: a second machine (key 2, another operator); the first may not
    // take key 2 (207) but may move to a fresh key 3 (its id stays).
    let (r, _) = w.send(
        &other,
        &register_msg(2, m, "node2.example.com:8443", MIN_STAKE),
        MIN_STAKE + TON,
    );
    assert_eq!(w.registry_tx(&r)["exit_code"], 0);
    let update = |key: u8| {
        RegistryMessage::Update(registry::Update {
            query_id: 8,
            id: mc.id,
            measurement: m,
            public_key: spki(key),
            endpoint: Endpoint::parse("node1.example.com:9443").unwrap(),
            model: Label::parse("model", "llama-3.1-70b").unwrap(),
            price_per_million: 3 * TON,
        })
    };
    let (r, _) = w.send(&op, &update(2), registry::MESSAGE_VALUE);
    assert_eq!(w.registry_tx(&r)["exit_code"], 207);
    let (r, _) = w.send(&op, &update(3), registry::MESSAGE_VALUE);
    assert_eq!(w.registry_tx(&r)["exit_code"], 0);
    let now_first = w.machines().into_iter().find(|x| x.id == mc.id).unwrap();
    assert_eq!(now_first.public_key, spki(3));
    assert_eq!(now_first.endpoint, "node1.example.com:9443");
    assert_eq!(now_first.price_per_million, 3 * TON);
    assert_eq!(w.get("get_machine_count", json!([]))[0]["value"], "2");

    // Heartbeat by someone else: 209; by the operator: ok.
    let id = mc.id;
    let (r, _) = w.send(
        &other,
        &RegistryMessage::Heartbeat { query_id: 2, id },
        registry::MESSAGE_VALUE,
    );
    assert_eq!(w.registry_tx(&r)["exit_code"], 209);
    w.set_now(NOW + 100);
    let (r, _) = w.send(
        &op,
        &RegistryMessage::Heartbeat { query_id: 2, id },
        registry::MESSAGE_VALUE,
    );
    assert_eq!(w.registry_tx(&r)["exit_code"], 0);
    let first = w.machines().into_iter().find(|x| x.id == id).unwrap();
    assert_eq!(first.last_heartbeat as u64, NOW + 100);

    // Withdraw before unregister: 210; unregister; withdraw early: 211; later: stake back.
    let (r, _) = w.send(
        &op,
        &RegistryMessage::WithdrawStake { query_id: 3, id },
        registry::MESSAGE_VALUE,
    );
    assert_eq!(w.registry_tx(&r)["exit_code"], 210);
    let (r, _) = w.send(
        &op,
        &RegistryMessage::Unregister { query_id: 3, id },
        registry::MESSAGE_VALUE,
    );
    assert_eq!(w.registry_tx(&r)["exit_code"], 0);
    let (r, _) = w.send(
        &op,
        &RegistryMessage::WithdrawStake { query_id: 3, id },
        registry::MESSAGE_VALUE,
    );
    assert_eq!(w.registry_tx(&r)["exit_code"], 211);
    w.set_now(NOW + 100 + 3600);
    let (r, _) = w.send(
        &op,
        &RegistryMessage::WithdrawStake { query_id: 3, id },
        registry::MESSAGE_VALUE,
    );
    let tx = w.registry_tx(&r);
    assert_eq!(tx["exit_code"], 0, "{tx}");
    assert_eq!(tx["out"][0]["op"], registry::op::STAKE_RETURNED);
    let back: u64 = tx["out"][0]["value"].as_str().unwrap().parse().unwrap();
    assert!(back >= MIN_STAKE, "{back}");
    assert!(w.machines().iter().all(|x| x.id != id));

    // Admin removes the measurement; a non-admin cannot hand over admin.
    let (r, _) = w.send(
        &other,
        &RegistryMessage::ChangeAdmin {
            query_id: 4,
            new_admin: other.address().clone(),
        },
        registry::MESSAGE_VALUE,
    );
    assert_eq!(w.registry_tx(&r)["exit_code"], 201);
    let (r, _) = w.send(
        &admin,
        &RegistryMessage::RemoveMeasurement {
            query_id: 5,
            measurement: m,
        },
        registry::MESSAGE_VALUE,
    );
    assert_eq!(w.registry_tx(&r)["exit_code"], 0);
    assert_eq!(
        w.get("is_measurement_allowed", json!([int_arg(&m.0)]))[0]["value"],
        "0"
    );
}

#[test]
fn rust_messages_match_ton_core() {
    if !ton_available("rust_messages_match_ton_core") {
        return;
    }
    let mut h = Harness::start(NOW);
    let m = sim_measurement();
    let msg = register_msg(9, m, "10.1.2.3:443", MIN_STAKE);
    let body = msg.to_cell().unwrap();
    let r = h.call(
        json!({"cmd":"ref_register_body","query_id":"7","measurement":m.to_hex(),
        "public_key":hex::encode(spki(9)),"endpoint":"10.1.2.3:443","model":"llama-3.1-8b-instruct",
        "price":(2*TON).to_string(),"stake":MIN_STAKE.to_string()}),
    );
    assert_eq!(r["hash"], hex::encode(body.cell_hash().as_slice()));

    let registry: TonAddress = "EQBHAtqt6uv58MtvYFI5qtWQNgME6LhrxBCUzJ46HzohO6oO"
        .parse()
        .unwrap();
    for kind in [WalletKind::V4R2, WalletKind::V5R1] {
        for seqno in [0u32, 5] {
            let s = secret(1);
            let w = OperatorWallet::new(kind, &s).unwrap();
            let t = Transfer {
                to: registry.clone(),
                value: 11 * TON,
                bounce: true,
                body: body.clone(),
                state_init: None,
            };
            let ext = w.sign(&t, seqno, (NOW + 60) as u32).unwrap();
            let r = h.call(json!({"cmd":"ref_wallet_external","version":kind.as_str(),
                "mnemonic":SEED_OPERATOR.trim(),"seqno":seqno,"valid_until":NOW + 60,
                "to":addr(&registry),"value":(11*TON).to_string(),"bounce":true,
                "body":base64_boc(&body)}));
            assert_eq!(r["address"], addr(w.address()), "{kind:?} address");
            assert_eq!(
                r["hash"],
                ext.hash_hex(),
                "{kind:?} seqno {seqno}: external message hash"
            );
        }
    }
}

fn base64_boc(c: &Cell) -> String {
    use tonlib_core::tlb_types::tlb::TLB;
    c.to_boc_b64(true).unwrap()
}
