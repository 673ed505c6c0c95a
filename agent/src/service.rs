//! Request handling: routing to the attestation ([`crate::attestation`]),
//! health and readiness endpoints, and to [`crate::forward`] for the
//! engine's API. Early refusals (404, 405, 400 for a bad model id) go out
//! with [`early_answer`], so that they reach the client on HTTP/2 and
//! HTTP/1.1 even while it is still sending a body.
//!
//! Request bodies are read completely (bounded by `max_body_bytes`) before
//! they are forwarded, so an oversized body is answered with 413 and never
//! half-sent to the engine. Response bodies are never buffered (see
//! [`crate::body`]). Nothing of a request or response body reaches a log
//! line or a metric label.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::api_error::ApiError;
use crate::attestation::attestation;
use crate::body::{early_answer, AgentBody, ConnActivity, Tracker};
use crate::forward::forward;
use crate::identity::ServedIdentity;
use crate::readiness::Readiness;
use crate::route::check_models_path;
pub use crate::route::Route;
pub use crate::shared::Shared;

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
    let activity = &conn.activity;
    if route == Route::Other || route == Route::Metrics {
        let e = ApiError::not_found(req.uri().path().len());
        return Ok(early_answer(tracker, e, req.into_body(), activity));
    }
    if !route.accepts(req.method()) {
        let e = ApiError::method_not_allowed(route.allowed());
        return Ok(early_answer(tracker, e, req.into_body(), activity));
    }
    if route == Route::Models {
        if let Err(why) = check_models_path(req.uri().path()) {
            let e = ApiError::invalid_model_id(why);
            return Ok(early_answer(tracker, e, req.into_body(), activity));
        }
    }
    Ok(match route {
        Route::Healthz => health(tracker),
        Route::Readyz => ready(tracker, &shared.readiness),
        Route::Attestation => {
            attestation(&shared, conn.identity.as_ref(), activity, tracker, req).await
        }
        Route::Vouchers => crate::payment::vouchers(&shared, tracker),
        _ => match &shared.payments {
            None => forward(&shared, route, tracker, req, start, activity).await,
            Some(ledger) => {
                let identity = conn.identity.as_ref();
                crate::payment::forward_paid(
                    &shared, ledger, identity, route, tracker, req, start, activity,
                )
                .await
            }
        },
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
