//! Request handling: routing, limits, forwarding to the engine, the
//! attestation, health and readiness endpoints.
//!
//! Request bodies are read completely (bounded by `max_body_bytes`) before
//! they are forwarded, so an oversized body is answered with 413 and never
//! half-sent to the engine. Response bodies are never buffered (see
//! [`crate::body`]). Nothing of a request or response body reaches a log
//! line or a metric label.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::sync::Semaphore;

use crate::api_error::ApiError;
use crate::body::{AgentBody, ConnActivity, ProxyBody, Tracker};
use crate::config::{Limits, Upstream};
use crate::identity::ServedIdentity;
use crate::metrics::{Metrics, UpstreamErrorKind};
use crate::readiness::{Input, InputState, Readiness};
use crate::upstream::{strip_hop_by_hop, UpstreamError, UpstreamPool};
use crate::usage::UsageScanner;

/// The routes; their names are the `route` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /v1/chat/completions`
    ChatCompletions,
    /// `POST /v1/completions`
    Completions,
    /// `POST /v1/embeddings`
    Embeddings,
    /// `GET /v1/models`, `GET /v1/models/{id}`
    Models,
    /// `GET /attestation?nonce=HEX`
    Attestation,
    /// `GET /healthz`
    Healthz,
    /// `GET /readyz`
    Readyz,
    /// `GET /metrics` (metrics listener only)
    Metrics,
    /// Anything else.
    Other,
}

impl Route {
    /// Classifies a path.
    pub fn of(path: &str) -> Self {
        match path {
            "/v1/chat/completions" => Self::ChatCompletions,
            "/v1/completions" => Self::Completions,
            "/v1/embeddings" => Self::Embeddings,
            "/v1/models" => Self::Models,
            "/attestation" => Self::Attestation,
            "/healthz" => Self::Healthz,
            "/readyz" => Self::Readyz,
            "/metrics" => Self::Metrics,
            p if p.starts_with("/v1/models/") && p.len() > "/v1/models/".len() => Self::Models,
            _ => Self::Other,
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat_completions",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
            Self::Models => "models",
            Self::Attestation => "attestation",
            Self::Healthz => "healthz",
            Self::Readyz => "readyz",
            Self::Metrics => "metrics",
            Self::Other => "other",
        }
    }

    fn allowed(self) -> &'static str {
        match self {
            Self::ChatCompletions | Self::Completions | Self::Embeddings => "POST",
            _ => "GET, HEAD",
        }
    }

    fn accepts(self, m: &Method) -> bool {
        match self {
            Self::ChatCompletions | Self::Completions | Self::Embeddings => m == Method::POST,
            _ => m == Method::GET || m == Method::HEAD,
        }
    }

    /// Answers whose `usage` is counted.
    fn counts_tokens(self) -> bool {
        matches!(
            self,
            Self::ChatCompletions | Self::Completions | Self::Embeddings
        )
    }
}

/// State shared by every request.
pub struct Shared {
    /// Limits.
    pub limits: Limits,
    /// The engine.
    pub upstream: Upstream,
    upstream_host: HeaderValue,
    /// Connections to the engine.
    pub pool: Arc<UpstreamPool>,
    /// Concurrency permits (`max_concurrent_requests`).
    pub permits: Arc<Semaphore>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Readiness.
    pub readiness: Arc<Readiness>,
    /// Wakes the engine probe early (a request could not connect).
    pub engine_wake: tokio::sync::Notify,
    /// Why the GPU check failed, when it did: then nothing is forwarded.
    pub gpu_refusal: Option<String>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("upstream", &self.upstream)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Shared state for `limits` and `upstream`.
    pub fn new(
        limits: Limits,
        upstream: Upstream,
        metrics: Arc<Metrics>,
        readiness: Arc<Readiness>,
        workers: usize,
    ) -> Self {
        let upstream_host =
            HeaderValue::from_str(&upstream.authority).expect("a socket address is a valid header");
        Self {
            pool: Arc::new(UpstreamPool::new(
                upstream.addr,
                limits.upstream_connect_timeout,
                workers,
            )),
            permits: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
            limits,
            upstream,
            upstream_host,
            metrics,
            readiness,
            engine_wake: tokio::sync::Notify::new(),
            gpu_refusal: None,
        }
    }

    /// A request to the engine: origin-form target, `Host` naming the
    /// engine, HTTP/1.1.
    pub fn upstream_request(
        &self,
        method: Method,
        pq: PathAndQuery,
        mut headers: http::HeaderMap,
        body: Bytes,
    ) -> Request<Full<Bytes>> {
        headers.insert(header::HOST, self.upstream_host.clone());
        let mut up = Request::new(Full::new(body));
        *up.method_mut() = method;
        *up.uri_mut() = Uri::from(pq);
        *up.version_mut() = Version::HTTP_11;
        *up.headers_mut() = headers;
        up
    }
}

/// What a connection carries into each of its requests.
#[derive(Debug)]
pub struct ConnCtx {
    /// The identity its handshake used (`None` on the metrics listener).
    pub identity: Option<Arc<ServedIdentity>>,
    /// Requests running on it.
    pub activity: Arc<ConnActivity>,
}

fn json_response(status: StatusCode, body: String) -> Response<AgentBody> {
    let mut r = Response::new(AgentBody::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error_response(tracker: Tracker, e: ApiError) -> Response<AgentBody> {
    tracker.complete(e.status.as_u16());
    e.into_response()
}

/// Handles one request on the HTTPS listener.
pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnCtx>,
    req: Request<Incoming>,
) -> Result<Response<AgentBody>, Infallible> {
    let start = Instant::now();
    let route = Route::of(req.uri().path());
    let tracker = Tracker::new(
        shared.metrics.clone(),
        route.label(),
        start,
        conn.activity.begin(),
    );
    if route == Route::Other || route == Route::Metrics {
        let e = ApiError::not_found(req.uri().path().len());
        return Ok(error_response(tracker, e));
    }
    if !route.accepts(req.method()) {
        return Ok(error_response(
            tracker,
            ApiError::method_not_allowed(route.allowed()),
        ));
    }
    Ok(match route {
        Route::Healthz => health(tracker),
        Route::Readyz => ready(tracker, &shared.readiness),
        Route::Attestation => attestation(&shared, &conn, tracker, &req).await,
        _ => forward(&shared, route, tracker, req, start).await,
    })
}

/// Handles one request on the metrics listener: `/metrics`, `/healthz`,
/// `/readyz`.
pub async fn handle_metrics(
    shared: Arc<Shared>,
    conn: Arc<ConnCtx>,
    req: Request<Incoming>,
) -> Result<Response<AgentBody>, Infallible> {
    let route = Route::of(req.uri().path());
    let tracker = Tracker::new(
        shared.metrics.clone(),
        route.label(),
        Instant::now(),
        conn.activity.begin(),
    );
    if !matches!(route, Route::Metrics | Route::Healthz | Route::Readyz) {
        let e = ApiError::not_found(req.uri().path().len());
        return Ok(error_response(tracker, e));
    }
    if !route.accepts(req.method()) {
        return Ok(error_response(
            tracker,
            ApiError::method_not_allowed(route.allowed()),
        ));
    }
    Ok(match route {
        Route::Healthz => health(tracker),
        Route::Readyz => ready(tracker, &shared.readiness),
        _ => {
            tracker.complete(200);
            let mut r = Response::new(AgentBody::from(shared.metrics.encode()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
    })
}

fn health(tracker: Tracker) -> Response<AgentBody> {
    tracker.complete(200);
    json_response(StatusCode::OK, String::from("{\"status\":\"ok\"}"))
}

fn ready(tracker: Tracker, readiness: &Readiness) -> Response<AgentBody> {
    let report = readiness.report();
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    tracker.complete(status.as_u16());
    let body = serde_json::to_string(&report).unwrap_or_default();
    json_response(status, body)
}

async fn attestation(
    shared: &Shared,
    conn: &ConnCtx,
    mut tracker: Tracker,
    req: &Request<Incoming>,
) -> Response<AgentBody> {
    let nonce = match chrysalis_ratls::parse_nonce_query(req.uri().query().unwrap_or("")) {
        Ok(n) => n,
        Err(e) => return error_response(tracker, ApiError::bad_nonce(e.to_string())),
    };
    let Some(source) = conn.identity.as_ref().and_then(|i| i.attestation.clone()) else {
        return error_response(
            tracker,
            ApiError::attestation_unavailable(
                "this connection's certificate carries no evidence provider",
            ),
        );
    };
    // Evidence generation asks the TEE: it counts against the same
    // concurrency limit as inference.
    let Ok(permit) = shared.permits.clone().try_acquire_owned() else {
        let e = ApiError::overloaded(
            shared.limits.max_concurrent_requests,
            shared.limits.retry_after_secs,
        );
        return error_response(tracker, e);
    };
    tracker.hold(permit);
    match tokio::task::spawn_blocking(move || source.fresh_evidence_json(&nonce)).await {
        Ok(Ok(json)) => {
            tracker.complete(200);
            json_response(StatusCode::OK, json)
        }
        Ok(Err(why)) => {
            tracing::error!("fresh evidence failed: {why}");
            error_response(tracker, ApiError::attestation_failed(why))
        }
        Err(e) => error_response(
            tracker,
            ApiError::attestation_failed(format!("evidence task failed: {e}")),
        ),
    }
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

async fn forward(
    shared: &Shared,
    route: Route,
    mut tracker: Tracker,
    req: Request<Incoming>,
    start: Instant,
) -> Response<AgentBody> {
    let limits = &shared.limits;
    if let Some(why) = &shared.gpu_refusal {
        // The GPU did not prove it is in confidential-computing mode: a
        // prompt must not reach it.
        return error_response(tracker, ApiError::gpu_not_attested(why));
    }
    let Ok(permit) = shared.permits.clone().try_acquire_owned() else {
        let e = ApiError::overloaded(limits.max_concurrent_requests, limits.retry_after_secs);
        return error_response(tracker, e);
    };
    tracker.hold(permit);
    let deadline = tokio::time::Instant::from_std(start) + limits.request_timeout;
    // One timer for the whole request (upload, engine, response stream).
    let mut timer = Box::pin(tokio::time::sleep_until(deadline));

    let (mut parts, body) = req.into_parts();
    if let Some(len) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limits.max_body_bytes as u64 {
            return error_response(tracker, ApiError::body_too_large(limits.max_body_bytes));
        }
    }
    let collected = tokio::select! {
        c = Limited::new(body, limits.max_body_bytes).collect() => Ok(c),
        _ = &mut timer => Err(()),
    };
    let body = match collected {
        Err(()) => {
            return error_response(
                tracker,
                ApiError::request_timeout(limits.request_timeout.as_millis()),
            )
        }
        Ok(Err(e)) => {
            let e = if e.is::<http_body_util::LengthLimitError>() {
                ApiError::body_too_large(limits.max_body_bytes)
            } else {
                ApiError::malformed(format!("the request body could not be read: {e}"))
            };
            return error_response(tracker, e);
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    // The OpenAI API takes JSON bodies: a body that is not JSON is refused
    // here, with serde's position (never the text itself, which may hold
    // the prompt), instead of reaching the engine. Skipping the values
    // (IgnoredAny) checks the syntax without building anything.
    if parts.method == Method::POST {
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&body) {
            return error_response(
                tracker,
                ApiError::malformed(format!(
                    "the request body is not valid JSON ({} at line {} column {})",
                    json_error_kind(&e),
                    e.line(),
                    e.column()
                )),
            );
        }
    }

    let pq = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    strip_hop_by_hop(&mut parts.headers);
    // The body is complete: its length is re-derived, and a 100-continue
    // expectation was already met towards the client.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::EXPECT);
    let up = shared.upstream_request(parts.method, pq, parts.headers, body);

    let sent = tokio::select! {
        r = shared.pool.send(up) => Ok(r),
        _ = &mut timer => Err(()),
    };
    let (resp, conn) = match sent {
        Err(()) => {
            shared.metrics.upstream_error(UpstreamErrorKind::Timeout);
            return error_response(
                tracker,
                ApiError::upstream_timeout(limits.request_timeout.as_millis()),
            );
        }
        Ok(Err(UpstreamError::Connect(detail))) => {
            shared.metrics.upstream_error(UpstreamErrorKind::Connect);
            shared.readiness.set(
                Input::Engine,
                InputState::Failed,
                format!("connecting to {} failed", shared.upstream.base_url()),
            );
            shared.engine_wake.notify_one();
            tracing::warn!(upstream = %shared.upstream.authority, "engine connect failed: {detail}");
            return error_response(tracker, ApiError::upstream_unavailable(&detail));
        }
        Ok(Err(UpstreamError::Response(detail))) => {
            shared.metrics.upstream_error(UpstreamErrorKind::Response);
            tracing::warn!(upstream = %shared.upstream.authority, "engine request failed: {detail}");
            return error_response(tracker, ApiError::upstream_failed(&detail));
        }
        Ok(Ok(r)) => r,
    };

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(Route::of("/v1/chat/completions"), Route::ChatCompletions);
        assert_eq!(Route::of("/v1/models/tiny"), Route::Models);
        assert_eq!(Route::of("/v1/models/"), Route::Other);
        assert_eq!(Route::of("/v1/chat/completions/"), Route::Other);
        assert_eq!(Route::of("/v2/x"), Route::Other);
        assert!(Route::ChatCompletions.accepts(&Method::POST));
        assert!(!Route::ChatCompletions.accepts(&Method::GET));
        assert!(Route::Models.accepts(&Method::GET));
        assert!(!Route::Models.accepts(&Method::DELETE));
    }
}
