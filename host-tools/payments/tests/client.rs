//! The paying client's checks: a receipt is paid only when every check
//! passes; forged, overcharging and mismatched receipts are refused with
//! their own error, and the channel file is private and updated atomically.

use chrysalis_payments::client::{ChannelFile, PaidAnswer, FILE_VERSION};
use chrysalis_payments::price::amount_due;
use chrysalis_payments::receipt::{sha256_hex, Receipt, SignedReceipt, RECEIPT_VERSION};
use chrysalis_payments::voucher::SignedVoucher;
use chrysalis_payments::Error;
use ring::signature::{Ed25519KeyPair, KeyPair};
use sha2::{Digest, Sha256};

const PRICE: u64 = 1_000_000_000;
const CHANNEL: &str = "0:2222222222222222222222222222222222222222222222222222222222222222";

struct Agent {
    kp: Ed25519KeyPair,
    spki: Vec<u8>,
}

fn agent(seed: u8) -> Agent {
    let kp = Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap();
    let mut spki = hex::decode("302a300506032b6570032100").unwrap();
    spki.extend_from_slice(kp.public_key().as_ref());
    Agent { kp, spki }
}

fn file(a: &Agent) -> ChannelFile {
    ChannelFile {
        version: FILE_VERSION,
        channel: CHANNEL.into(),
        registry: "registry".into(),
        client: "client".into(),
        nonce: 1,
        machine_id: "00".repeat(32),
        voucher_seed: "05".repeat(32),
        operator: "operator".into(),
        price_per_million: PRICE,
        key_hash: hex::encode(Sha256::digest(&a.spki)),
        deposit: 1_000_000,
        paid: 0,
        charged: 0,
        seq: 0,
    }
}

fn receipt(
    seq: u64,
    prev: u64,
    tokens: (u64, u64),
    price: u64,
    request: &[u8],
    response: &[u8],
) -> Receipt {
    let amount = amount_due(tokens.0 + tokens.1, price).unwrap();
    Receipt {
        amount,
        channel: CHANNEL.into(),
        completion_tokens: tokens.1,
        cumulative: prev + amount,
        price_per_million: price,
        prompt_tokens: tokens.0,
        request_sha256: sha256_hex(request),
        response_sha256: sha256_hex(response),
        seq,
        v: RECEIPT_VERSION.into(),
    }
}

fn sign(a: &Agent, r: Receipt) -> String {
    SignedReceipt::sign(r, |m| Ok::<_, String>(a.kp.sign(m).as_ref().to_vec()))
        .unwrap()
        .encode()
}

#[test]
fn an_honest_receipt_is_paid_and_recorded() {
    let a = agent(1);
    let mut f = file(&a);
    let enc = sign(&a, receipt(1, 0, (7, 5), PRICE, b"req", b"resp"));
    let r = f
        .accept_receipt(&a.spki, &enc, b"req", &sha256_hex(b"resp"), Some((7, 5)))
        .unwrap();
    assert_eq!((f.seq, f.charged), (1, 12_000));
    assert_eq!(r.receipt.amount, 12_000);
    // The next voucher pays exactly that.
    let v = SignedVoucher::parse(&f.next_voucher().unwrap()).unwrap();
    v.verify().unwrap();
    assert_eq!(v.voucher.amount, 12_000);
    assert_eq!(f.paid, 12_000);
    // A lower price than the channel's is fine.
    let enc = sign(&a, receipt(2, 12_000, (1, 1), PRICE / 2, b"r2", b"s2"));
    f.accept_receipt(&a.spki, &enc, b"r2", &sha256_hex(b"s2"), Some((1, 1)))
        .unwrap();
    assert_eq!((f.seq, f.charged), (2, 13_000));
}

#[test]
fn forged_overcharging_and_mismatched_receipts_are_refused() {
    let a = agent(1);
    let forger = agent(2);
    let resp = sha256_hex(b"resp");
    type Case = (&'static str, String, Option<(u64, u64)>, fn(&Error) -> bool);
    let cases: Vec<Case> = vec![
        (
            "signed by another key",
            sign(&forger, receipt(1, 0, (7, 5), PRICE, b"req", b"resp")),
            Some((7, 5)),
            |e| matches!(e, Error::BadSignature { .. }),
        ),
        (
            "above the channel's price",
            sign(&a, receipt(1, 0, (7, 5), 2 * PRICE, b"req", b"resp")),
            Some((7, 5)),
            |e| matches!(e, Error::Overcharge(_)),
        ),
        (
            "more tokens than reported",
            sign(&a, receipt(1, 0, (7, 9), PRICE, b"req", b"resp")),
            Some((7, 5)),
            |e| matches!(e, Error::Overcharge(_)),
        ),
        (
            "another request",
            sign(&a, receipt(1, 0, (7, 5), PRICE, b"other", b"resp")),
            Some((7, 5)),
            |e| matches!(e, Error::Refused(_)),
        ),
        (
            "other response bytes",
            sign(&a, receipt(1, 0, (7, 5), PRICE, b"req", b"other")),
            Some((7, 5)),
            |e| matches!(e, Error::Refused(_)),
        ),
        (
            "a skipped sequence number",
            sign(&a, receipt(2, 0, (7, 5), PRICE, b"req", b"resp")),
            Some((7, 5)),
            |e| matches!(e, Error::Refused(_)),
        ),
        (
            "a cumulative that does not add up",
            sign(&a, receipt(1, 5, (7, 5), PRICE, b"req", b"resp")),
            Some((7, 5)),
            |e| matches!(e, Error::Overcharge(_)),
        ),
    ];
    for (what, enc, usage, want) in cases {
        let mut f = file(&a);
        let before = f.clone();
        let e = f
            .accept_receipt(&a.spki, &enc, b"req", &resp, usage)
            .unwrap_err();
        assert!(want(&e), "{what}: {e}");
        assert_eq!(f, before, "{what}: nothing recorded");
    }
    // Another channel.
    let mut r = receipt(1, 0, (7, 5), PRICE, b"req", b"resp");
    r.channel = format!("0:{}", "33".repeat(32));
    let mut f = file(&a);
    let e = f
        .accept_receipt(&a.spki, &sign(&a, r), b"req", &resp, None)
        .unwrap_err();
    assert!(matches!(e, Error::Refused(_)), "{e}");
    // A connection to another machine's key.
    let e = f.check_key(&forger.spki).unwrap_err();
    assert!(matches!(e, Error::Channel(_)), "{e}");
    // Beyond the deposit.
    let mut f = file(&a);
    f.deposit = 10;
    let e = f
        .accept_receipt(
            &a.spki,
            &sign(&a, receipt(1, 0, (7, 5), PRICE, b"req", b"resp")),
            b"req",
            &resp,
            None,
        )
        .unwrap_err();
    assert!(matches!(e, Error::Overcharge(_)), "{e}");
}

#[test]
fn paid_answer_reads_streams_and_json() {
    let a = agent(1);
    let before = "data: {\"choices\":[]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":5}}\n\n";
    let enc = sign(&a, receipt(1, 0, (7, 5), PRICE, b"req", before.as_bytes()));
    let stream = format!("{before}event: chrysalis.receipt\ndata: {enc}\n\ndata: [DONE]\n\n");
    let mut p = PaidAnswer::new();
    for c in stream.as_bytes().chunks(5) {
        p.feed(c).unwrap();
    }
    let got = p.finish(None).unwrap();
    assert_eq!(got.receipt, enc);
    assert_eq!(got.usage, Some((7, 5)));
    let mut f = file(&a);
    f.accept_receipt(
        &a.spki,
        &got.receipt,
        b"req",
        &got.response_sha256,
        got.usage,
    )
    .unwrap();
    // A JSON answer: the receipt comes in the header; the hash is the body's.
    let body = br#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}"#;
    let mut p = PaidAnswer::new();
    p.feed(body).unwrap();
    let got = p.finish(Some("hdr")).unwrap();
    assert_eq!(got.response_sha256, sha256_hex(body));
    assert_eq!(got.usage, Some((3, 2)));
    // A stream without a receipt.
    let mut p = PaidAnswer::new();
    p.feed(before.as_bytes()).unwrap();
    assert!(matches!(p.finish(None), Err(Error::Refused(_))));
}

#[test]
fn channel_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let a = agent(1);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.channel");
    let f = file(&a);
    f.save(&p, true).unwrap();
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(ChannelFile::load(&p).unwrap(), f);
    assert!(matches!(f.save(&p, true), Err(Error::Io { .. })));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(ChannelFile::load(&p), Err(Error::Io { .. })));
}
