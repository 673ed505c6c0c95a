//! `GET /attestation…`: fresh evidence, with its own bounds.
//!
//! Attestation never takes the inference permits. Every attestation
//! request holds one of `limits.max_attestation_requests` permits while it
//! runs (503 + Retry-After beyond), and:
//!
//! * `/attestation?nonce=HEX` (legacy: one quote per request, verified with
//!   `chrysalis_ratls::verify_fresh` and the client's own nonce) also needs
//!   one of `limits.max_fresh_quotes` quote permits (503 + Retry-After
//!   beyond);
//! * `/attestation/batch?nonce=HEX` joins the next window of
//!   [`crate::fresh`] (503 + Retry-After when the window is full);
//! * `/attestation/latest` answers from the current window.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::api_error::ApiError;
use crate::body::{early_answer, AgentBody, ConnActivity, Tracker};
use crate::fresh::Refusal;
use crate::identity::ServedIdentity;
use crate::shared::Shared;

/// Which answer a path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Legacy,
    Batch,
    Latest,
}

fn json(body: AgentBody) -> Response<AgentBody> {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn refused(shared: &Shared, r: Refusal) -> ApiError {
    match r {
        Refusal::Full(_) => {
            ApiError::attestation_busy(&r.to_string(), shared.limits.retry_after_secs)
        }
        Refusal::Timeout(_) | Refusal::Failed(_) => ApiError::attestation_failed(r.to_string()),
    }
}

/// Answers one attestation request on a connection that uses `identity`.
pub async fn attestation(
    shared: &Shared,
    identity: Option<&Arc<ServedIdentity>>,
    activity: &ConnActivity,
    mut tracker: Tracker,
    req: Request<Incoming>,
) -> Response<AgentBody> {
    let mode = match req.uri().path() {
        "/attestation/batch" => Mode::Batch,
        "/attestation/latest" => Mode::Latest,
        _ => Mode::Legacy,
    };
    let nonce = if mode == Mode::Latest {
        None
    } else {
        match chrysalis_ratls::parse_nonce_query(req.uri().query().unwrap_or("")) {
            Ok(n) => Some(n),
            Err(e) => {
                let e = ApiError::bad_nonce(e.to_string());
                return early_answer(tracker, e, req.into_body(), activity);
            }
        }
    };
    let Some(source) = identity.and_then(|i| i.attestation.clone()) else {
        let e = ApiError::attestation_unavailable(
            "this connection's certificate carries no evidence provider",
        );
        return early_answer(tracker, e, req.into_body(), activity);
    };
    let limits = &shared.limits;
    let Ok(permit) = shared.attestation_permits.clone().try_acquire_owned() else {
        let e = ApiError::attestation_overloaded(
            limits.max_attestation_requests,
            limits.retry_after_secs,
        );
        return early_answer(tracker, e, req.into_body(), activity);
    };
    tracker.hold(permit);
    // GET requests: no body to keep for the answer (see `early_answer`).
    drop(req);
    let answer = match (mode, nonce) {
        (Mode::Latest, _) => shared
            .fresh
            .batcher(&source)
            .latest()
            .await
            .map(AgentBody::from)
            .map_err(|r| refused(shared, r)),
        (Mode::Batch, Some(nonce)) => shared
            .fresh
            .batcher(&source)
            .batch(&nonce)
            .await
            .map(AgentBody::from)
            .map_err(|r| refused(shared, r)),
        (_, nonce) => {
            let nonce = nonce.unwrap_or_default();
            match shared.quote_permits.clone().try_acquire_owned() {
                Err(_) => Err(ApiError::attestation_overloaded(
                    limits.max_fresh_quotes,
                    limits.retry_after_secs,
                )),
                Ok(quote) => {
                    let r = tokio::task::spawn_blocking(move || {
                        let _quote = quote;
                        source.fresh_evidence_json(&nonce)
                    })
                    .await;
                    match r {
                        Ok(Ok(json)) => Ok(AgentBody::from(json)),
                        Ok(Err(why)) => Err(ApiError::attestation_failed(why)),
                        Err(e) => Err(ApiError::attestation_failed(format!(
                            "evidence task failed: {e}"
                        ))),
                    }
                }
            }
        }
    };
    match answer {
        Ok(body) => {
            tracker.complete(200);
            json(body)
        }
        Err(e) => {
            if e.status.is_server_error() && e.status != StatusCode::SERVICE_UNAVAILABLE {
                tracing::error!("fresh evidence failed: {}", e.message);
            }
            tracker.complete(e.status.as_u16());
            e.into_response()
        }
    }
}
