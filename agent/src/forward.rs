//! Forwarding one API request to the engine, in four steps:
//!
//! 1. `admit`: the GPU gate and a concurrency permit;
//! 2. `read_body`: the request body read completely (bounded by
//!    `max_body_bytes` and the request timeout) and checked to be JSON, so
//!    an oversized or malformed body is answered here and never half-sent
//!    to the engine;
//! 3. `send`: the request, hop-by-hop headers stripped, sent on a pooled
//!    engine connection;
//! 4. `respond`: the engine's response head passed on and its body
//!    streamed through ([`ProxyBody`]), never buffered.
//!
//! Each step answers a failure with its OpenAI-shaped error, sent with
//! [`early_answer`] when the request body was not read to its end (so it
//! reaches the client on both protocols); nothing of a request or response
//! body reaches a log line or a metric label. The query string is not
//! forwarded: the OpenAI API defines none on these routes.

use std::pin::Pin;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tokio::time::Sleep;

use crate::api_error::ApiError;
use crate::body::{early_answer, AgentBody, ConnActivity, ProxyBody, Tracker};
use crate::config::Limits;
use crate::metrics::UpstreamErrorKind;
use crate::readiness::{Input, InputState};
use crate::route::Route;
use crate::shared::Shared;
use crate::upstream::{strip_hop_by_hop, Pooled, UpstreamError};
use crate::usage::UsageScanner;

/// The request's one timer: upload, engine and the response stream.
pub(crate) type Timer = Pin<Box<Sleep>>;

/// Forwards `req` on `route` to the engine and answers with the engine's
/// response (or the agent's error).
pub async fn forward(
    shared: &Shared,
    route: Route,
    mut tracker: Tracker,
    req: Request<Incoming>,
    start: Instant,
    conn: &ConnActivity,
) -> Response<AgentBody> {
    if let Err(e) = admit(shared, &mut tracker) {
        return early_answer(tracker, e, req.into_body(), conn);
    }
    let limits = &shared.limits;
    let deadline = tokio::time::Instant::from_std(start) + limits.request_timeout;
    let mut timer: Timer = Box::pin(tokio::time::sleep_until(deadline));
    let (parts, mut incoming) = req.into_parts();
    let body = match read_body(limits, &parts, &mut incoming, &mut timer).await {
        Ok(b) => b,
        // The unread rest of the body stays until the answer is out.
        Err(e) => return early_answer(tracker, e, incoming, conn),
    };
    drop(incoming);
    let (resp, conn) = match send(shared, parts, body, &mut timer).await {
        Ok(x) => x,
        Err(e) => return fail(tracker, e),
    };
    respond(limits, route, tracker, resp, conn, timer)
}

pub(crate) fn fail(tracker: Tracker, e: ApiError) -> Response<AgentBody> {
    tracker.complete(e.status.as_u16());
    e.into_response()
}

/// Step 1: the GPU gate, then a concurrency permit held by `tracker`
/// until the request ends.
pub(crate) fn admit(shared: &Shared, tracker: &mut Tracker) -> Result<(), ApiError> {
    if let Some(why) = &shared.gpu_refusal {
        // The GPU did not prove it is in confidential-computing mode: a
        // prompt must not reach it.
        return Err(ApiError::gpu_not_attested(why));
    }
    let limits = &shared.limits;
    let Ok(permit) = shared.permits.clone().try_acquire_owned() else {
        return Err(ApiError::overloaded(
            limits.max_concurrent_requests,
            limits.retry_after_secs,
        ));
    };
    tracker.hold(permit);
    Ok(())
}

/// Step 2: the whole body, within `max_body_bytes` (an announced length
/// beyond is refused before reading) and the request timeout; a POST body
/// must be JSON.
pub(crate) async fn read_body(
    limits: &Limits,
    parts: &Parts,
    body: &mut Incoming,
    timer: &mut Timer,
) -> Result<Bytes, ApiError> {
    if let Some(len) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limits.max_body_bytes as u64 {
            return Err(ApiError::body_too_large(limits.max_body_bytes));
        }
    }
    let collected = tokio::select! {
        c = Limited::new(body, limits.max_body_bytes).collect() => c,
        _ = timer => return Err(ApiError::request_timeout(limits.request_timeout.as_millis())),
    };
    let body = match collected {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::body_too_large(limits.max_body_bytes))
        }
        Err(e) => {
            return Err(ApiError::malformed(format!(
                "the request body could not be read: {e}"
            )))
        }
    };
    // The OpenAI API takes JSON bodies: a body that is not JSON is refused
    // here, with serde's position (never the text itself, which may hold
    // the prompt), instead of reaching the engine. Skipping the values
    // (IgnoredAny) checks the syntax without building anything.
    if parts.method == Method::POST {
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
            return Err(ApiError::malformed(format!(
                "the request body is not valid JSON ({} at line {} column {})",
                json_error_kind(&e),
                e.line(),
                e.column()
            )));
        }
    }
    Ok(body)
}

/// What kind of JSON error, without serde's message (which can quote input).
fn json_error_kind(e: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof => "unexpected end of input",
        Category::Syntax => "syntax error",
        Category::Data => "invalid value",
        Category::Io => "read error",
    }
}

/// Step 3: the request to the engine on a pooled connection, within the
/// request timeout. A failed connect marks the engine not ready and wakes
/// its probe.
pub(crate) async fn send(
    shared: &Shared,
    mut parts: Parts,
    body: Bytes,
    timer: &mut Timer,
) -> Result<(Response<Incoming>, Pooled), ApiError> {
    // The OpenAI API defines no query parameters on the forwarded routes:
    // a query string is not passed on (its path is, unchanged).
    let pq = match parts.uri.path_and_query() {
        Some(pq) if pq.query().is_none() => pq.clone(),
        Some(pq) => {
            PathAndQuery::try_from(pq.path()).unwrap_or_else(|_| PathAndQuery::from_static("/"))
        }
        None => PathAndQuery::from_static("/"),
    };
    strip_hop_by_hop(&mut parts.headers);
    // The body is complete: its length is re-derived, and a 100-continue
    // expectation was already met towards the client.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::EXPECT);
    let up = shared.upstream_request(parts.method, pq, parts.headers, body);

    let sent = tokio::select! {
        r = shared.pool.send(up) => r,
        _ = timer => {
            shared.metrics.upstream_error(UpstreamErrorKind::Timeout);
            return Err(ApiError::upstream_timeout(shared.limits.request_timeout.as_millis()));
        }
    };
    match sent {
        Ok(r) => Ok(r),
        Err(UpstreamError::Connect(detail)) => {
            shared.metrics.upstream_error(UpstreamErrorKind::Connect);
            shared.readiness.set(
                Input::Engine,
                InputState::Failed,
                format!("connecting to {} failed", shared.upstream.base_url()),
            );
            shared.engine_wake.notify_one();
            tracing::warn!(upstream = %shared.upstream.authority, "engine connect failed: {detail}");
            Err(ApiError::upstream_unavailable(&detail))
        }
        Err(UpstreamError::Response(detail)) => {
            shared.metrics.upstream_error(UpstreamErrorKind::Response);
            tracing::warn!(upstream = %shared.upstream.authority, "engine request failed: {detail}");
            Err(ApiError::upstream_failed(&detail))
        }
    }
}

/// Step 4: the engine's status and headers (hop-by-hop ones stripped;
/// event streams marked not to be buffered), and its body streamed
/// through, counting `usage` where the route has it.
pub(crate) fn respond(
    limits: &Limits,
    route: Route,
    mut tracker: Tracker,
    resp: Response<Incoming>,
    conn: Pooled,
    timer: Timer,
) -> Response<AgentBody> {
    let (mut rparts, incoming) = resp.into_parts();
    strip_hop_by_hop(&mut rparts.headers);
    let status = rparts.status;
    let content_type = rparts
        .headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let is_sse = content_type.starts_with(b"text/event-stream");
    let scanner = if !route.counts_tokens() || !status.is_success() {
        UsageScanner::Off
    } else if is_sse {
        UsageScanner::sse()
    } else if content_type.starts_with(b"application/json") {
        UsageScanner::json()
    } else {
        UsageScanner::Off
    };
    let sse_errors = is_sse && !rparts.headers.contains_key(header::CONTENT_LENGTH);
    if is_sse {
        // Ask intermediaries not to buffer the stream.
        rparts
            .headers
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        rparts.headers.insert(
            http::header::HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        );
    }
    tracker.responded(status.as_u16());
    let body = ProxyBody::new(
        incoming,
        conn,
        scanner,
        sse_errors,
        timer,
        limits.request_timeout,
        tracker,
    );
    let mut r = Response::new(AgentBody::Proxy(body));
    *r.status_mut() = status;
    *r.headers_mut() = rparts.headers;
    r
}
