//! The published test vectors (`tests/data/vectors.json`, also in the
//! README), round trips, and parsers that never panic on arbitrary input.

use chrysalis_payments::receipt::{sha256_hex, Receipt, SignedReceipt, SseReceiptScanner};
use chrysalis_payments::voucher::{SignedVoucher, Voucher, VoucherKey};
use chrysalis_payments::{Error, TonAddress};
use proptest::prelude::*;
use serde_json::Value;
use tonlib_core::tlb_types::tlb::TLB;

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/vectors.json")).unwrap()
}

fn seed(v: &Value) -> [u8; 32] {
    hex::decode(v.as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap()
}

#[test]
fn voucher_vector() {
    let j = &vectors()["voucher"];
    let key = VoucherKey::from_seed(&seed(&j["seed_hex"])).unwrap();
    assert_eq!(hex::encode(key.public_key()), j["public_key_hex"]);
    let channel: TonAddress = j["channel"].as_str().unwrap().parse().unwrap();
    let v = Voucher {
        channel,
        amount: j["amount"].as_u64().unwrap(),
    };
    let cell = v.to_cell().unwrap();
    assert_eq!(hex::encode(cell.to_boc(false).unwrap()), j["cell_boc_hex"]);
    assert_eq!(hex::encode(v.hash().unwrap()), j["cell_hash_hex"]);
    let sv = key.sign(&v).unwrap();
    assert_eq!(hex::encode(sv.signature), j["signature_hex"]);
    assert_eq!(sv.encode().unwrap(), j["header"]);
    let parsed = SignedVoucher::parse(j["header"].as_str().unwrap()).unwrap();
    assert_eq!(parsed, sv);
    parsed.verify().unwrap();
    // Any change breaks the signature.
    let mut t = parsed.clone();
    t.voucher.amount += 1;
    assert!(matches!(t.verify(), Err(Error::BadSignature { .. })));
    let mut t = parsed;
    t.signature[0] ^= 1;
    assert!(t.verify().is_err());
}

#[test]
fn receipt_vectors_both_key_types() {
    let j = &vectors()["receipt"];
    for kind in ["ed25519", "p256"] {
        let spki = hex::decode(j[kind]["spki_der_hex"].as_str().unwrap()).unwrap();
        let r = SignedReceipt::parse(j[kind]["encoded"].as_str().unwrap()).unwrap();
        r.verify(&spki).unwrap();
        assert_eq!(
            String::from_utf8(r.receipt.canonical().unwrap()).unwrap(),
            j["canonical_json"].as_str().unwrap()
        );
        assert_eq!(r.receipt.request_sha256, sha256_hex(b"request"));
        assert_eq!(r.receipt.response_sha256, sha256_hex(b"response"));
        // Verified against the other key: refused.
        let other = if kind == "p256" { "ed25519" } else { "p256" };
        let other_spki = hex::decode(j[other]["spki_der_hex"].as_str().unwrap()).unwrap();
        assert!(matches!(
            r.verify(&other_spki),
            Err(Error::BadSignature { .. })
        ));
    }
    // Ed25519 is deterministic: signing again gives the vector.
    let kp = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed(&j["ed25519"]["seed_hex"]))
        .unwrap();
    let r = SignedReceipt::parse(j["ed25519"]["encoded"].as_str().unwrap()).unwrap();
    let again = SignedReceipt::sign(r.receipt.clone(), |m| {
        Ok::<_, String>(kp.sign(m).as_ref().to_vec())
    })
    .unwrap();
    assert_eq!(again.encode(), j["ed25519"]["encoded"]);
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

#[test]
fn forged_and_non_canonical_receipts_are_refused() {
    let j = &vectors()["receipt"];
    let enc = j["ed25519"]["encoded"].as_str().unwrap();
    let spki = hex::decode(j["ed25519"]["spki_der_hex"].as_str().unwrap()).unwrap();
    let (_, sig) = enc.split_once('.').unwrap();
    let canonical = j["canonical_json"].as_str().unwrap();
    // The same receipt with a lower price: canonical, but the signature fails.
    let cheaper = canonical
        .replace("\"amount\":28000", "\"amount\":14000")
        .replace("2000000000", "1000000000");
    let forged = SignedReceipt::parse(&format!("{}.{sig}", b64(&cheaper))).unwrap();
    assert!(matches!(
        forged.verify(&spki),
        Err(Error::BadSignature { .. })
    ));
    // Whitespace, key order, unknown keys, a wrong amount: refused as malformed.
    for bad in [
        canonical.replace(",\"seq\"", ", \"seq\""),
        canonical.replace("{\"amount\":28000,\"channel\"", "{\"channel\""),
        canonical.replace("}", ",\"z\":1}"),
        canonical.replace("\"amount\":28000", "\"amount\":28001"),
        canonical.replace("\"seq\":2", "\"seq\":0"),
        canonical.replace(
            "\"v\":\"chrysalis-receipt/1\"",
            "\"v\":\"chrysalis-receipt/2\"",
        ),
    ] {
        let e = SignedReceipt::parse(&format!("{}.{sig}", b64(&bad))).unwrap_err();
        assert!(
            matches!(e, Error::Malformed { .. } | Error::Invalid { .. }),
            "{bad}: {e}"
        );
    }
    for bad in ["", ".", "x", "a.b.c", &format!("{enc}x!")] {
        assert!(SignedReceipt::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn sse_scanner_hashes_what_precedes_the_event_whatever_the_chunking() {
    let enc = vectors()["receipt"]["ed25519"]["encoded"]
        .as_str()
        .unwrap()
        .to_string();
    let before = "data: {\"choices\":[{\"delta\":{\"content\":\"event: chrysalis.receipt\"}}]}\n\nevent: other\ndata: x\n\n";
    let stream = format!("{before}event: chrysalis.receipt\ndata: {enc}\n\ndata: [DONE]\n\n");
    for split in [1, 2, 3, 7, 25, stream.len()] {
        let mut s = SseReceiptScanner::new();
        for c in stream.as_bytes().chunks(split) {
            s.feed(c).unwrap();
        }
        assert!(s.has_receipt());
        let (digest, r) = s.finish();
        assert_eq!(
            hex::encode(digest),
            sha256_hex(before.as_bytes()),
            "split {split}"
        );
        assert_eq!(r.as_deref(), Some(enc.as_str()));
    }
    // No event: everything is hashed, no receipt.
    let mut s = SseReceiptScanner::new();
    s.feed(before.as_bytes()).unwrap();
    let (digest, r) = s.finish();
    assert_eq!(hex::encode(digest), sha256_hex(before.as_bytes()));
    assert!(r.is_none());
    // An event line without data.
    let mut s = SseReceiptScanner::new();
    assert!(s.feed(b"event: chrysalis.receipt\n\n").is_err());
}

#[test]
fn receipt_amounts_must_match_tokens_and_price() {
    let r = Receipt {
        amount: 1,
        channel: format!("0:{}", "ab".repeat(32)),
        completion_tokens: 1,
        cumulative: 1,
        price_per_million: 1,
        prompt_tokens: 0,
        request_sha256: sha256_hex(b""),
        response_sha256: sha256_hex(b""),
        seq: 1,
        v: chrysalis_payments::receipt::RECEIPT_VERSION.into(),
    };
    r.check().unwrap();
    let mut over = r.clone();
    over.amount = 2;
    over.cumulative = 2;
    assert!(over.check().is_err());
    let mut below = r;
    below.cumulative = 0;
    assert!(below.check().is_err());
}

proptest! {
    #[test]
    fn receipt_parser_never_panics(s in ".{0,600}") {
        let _ = SignedReceipt::parse(&s);
    }

    #[test]
    fn voucher_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        use base64::Engine;
        let s = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let _ = SignedVoucher::parse(&s);
    }

    #[test]
    fn sse_scanner_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400), split in 1usize..50) {
        let mut s = SseReceiptScanner::new();
        for c in bytes.chunks(split) {
            if s.feed(c).is_err() { break; }
        }
        let _ = s.finish();
    }

    #[test]
    fn voucher_round_trip(amount in 0u64..(1u64 << 53), hash in any::<[u8; 32]>(), seed in any::<[u8; 32]>()) {
        let key = VoucherKey::from_seed(&seed).unwrap();
        let v = Voucher { channel: TonAddress::new(0, hash.into()), amount };
        let sv = key.sign(&v).unwrap();
        let back = SignedVoucher::parse(&sv.encode().unwrap()).unwrap();
        prop_assert_eq!(&back, &sv);
        back.verify().unwrap();
    }
}
