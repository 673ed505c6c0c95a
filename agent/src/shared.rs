//! State shared by every request: limits, the engine's address and
//! connection pool, the concurrency permits, metrics and readiness.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Uri, Version};
use http_body_util::Full;
use tokio::sync::Semaphore;

use crate::config::{Limits, Upstream};
use crate::fresh::{FreshHub, FreshSettings};
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::upstream::UpstreamPool;

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
    /// Attestation permits (`max_attestation_requests`), separate from the
    /// inference permits.
    pub attestation_permits: Arc<Semaphore>,
    /// Per-request quotes at once (`max_fresh_quotes`).
    pub quote_permits: Arc<Semaphore>,
    /// Evidence windows per identity.
    pub fresh: FreshHub,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Readiness.
    pub readiness: Arc<Readiness>,
    /// Wakes the engine probe early (a request could not connect).
    pub engine_wake: tokio::sync::Notify,
    /// Why the GPU check failed, when it did: then nothing is forwarded.
    pub gpu_refusal: Option<String>,
    /// Payment channels, when the runtime configuration asks for payment.
    pub payments: Option<Arc<crate::ledger::Ledger>>,
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
            attestation_permits: Arc::new(Semaphore::new(limits.max_attestation_requests)),
            quote_permits: Arc::new(Semaphore::new(limits.max_fresh_quotes)),
            fresh: FreshHub::new(FreshSettings {
                interval: limits.fresh_interval,
                max_batch: limits.max_batch_nonces,
                wait: limits.request_timeout,
            }),
            limits,
            upstream,
            upstream_host,
            metrics,
            readiness,
            engine_wake: tokio::sync::Notify::new(),
            gpu_refusal: None,
            payments: None,
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
