//! What a receipt and a voucher add to one request, per side:
//!
//! * agent: parse and verify the request's voucher (Ed25519), then build,
//!   sign (ECDSA P-256, the RA-TLS key type) and encode the receipt;
//! * client: sign and encode the next voucher, then parse and verify the
//!   receipt (P-256) and hash a 4 KiB streamed answer with the SSE scanner.
//!
//! `cargo bench -p chrysalis-payments --bench payments`

use chrysalis_payments::receipt::{
    sha256_hex, Receipt, SignedReceipt, SseReceiptScanner, RECEIPT_VERSION,
};
use chrysalis_payments::voucher::{SignedVoucher, Voucher, VoucherKey};
use chrysalis_payments::TonAddress;
use criterion::{criterion_group, criterion_main, Criterion};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use std::hint::black_box;

fn receipt() -> Receipt {
    Receipt {
        amount: 12_000,
        channel: format!("0:{}", "22".repeat(32)),
        completion_tokens: 5,
        cumulative: 120_000,
        price_per_million: 1_000_000_000,
        prompt_tokens: 7,
        request_sha256: sha256_hex(b"request"),
        response_sha256: sha256_hex(b"response"),
        seq: 10,
        v: RECEIPT_VERSION.into(),
    }
}

fn bench(c: &mut Criterion) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let kp =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    // SPKI DER of the P-256 key: the fixed prefix and the SEC1 point.
    let mut spki = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
    spki.extend_from_slice(kp.public_key().as_ref());
    let key = VoucherKey::from_seed(&[7; 32]).unwrap();
    let channel = TonAddress::new(0, [0x22; 32].into());
    let voucher = key
        .sign(&Voucher {
            channel: channel.clone(),
            amount: 108_000,
        })
        .unwrap()
        .encode()
        .unwrap();
    let signed = SignedReceipt::sign(receipt(), |m| {
        kp.sign(&rng, m)
            .map(|s| s.as_ref().to_vec())
            .map_err(|e| e.to_string())
    })
    .unwrap()
    .encode();
    let stream: Vec<u8> = {
        let mut s = Vec::new();
        while s.len() < 4096 {
            s.extend_from_slice(b"data: {\"choices\":[{\"delta\":{\"content\":\"token \"}}]}\n\n");
        }
        s.extend_from_slice(
            format!("event: chrysalis.receipt\ndata: {signed}\n\ndata: [DONE]\n\n").as_bytes(),
        );
        s
    };

    let mut g = c.benchmark_group("per request");
    g.bench_function("agent: voucher parse + verify", |b| {
        b.iter(|| {
            let v = SignedVoucher::parse(black_box(&voucher)).unwrap();
            v.verify().unwrap();
            v
        })
    });
    g.bench_function("agent: receipt sign (P-256) + encode", |b| {
        b.iter(|| {
            SignedReceipt::sign(black_box(receipt()), |m| {
                kp.sign(&rng, m)
                    .map(|s| s.as_ref().to_vec())
                    .map_err(|e| e.to_string())
            })
            .unwrap()
            .encode()
        })
    });
    g.bench_function("client: voucher sign + encode", |b| {
        b.iter(|| {
            key.sign(&Voucher {
                channel: channel.clone(),
                amount: black_box(120_000),
            })
            .unwrap()
            .encode()
            .unwrap()
        })
    });
    g.bench_function("client: receipt parse + verify (P-256)", |b| {
        b.iter(|| {
            let r = SignedReceipt::parse(black_box(&signed)).unwrap();
            r.verify(&spki).unwrap();
            r
        })
    });
    g.bench_function("client: scan + hash a 4 KiB stream", |b| {
        b.iter(|| {
            let mut s = SseReceiptScanner::new();
            for c in black_box(&stream).chunks(512) {
                s.feed(c).unwrap();
            }
            s.finish()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
