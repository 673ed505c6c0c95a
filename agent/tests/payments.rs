//! Payment through a channel at the agent: vouchers in, receipts out.
//! A simulated RA-TLS identity (the receipts are signed with its key, and
//! the client verifies them against the SPKI it attested), the stub engine.

mod common;

use std::sync::Arc;

use chrysalis_agent::config::{ProviderKind, TlsSettings};
use chrysalis_agent::identity::open_provider;
use chrysalis_agent::payment::PaymentSettings;
use chrysalis_agent::{Agent, IdentitySource, RaTlsManager};
use chrysalis_attestation::{Policy, Tee};
use chrysalis_payments::price::amount_due;
use chrysalis_payments::receipt::{sha256_hex, SignedReceipt, SseReceiptScanner};
use chrysalis_payments::voucher::{Voucher, VoucherKey};
use chrysalis_payments::TonAddress;
use chrysalis_ratls::VerifierConfig;
use common::*;
use http_body_util::BodyExt;

const PRICE: u64 = 2_000_000_000; // nanotons per million tokens
const CREDIT: u64 = 20_000;

fn manager() -> Arc<RaTlsManager> {
    let (provider, collateral) = open_provider(ProviderKind::Sim, Tee::Tdx, None).unwrap();
    Arc::new(RaTlsManager::new(
        provider,
        collateral,
        &TlsSettings::default(),
    ))
}

async fn paid_agent(stub: &Stub, required: bool) -> Agent {
    let mut c = test_config(stub.addr);
    c.payments = Some(PaymentSettings {
        required,
        price_per_million: PRICE,
        unpaid_credit: CREDIT,
        max_in_flight_per_channel: 1,
    });
    let agent = Agent::start(c, IdentitySource::RaTls(manager()))
        .await
        .unwrap();
    wait_ready(&agent).await;
    agent
}

type Send2 = hyper::client::conn::http2::SendRequest<ReqBody>;

fn voucher(key: &VoucherKey, ch: &TonAddress, amount: u64) -> String {
    key.sign(&Voucher {
        channel: ch.clone(),
        amount,
    })
    .unwrap()
    .encode()
    .unwrap()
}

async fn post(
    send: &mut Send2,
    path: &str,
    body: &str,
    voucher: Option<&str>,
) -> http::Response<hyper::body::Incoming> {
    let mut r = req("POST", path, body);
    if let Some(v) = voucher {
        r.headers_mut()
            .insert("x-chrysalis-voucher", v.parse().unwrap());
    }
    send.ready().await.unwrap();
    send.send_request(r).await.unwrap()
}

const CHAT: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
const CHAT_STREAM: &str =
    r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_verify_and_a_client_that_stops_paying_gets_402() {
    let stub = Stub::start().await;
    let agent = paid_agent(&stub, true).await;
    let cfg = Arc::new(VerifierConfig::new(Policy::default().allow_simulated(true)));
    let (mut send, spki) = ra_tls_client(agent.https_addr(), &cfg).await;
    let key = VoucherKey::from_seed(&[3; 32]).unwrap();
    let ch = TonAddress::new(0, [9u8; 32].into());

    // Without a voucher: 402, OpenAI-shaped.
    let r = post(&mut send, "/v1/chat/completions", CHAT, None).await;
    assert_eq!(r.status(), 402);
    assert_eq!(error_code(&text(r).await), "voucher_required");

    // A JSON answer: the receipt is in a header, signed by the attested key.
    let r = post(
        &mut send,
        "/v1/chat/completions",
        CHAT,
        Some(&voucher(&key, &ch, 0)),
    )
    .await;
    assert_eq!(r.status(), 200);
    let header = r.headers()["x-chrysalis-receipt"]
        .to_str()
        .unwrap()
        .to_string();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    let rc = SignedReceipt::parse(&header).unwrap();
    rc.verify(&spki).unwrap();
    let want = amount_due(3 + 5, PRICE).unwrap();
    assert_eq!(
        (
            rc.receipt.seq,
            rc.receipt.prompt_tokens,
            rc.receipt.completion_tokens
        ),
        (1, 3, 5)
    );
    assert_eq!((rc.receipt.amount, rc.receipt.cumulative), (want, want));
    assert_eq!(rc.receipt.price_per_million, PRICE);
    assert_eq!(rc.receipt.channel, ch.to_hex());
    assert_eq!(rc.receipt.request_sha256, sha256_hex(CHAT.as_bytes()));
    assert_eq!(rc.receipt.response_sha256, sha256_hex(&body));
    // A receipt checked against another key fails.
    use rcgen::PublicKeyData;
    let other = rcgen::KeyPair::generate().unwrap();
    assert!(rc.verify(&other.subject_public_key_info()).is_err());

    // The engine never sees the voucher; a stream asks it for usage.
    stub.clear_events();
    let r = post(
        &mut send,
        "/v1/chat/completions",
        CHAT_STREAM,
        Some(&voucher(&key, &ch, want)),
    )
    .await;
    let (_, _, headers, fwd) = stub.next_request().await;
    assert!(!headers.contains_key("x-chrysalis-voucher"));
    let fwd: serde_json::Value = serde_json::from_slice(&fwd).unwrap();
    assert_eq!(fwd["stream_options"]["include_usage"], true);
    assert_eq!(r.status(), 200);
    let raw = r.into_body().collect().await.unwrap().to_bytes();
    let mut sc = SseReceiptScanner::new();
    for piece in raw.chunks(7) {
        sc.feed(piece).unwrap();
    }
    let (digest, enc) = sc.finish();
    let rc = SignedReceipt::parse(&enc.expect("a receipt event")).unwrap();
    rc.verify(&spki).unwrap();
    let text_raw = String::from_utf8(raw.to_vec()).unwrap();
    assert!(text_raw.ends_with("data: [DONE]\n\n"), "{text_raw}");
    let before = &text_raw[..text_raw.find("event: chrysalis.receipt").unwrap()];
    assert_eq!(rc.receipt.response_sha256, sha256_hex(before.as_bytes()));
    assert_eq!(hex::encode(digest), rc.receipt.response_sha256);
    let amount2 = amount_due(11 + 3, PRICE).unwrap();
    assert_eq!(
        (rc.receipt.seq, rc.receipt.amount, rc.receipt.cumulative),
        (2, amount2, want + amount2)
    );

    // A client that stops paying: the voucher for `want` leaves amount2 owed.
    assert!(amount2 > CREDIT);
    let r = post(
        &mut send,
        "/v1/chat/completions",
        CHAT,
        Some(&voucher(&key, &ch, want)),
    )
    .await;
    assert_eq!(r.status(), 402);
    assert_eq!(error_code(&text(r).await), "payment_required");
    // Replaying an older voucher does not help either.
    let r = post(
        &mut send,
        "/v1/chat/completions",
        CHAT,
        Some(&voucher(&key, &ch, 0)),
    )
    .await;
    assert_eq!(r.status(), 402);
    // A forged voucher (another key for this channel) is refused.
    let forger = VoucherKey::from_seed(&[4; 32]).unwrap();
    let r = post(
        &mut send,
        "/v1/chat/completions",
        CHAT,
        Some(&voucher(&forger, &ch, 10 * want)),
    )
    .await;
    assert_eq!(r.status(), 402);
    assert_eq!(error_code(&text(r).await), "bad_voucher");
    // Paying up lets it through again.
    let r = post(
        &mut send,
        "/v1/chat/completions",
        CHAT,
        Some(&voucher(&key, &ch, want + amount2)),
    )
    .await;
    assert_eq!(r.status(), 200);
    let last = SignedReceipt::parse(r.headers()["x-chrysalis-receipt"].to_str().unwrap()).unwrap();
    drop(text(r).await);
    let total = last.receipt.cumulative;
    assert_eq!(total, 2 * want + amount2);
    // The last answer is paid with a voucher sent along a request that is
    // not charged (GET /v1/models needs no voucher, takes one).
    let mut m = req("GET", "/v1/models", "");
    m.headers_mut().insert(
        "x-chrysalis-voucher",
        voucher(&key, &ch, total).parse().unwrap(),
    );
    send.ready().await.unwrap();
    let r = send.send_request(m).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(!r.headers().contains_key("x-chrysalis-receipt"));
    drop(text(r).await);
    send.ready().await.unwrap();
    let r = send
        .send_request(req("GET", "/v1/models", ""))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(text(r).await);

    // The operator's endpoint serves the best voucher.
    send.ready().await.unwrap();
    let r = send
        .send_request(req("GET", "/v1/chrysalis/vouchers", ""))
        .await
        .unwrap();
    let j: serde_json::Value = serde_json::from_str(&text(r).await).unwrap();
    let v = &j["vouchers"][0];
    assert_eq!(v["channel"], ch.to_hex());
    assert_eq!(v["amount"], total);
    assert_eq!(v["charged"], total);
    let sv =
        chrysalis_payments::voucher::SignedVoucher::parse(v["voucher"].as_str().unwrap()).unwrap();
    sv.verify().unwrap();
    assert_eq!(sv.client_key, key.public_key());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_payment_serves_unpaid_requests_without_receipts() {
    let stub = Stub::start().await;
    let agent = paid_agent(&stub, false).await;
    let cfg = Arc::new(VerifierConfig::new(Policy::default().allow_simulated(true)));
    let (mut send, _) = ra_tls_client(agent.https_addr(), &cfg).await;
    let r = post(&mut send, "/v1/chat/completions", CHAT, None).await;
    assert_eq!(r.status(), 200);
    assert!(!r.headers().contains_key("x-chrysalis-receipt"));
    drop(text(r).await);
    // An engine error is not charged and has no receipt.
    let key = VoucherKey::from_seed(&[3; 32]).unwrap();
    let ch = TonAddress::new(0, [1u8; 32].into());
    let mut r = req("POST", "/v1/chat/completions", CHAT);
    r.headers_mut().insert(
        "x-chrysalis-voucher",
        voucher(&key, &ch, 0).parse().unwrap(),
    );
    r.headers_mut()
        .insert("x-stub-status", "500".parse().unwrap());
    send.ready().await.unwrap();
    let r = send.send_request(r).await.unwrap();
    assert_eq!(r.status(), 500);
    assert!(!r.headers().contains_key("x-chrysalis-receipt"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_abandoned_before_its_receipt_is_still_charged() {
    let stub = Stub::start().await;
    let agent = paid_agent(&stub, true).await;
    let cfg = Arc::new(VerifierConfig::new(Policy::default().allow_simulated(true)));
    let (mut send, _) = ra_tls_client(agent.https_addr(), &cfg).await;
    let key = VoucherKey::from_seed(&[5; 32]).unwrap();
    let ch = TonAddress::new(0, [7u8; 32].into());
    let mut r = req("POST", "/v1/chat/completions", CHAT_STREAM);
    r.headers_mut().insert(
        "x-chrysalis-voucher",
        voucher(&key, &ch, 0).parse().unwrap(),
    );
    r.headers_mut().insert("x-stub-gated", "1".parse().unwrap());
    send.ready().await.unwrap();
    let resp = send.send_request(r).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    stub.release(1);
    assert!(next_chunk(&mut body).await.unwrap().is_ok());
    // The client leaves before the end; the engine finishes the answer.
    drop(body);
    stub.release(2);
    let want = amount_due(11 + 3, PRICE).unwrap();
    let charged = within("the abandoned answer charged", async {
        loop {
            send.ready().await.unwrap();
            let r = send
                .send_request(req("GET", "/v1/chrysalis/vouchers", ""))
                .await
                .unwrap();
            let j: serde_json::Value = serde_json::from_str(&text(r).await).unwrap();
            let c = j["vouchers"][0]["charged"].as_u64().unwrap_or(0);
            if c > 0 {
                return c;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(charged, want);
    // Not paid: the next request on the channel is refused until it is.
    let r = post(
        &mut send,
        "/v1/chat/completions",
        CHAT,
        Some(&voucher(&key, &ch, 0)),
    )
    .await;
    assert_eq!(r.status(), 402);
    assert_eq!(error_code(&text(r).await), "payment_required");
}
