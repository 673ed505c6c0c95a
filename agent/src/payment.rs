//! Pay-per-token through a TON payment channel.
//!
//! Enabled by the `payments` section of the runtime configuration (which
//! is measured, so a client sees the price and the rules in the evidence):
//!
//! ```json
//! "payments": {"required": true, "price_per_million": 2000000000,
//!              "unpaid_credit": 1000000, "max_in_flight_per_channel": 1}
//! ```
//!
//! (nanotons per million tokens; nanotons; requests). Each request names
//! its channel with the client's latest voucher in the `X-Chrysalis-Voucher`
//! header (`chrysalis_payments::voucher`; a first request sends a voucher
//! for 0). The agent checks the voucher's Ed25519 signature, pins the
//! channel to the first key it saw, keeps the highest voucher per channel
//! in memory, and refuses with 402 a request on a channel whose charged
//! total exceeds its best voucher by more than `unpaid_credit`. Every
//! completed response is charged at `price_per_million` and gets a receipt
//! signed with the connection's RA-TLS key (see [`crate::receipt`]). The
//! operator fetches the vouchers at `GET /v1/chrysalis/vouchers` to claim
//! them on chain (vouchers are signed by clients and are not secret).
//!
//! What the agent cannot see: the channel's deposit and state on chain
//! (the agent does not read the chain). A voucher above the deposit is
//! refused by the contract when the operator claims; `chrysalis ton
//! channel claim` reads the channel before claiming.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chrysalis_payments::receipt::sha256_hex;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::api_error::ApiError;
use crate::body::{early_answer, AgentBody, ConnActivity, Tracker};
use crate::forward;
use crate::identity::ServedIdentity;
use crate::ledger::payment_error;
pub use crate::ledger::{Ledger, PaymentSettings, Ticket, CONFIG_KEY, VOUCHER_HEADER};
use crate::receipt::{self, PaidStream};
use crate::receipt_key::ReceiptSigner;
use crate::route::Route;
use crate::shared::Shared;
use crate::usage::{UsageScanner, MAX_JSON_SCAN};

/// Response header carrying the receipt of a non-streamed answer.
pub const RECEIPT_HEADER: HeaderName = HeaderName::from_static("x-chrysalis-receipt");
/// Where the operator reads the latest vouchers.
pub const VOUCHERS_PATH: &str = "/v1/chrysalis/vouchers";

/// `GET /v1/chrysalis/vouchers`: `{"vouchers":[{"channel","amount",
/// "charged","receipts","voucher"}]}`; 404 when payments are off.
pub fn vouchers(shared: &Shared, tracker: Tracker) -> Response<AgentBody> {
    let Some(ledger) = &shared.payments else {
        let e = ApiError::not_found(VOUCHERS_PATH.len());
        tracker.complete(e.status.as_u16());
        return e.into_response();
    };
    tracker.complete(200);
    let mut r = Response::new(AgentBody::from(ledger.vouchers_json()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// For a streamed chat or completion request: asks the engine for the
/// final `usage` chunk (`stream_options.include_usage`), without which
/// the stream could not be charged. Other bodies are returned unchanged.
fn with_stream_usage(body: Bytes) -> Bytes {
    let Ok(serde_json::Value::Object(mut obj)) = serde_json::from_slice::<serde_json::Value>(&body)
    else {
        return body;
    };
    if obj.get("stream") != Some(&serde_json::Value::Bool(true)) {
        return body;
    }
    let opts = obj
        .entry("stream_options")
        .or_insert_with(|| serde_json::json!({}));
    let Some(opts) = opts.as_object_mut() else {
        return body;
    };
    if opts.get("include_usage") == Some(&serde_json::Value::Bool(true)) {
        return body;
    }
    opts.insert("include_usage".into(), serde_json::Value::Bool(true));
    serde_json::to_vec(&obj).map(Bytes::from).unwrap_or(body)
}

/// The receipt signer of the connection's identity.
fn signer_of(identity: Option<&Arc<ServedIdentity>>) -> Option<ReceiptSigner> {
    identity?.attestation.as_ref()?.receipt_signer()
}

/// [`forward::forward`] with payment: the voucher checked before the
/// engine sees the request, a receipt on every completed answer.
#[allow(clippy::too_many_arguments)]
pub async fn forward_paid(
    shared: &Shared,
    ledger: &Arc<Ledger>,
    identity: Option<&Arc<ServedIdentity>>,
    route: Route,
    mut tracker: Tracker,
    req: Request<Incoming>,
    start: Instant,
    conn: &ConnActivity,
) -> Response<AgentBody> {
    if let Err(e) = forward::admit(shared, &mut tracker) {
        return early_answer(tracker, e, req.into_body(), conn);
    }
    let Some(signer) = signer_of(identity) else {
        let e = payment_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "receipts_unavailable",
            "payments are on but this connection's certificate has no attested key to sign \
             receipts with"
                .into(),
        );
        return early_answer(tracker, e, req.into_body(), conn);
    };
    let limits = &shared.limits;
    let deadline = tokio::time::Instant::from_std(start) + limits.request_timeout;
    let mut timer: forward::Timer = Box::pin(tokio::time::sleep_until(deadline));
    let (mut parts, mut incoming) = req.into_parts();
    let body = match forward::read_body(limits, &parts, &mut incoming, &mut timer).await {
        Ok(b) => b,
        Err(e) => return early_answer(tracker, e, incoming, conn),
    };
    drop(incoming);
    if !route.counts_tokens() {
        // No tokens, no charge: a voucher sent along only settles.
        if let Some(h) = parts.headers.get(&VOUCHER_HEADER) {
            if let Err(e) = ledger.settle(h) {
                return forward::fail(tracker, e);
            }
        }
        parts.headers.remove(&VOUCHER_HEADER);
        let (resp, pooled) = match forward::send(shared, parts, body, &mut timer).await {
            Ok(x) => x,
            Err(e) => return forward::fail(tracker, e),
        };
        return forward::respond(limits, route, tracker, resp, pooled, timer);
    }
    let ticket = match ledger.admit(parts.headers.get(&VOUCHER_HEADER), sha256_hex(&body)) {
        Ok(t) => t,
        Err(e) => return forward::fail(tracker, e),
    };
    parts.headers.remove(&VOUCHER_HEADER);
    let Some(ticket) = ticket else {
        // Optional payment, none offered: served as usual, no receipt.
        let (resp, pooled) = match forward::send(shared, parts, body, &mut timer).await {
            Ok(x) => x,
            Err(e) => return forward::fail(tracker, e),
        };
        return forward::respond(limits, route, tracker, resp, pooled, timer);
    };
    let body = with_stream_usage(body);
    let (resp, pooled) = match forward::send(shared, parts, body, &mut timer).await {
        Ok(x) => x,
        Err(e) => return forward::fail(tracker, e),
    };
    let answer = forward::respond(limits, route, tracker, resp, pooled, timer);
    let status = answer.status();
    let (mut head, body) = answer.into_parts();
    let AgentBody::Proxy(proxy) = body else {
        return Response::from_parts(head, body);
    };
    if !status.is_success() {
        // Not charged: an error.
        return Response::from_parts(head, AgentBody::Proxy(proxy));
    }
    let content_type = head
        .headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if content_type.starts_with(b"text/event-stream") {
        let paid = PaidStream::new(proxy, ticket, signer);
        head.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(head, AgentBody::Boxed(paid.boxed_unsync()));
    }
    // A complete answer: read it (bounded), then the receipt in a header.
    let collected = Limited::new(proxy, MAX_JSON_SCAN).collect().await;
    let bytes = match collected {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            drop(ticket);
            let e =
                ApiError::upstream_failed(&format!("the engine's answer could not be read: {e}"));
            return e.into_response();
        }
    };
    let mut scanner = UsageScanner::json();
    scanner.feed(&bytes);
    let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&bytes).into();
    if let Some(r) = receipt::issue(&ticket, &signer, scanner.finish(), digest) {
        if let Ok(v) = HeaderValue::from_str(&r.encode()) {
            head.headers.insert(RECEIPT_HEADER, v);
        }
    }
    head.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(head, AgentBody::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_usage_is_requested() {
        let b = with_stream_usage(Bytes::from_static(br#"{"stream":true,"messages":[]}"#));
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        let plain = Bytes::from_static(br#"{"messages":[]}"#);
        assert_eq!(with_stream_usage(plain.clone()), plain);
    }
}
