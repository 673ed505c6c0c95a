//! The payment channel on a real TVM (@ton/sandbox): Rust builds and signs
//! the wallets' messages and the client's vouchers (`chrysalis-payments`),
//! the sandbox runs the wallets, the registry and the channel. Lifecycle,
//! every refusal with its exit code, and the gas each step costs (printed).

mod common;

use chrysalis_payments::voucher::{SignedVoucher, Voucher, VoucherKey};
use chrysalis_ton::channel::{self, ChannelMessage, ChannelParams, MachineTerms};
use chrysalis_ton::registry::{
    self, Endpoint, ImageMeasurement, Label, MachineId, Register, RegistryMessage, TeeType,
};
use chrysalis_ton::wallet::{OperatorWallet, Secret, Transfer, WalletKind};
use chrysalis_ton::TonAddress;
use common::{contract_dir, ton_available, Harness};
use serde_json::{json, Value};
use std::rc::Rc;
use tonlib_core::cell::{BagOfCells, Cell};

const NOW: u64 = 1_800_000_000;
const TON: u64 = 1_000_000_000;
const PRICE: u64 = 2 * TON; // nanotons per million tokens
const DEPOSIT: u64 = 5 * TON;

fn secret(i: usize) -> Secret {
    let seeds = [
        include_str!("data/admin.mnemonic"),
        include_str!("data/operator.mnemonic"),
        include_str!("data/other.mnemonic"),
    ];
    Secret::from_words(seeds[i]).unwrap()
}

fn addr(a: &TonAddress) -> String {
    a.to_base64_url()
}

fn channel_code() -> Cell {
    let j: Value = serde_json::from_str(
        &std::fs::read_to_string(contract_dir().join("build/channel.json")).unwrap(),
    )
    .unwrap();
    cell_from_b64(j["codeBoc64"].as_str().unwrap())
}

fn cell_from_b64(b: &str) -> Cell {
    let boc = BagOfCells::parse_base64(b).unwrap();
    (*boc.single_root().unwrap()).clone()
}

fn spki(n: u8) -> Vec<u8> {
    let mut v = vec![0x30, 0x59];
    v.extend(std::iter::repeat_n(n, 89));
    v
}

struct World {
    h: Harness,
    registry: TonAddress,
    now: u64,
    seqnos: std::collections::HashMap<String, u32>,
    admin: Rc<OperatorWallet>,
    operator: Rc<OperatorWallet>,
    client: Rc<OperatorWallet>,
    stranger: Rc<OperatorWallet>,
    code: Cell,
}

impl World {
    /// A registry with one allowed measurement and machine `spki(1)`
    /// registered by the operator at PRICE.
    fn new() -> World {
        let mut h = Harness::start(NOW);
        let admin = OperatorWallet::new(WalletKind::V4R2, &secret(0)).unwrap();
        let operator = OperatorWallet::new(WalletKind::V5R1, &secret(1)).unwrap();
        let client = OperatorWallet::new(WalletKind::V4R2, &secret(2)).unwrap();
        let stranger = OperatorWallet::new(WalletKind::V5R1, &secret(2)).unwrap();
        for w in [&admin, &operator, &client, &stranger] {
            h.call(
                json!({"cmd":"fund","address":addr(w.address()),"amount":(1000*TON).to_string()}),
            );
        }
        let r = h.call(
            json!({"cmd":"deploy_registry","admin":addr(admin.address()),
            "min_stake":(10*TON).to_string(),"unstake_delay":3600}),
        );
        let registry = r["address"].as_str().unwrap().parse().unwrap();
        let mut w = World {
            h,
            registry,
            now: NOW,
            seqnos: Default::default(),
            admin: Rc::new(admin),
            operator: Rc::new(operator),
            client: Rc::new(client),
            stranger: Rc::new(stranger),
            code: channel_code(),
        };
        let m = ImageMeasurement::tdx(&chrysalis_ton::registry::TdxRegisters {
            mrtd: [1; 48],
            rtmr: [[2; 48], [3; 48], [4; 48], [5; 48]],
            mrconfigid: [0; 48],
            mrowner: [0; 48],
            mrownerconfig: [0; 48],
        });
        let admin = w.admin.clone();
        let r = w.send(
            &admin,
            &w.registry.clone(),
            RegistryMessage::AddMeasurement {
                query_id: 1,
                measurement: m,
                tee: TeeType::Tdx,
                release: Label::parse("release", "chrysalis-0.1.0").unwrap(),
            }
            .to_cell()
            .unwrap(),
            registry::MESSAGE_VALUE,
            None,
        );
        assert_eq!(w.tx_at(&r, &w.registry.clone(), 0)["exit_code"], 0);
        for key in [1u8, 2] {
            let reg = RegistryMessage::Register(Register {
                query_id: 2,
                measurement: m,
                public_key: spki(key),
                endpoint: Endpoint::parse("node.example.com:8443").unwrap(),
                model: Label::parse("model", "tiny").unwrap(),
                price_per_million: PRICE,
                stake: 10 * TON,
            });
            let op = w.operator.clone();
            let r = w.send(
                &op,
                &w.registry.clone(),
                reg.to_cell().unwrap(),
                11 * TON,
                None,
            );
            assert_eq!(w.tx_at(&r, &w.registry.clone(), 0)["exit_code"], 0, "{r}");
        }
        w
    }

    fn send(
        &mut self,
        from: &OperatorWallet,
        to: &TonAddress,
        body: Cell,
        value: u64,
        state_init: Option<(Cell, Cell)>,
    ) -> Value {
        let key = addr(from.address());
        let seqno = *self.seqnos.get(&key).unwrap_or(&0);
        let t = Transfer {
            to: to.clone(),
            value,
            bounce: state_init.is_none(),
            body,
            state_init,
        };
        let ext = from.sign(&t, seqno, (self.now + 600) as u32).unwrap();
        let r = self
            .h
            .call(json!({"cmd":"send_external","boc":ext.boc_base64().unwrap()}));
        assert_eq!(r["accepted"], true, "{r}");
        self.seqnos.insert(key, seqno + 1);
        r
    }

    /// The `n`-th transaction of `at` in a send result.
    fn tx_at(&self, r: &Value, at: &TonAddress, n: usize) -> Value {
        r["txs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["address"] == addr(at))
            .nth(n)
            .cloned()
            .unwrap_or_else(|| panic!("no transaction {n} of {} in {r}", addr(at)))
    }

    fn set_now(&mut self, now: u64) {
        self.now = now;
        self.h.call(json!({"cmd":"set_now","now":now}));
    }

    fn params(&self, machine: u8, nonce: u64, key: &VoucherKey) -> ChannelParams {
        ChannelParams {
            registry: self.registry.clone(),
            client: self.client.address().clone(),
            nonce,
            client_key: key.public_key(),
            machine: MachineId::of_key(&spki(machine)),
        }
    }

    /// Opens a channel; returns its address and the send result.
    fn open(&mut self, p: &ChannelParams, deposit: u64) -> (TonAddress, Value) {
        let address = p.address(&self.code).unwrap();
        let client = self.client.clone();
        let r = self.send(
            &client,
            &address,
            ChannelMessage::Open { query_id: 3 }.to_cell().unwrap(),
            deposit + channel::OPEN_FEE,
            Some((self.code.clone(), p.initial_data().unwrap())),
        );
        (address, r)
    }

    fn claim(&mut self, from: &OperatorWallet, ch: &TonAddress, v: &SignedVoucher) -> Value {
        let msg = ChannelMessage::Claim {
            query_id: 4,
            voucher: v.clone(),
        };
        let r = self.send(from, ch, msg.to_cell().unwrap(), 50_000_000, None);
        self.tx_at(&r, ch, 0)
    }

    fn get(&mut self, at: &TonAddress, method: &str) -> Vec<Value> {
        let r = self
            .h
            .call(json!({"cmd":"get","address":addr(at),"method":method,"args":[]}));
        assert_eq!(r["exit_code"], 0, "{method}: {r}");
        r["stack"].as_array().unwrap().clone()
    }

    /// (state, deposit, claimed)
    fn state(&mut self, ch: &TonAddress) -> (i64, u64, u64) {
        let s = self.get(ch, "get_channel");
        let n = |i: usize| s[i]["value"].as_str().unwrap().parse::<u64>().unwrap();
        (n(0) as i64, n(1), n(2))
    }

    fn balance(&mut self, a: &TonAddress) -> u64 {
        let r = self.h.call(json!({"cmd":"account","address":addr(a)}));
        r["balance"].as_str().unwrap().parse().unwrap()
    }
}

fn fees(txs: &[Value]) -> (u64, u64) {
    let gas = txs
        .iter()
        .map(|t| t["gas_used"].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    let fees = txs
        .iter()
        .map(|t| t["total_fees"].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    (gas, fees)
}

fn voucher(key: &VoucherKey, ch: &TonAddress, amount: u64) -> SignedVoucher {
    key.sign(&Voucher {
        channel: ch.clone(),
        amount,
    })
    .unwrap()
}

#[test]
fn channel_lifecycle_and_gas() {
    if !ton_available("channel_lifecycle_and_gas") {
        return;
    }
    let mut w = World::new();
    let key = VoucherKey::from_seed(&[7; 32]).unwrap();
    let p = w.params(1, 42, &key);
    let (ch, r) = w.open(&p, DEPOSIT);
    // Open: the channel's open, the registry's answer, the channel's accept.
    let open_tx = w.tx_at(&r, &ch, 0);
    let reg_tx = w.tx_at(&r, &w.registry.clone(), 0);
    let info_tx = w.tx_at(&r, &ch, 1);
    for t in [&open_tx, &reg_tx, &info_tx] {
        assert_eq!(t["exit_code"], 0, "{r}");
    }
    let (gas, fee) = fees(&[open_tx, reg_tx, info_tx]);
    println!("GAS open: {gas} gas units, {fee} nanotons in fees (channel deploy + registry query + answer)");
    assert_eq!(w.state(&ch), (2, DEPOSIT, 0));
    let terms = w.get(&ch, "get_terms");
    let terms = MachineTerms::from_cell(&cell_from_b64(terms[0]["boc"].as_str().unwrap())).unwrap();
    assert_eq!(&terms.operator, w.operator.address());
    assert_eq!(terms.price_per_million, PRICE);
    assert_eq!(terms.key_hash, MachineId::of_key(&spki(1)).0);
    let parties = w.get(&ch, "get_parties");
    assert_eq!(parties[2]["value"], "42");

    // A Rust-signed voucher is accepted: the operator is paid the amount
    // plus what its claim carried beyond the fee.
    let op = w.operator.clone();
    let tx = w.claim(&op, &ch, &voucher(&key, &ch, 1_000_000));
    assert_eq!(tx["exit_code"], 0, "{tx}");
    let paid = &tx["out"][0];
    assert_eq!(paid["to"], addr(op.address()));
    assert_eq!(paid["op"], channel::op::PAID);
    assert_eq!(
        paid["value"],
        (1_000_000 + 50_000_000 - channel::MESSAGE_FEE).to_string()
    );
    let (gas, fee) = fees(std::slice::from_ref(&tx));
    println!("GAS claim: {gas} gas units, {fee} nanotons in fees (channel)");
    assert_eq!(w.state(&ch), (2, DEPOSIT, 1_000_000));
    // A higher one pays the difference.
    let tx = w.claim(&op, &ch, &voucher(&key, &ch, 3_500_000));
    assert_eq!(tx["exit_code"], 0, "{tx}");
    assert_eq!(
        tx["out"][0]["value"],
        (2_500_000 + 50_000_000 - channel::MESSAGE_FEE).to_string()
    );

    // The client starts the close; early finish is refused (230); the
    // operator can still claim during the delay.
    let client = w.client.clone();
    let r = w.send(
        &client,
        &ch,
        ChannelMessage::StartClose { query_id: 5 }
            .to_cell()
            .unwrap(),
        50_000_000,
        None,
    );
    let tx = w.tx_at(&r, &ch, 0);
    assert_eq!(tx["exit_code"], 0, "{tx}");
    let (gas, fee) = fees(std::slice::from_ref(&tx));
    println!("GAS start_close: {gas} gas units, {fee} nanotons in fees (channel)");
    assert_eq!(w.state(&ch).0, 3);
    w.set_now(NOW + 3600);
    let r = w.send(
        &client,
        &ch,
        ChannelMessage::FinishClose { query_id: 6 }
            .to_cell()
            .unwrap(),
        50_000_000,
        None,
    );
    assert_eq!(w.tx_at(&r, &ch, 0)["exit_code"], 230);
    let tx = w.claim(&op, &ch, &voucher(&key, &ch, 4_000_000));
    assert_eq!(tx["exit_code"], 0, "claim while closing: {tx}");
    assert_eq!(w.state(&ch), (3, DEPOSIT, 4_000_000));

    // After the delay the rest comes back and the channel is closed.
    w.set_now(NOW + u64::from(channel::CLOSE_DELAY_S) + 1);
    let before = w.balance(&ch);
    let r = w.send(
        &client,
        &ch,
        ChannelMessage::FinishClose { query_id: 7 }
            .to_cell()
            .unwrap(),
        50_000_000,
        None,
    );
    let tx = w.tx_at(&r, &ch, 0);
    assert_eq!(tx["exit_code"], 0, "{tx}");
    let (gas, fee) = fees(std::slice::from_ref(&tx));
    println!("GAS finish_close: {gas} gas units, {fee} nanotons in fees (channel)");
    let refund: u64 = tx["out"][0]["value"].as_str().unwrap().parse().unwrap();
    assert_eq!(tx["out"][0]["to"], addr(client.address()));
    assert_eq!(tx["out"][0]["op"], channel::op::REFUND);
    // Everything the channel held went back: at least deposit − claimed.
    assert!(refund >= DEPOSIT - 4_000_000, "refund {refund}");
    assert!(
        refund <= before + 50_000_000,
        "refund {refund} > balance {before}"
    );
    assert_eq!(w.state(&ch).0, 4);
    // Closed: no more claims (222).
    let tx = w.claim(&op, &ch, &voucher(&key, &ch, 4_500_000));
    assert_eq!(tx["exit_code"], 222, "{tx}");
}

#[test]
fn channel_refusals() {
    if !ton_available("channel_refusals") {
        return;
    }
    let mut w = World::new();
    let key = VoucherKey::from_seed(&[7; 32]).unwrap();
    let (ch, _) = w.open(&w.params(1, 1, &key), DEPOSIT);
    let (other_ch, _) = w.open(&w.params(2, 2, &key), DEPOSIT);
    assert_eq!(w.state(&ch).0, 2);
    assert_eq!(w.state(&other_ch).0, 2);
    let op = w.operator.clone();
    let stranger = w.stranger.clone();
    let client = w.client.clone();

    // Voucher above the deposit: 227.
    let tx = w.claim(&op, &ch, &voucher(&key, &ch, DEPOSIT + 1));
    assert_eq!(tx["exit_code"], 227, "{tx}");
    // Voucher for another channel: 226.
    let tx = w.claim(&op, &ch, &voucher(&key, &other_ch, 1000));
    assert_eq!(tx["exit_code"], 226, "{tx}");
    // Signed by another key: 225.
    let forger = VoucherKey::from_seed(&[8; 32]).unwrap();
    let tx = w.claim(&op, &ch, &voucher(&forger, &ch, 1000));
    assert_eq!(tx["exit_code"], 225, "{tx}");
    // A valid signature over a tampered amount: 225.
    let mut tampered = voucher(&key, &ch, 1000);
    tampered.voucher.amount = 2000;
    let tx = w.claim(&op, &ch, &tampered);
    assert_eq!(tx["exit_code"], 225, "{tx}");
    // Claim by another party (the client itself, a stranger): 224.
    let good = voucher(&key, &ch, 2_000_000);
    let tx = w.claim(&stranger, &ch, &good);
    assert_eq!(tx["exit_code"], 224, "{tx}");
    let tx = w.claim(&client, &ch, &good);
    assert_eq!(tx["exit_code"], 224, "{tx}");
    // Refused claims moved nothing.
    assert_eq!(w.state(&ch), (2, DEPOSIT, 0));
    // Accepted once; replayed: 229; an older voucher: 228.
    let tx = w.claim(&op, &ch, &good);
    assert_eq!(tx["exit_code"], 0, "{tx}");
    let tx = w.claim(&op, &ch, &good);
    assert_eq!(tx["exit_code"], 229, "{tx}");
    let tx = w.claim(&op, &ch, &voucher(&key, &ch, 1_000_000));
    assert_eq!(tx["exit_code"], 228, "{tx}");
    assert_eq!(w.state(&ch), (2, DEPOSIT, 2_000_000));
    // The refused claims bounced their value back to the operator.
    // Close by someone other than the client: 220.
    let r = w.send(
        &stranger,
        &ch,
        ChannelMessage::StartClose { query_id: 1 }
            .to_cell()
            .unwrap(),
        50_000_000,
        None,
    );
    assert_eq!(w.tx_at(&r, &ch, 0)["exit_code"], 220);
    // Finish before start: 222.
    let r = w.send(
        &client,
        &ch,
        ChannelMessage::FinishClose { query_id: 1 }
            .to_cell()
            .unwrap(),
        50_000_000,
        None,
    );
    assert_eq!(w.tx_at(&r, &ch, 0)["exit_code"], 222);
    // A second open of an open channel: 222.
    let r = w.send(
        &client,
        &ch,
        ChannelMessage::Open { query_id: 1 }.to_cell().unwrap(),
        TON,
        None,
    );
    assert_eq!(w.tx_at(&r, &ch, 0)["exit_code"], 222);
    // A forged registry answer from the client: 221 (the operator and
    // price come from the registry only).
    let forged = tonlib_core::cell::CellBuilder::new()
        .store_u32(32, channel::op::MACHINE_INFO)
        .unwrap()
        .store_u64(64, 0)
        .unwrap()
        .store_slice(&MachineId::of_key(&spki(1)).0)
        .unwrap()
        .store_bit(false)
        .unwrap()
        .build()
        .unwrap();
    let r = w.send(&client, &ch, forged, 50_000_000, None);
    assert_eq!(w.tx_at(&r, &ch, 0)["exit_code"], 221);
}

#[test]
fn channel_to_unknown_or_leaving_machine_refunds() {
    if !ton_available("channel_to_unknown_or_leaving_machine_refunds") {
        return;
    }
    let mut w = World::new();
    let key = VoucherKey::from_seed(&[9; 32]).unwrap();
    // Unknown machine: the registry answers no terms, the deposit returns.
    let (ch, r) = w.open(&w.params(77, 1, &key), DEPOSIT);
    let answer = w.tx_at(&r, &ch, 1);
    assert_eq!(answer["exit_code"], 0, "{r}");
    assert_eq!(answer["out"][0]["to"], addr(w.client.address()));
    assert_eq!(answer["out"][0]["op"], channel::op::REFUND);
    let refund: u64 = answer["out"][0]["value"].as_str().unwrap().parse().unwrap();
    assert!(refund > DEPOSIT, "refund {refund}");
    assert_eq!(w.state(&ch).0, 4);
    // A leaving machine: the same.
    let op = w.operator.clone();
    let reg = w.registry.clone();
    let r = w.send(
        &op,
        &reg,
        RegistryMessage::Unregister {
            query_id: 1,
            id: MachineId::of_key(&spki(2)),
        }
        .to_cell()
        .unwrap(),
        registry::MESSAGE_VALUE,
        None,
    );
    assert_eq!(w.tx_at(&r, &reg, 0)["exit_code"], 0);
    let (ch, _) = w.open(&w.params(2, 1, &key), DEPOSIT);
    assert_eq!(w.state(&ch).0, 4);
}
