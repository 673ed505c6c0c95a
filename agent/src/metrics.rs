//! Prometheus metrics (OpenMetrics text at `GET /metrics` on the metrics
//! listener).
//!
//! Privacy: every label value is a compile-time constant (route names,
//! status codes, error kinds, token kinds). Nothing taken from a request
//! or a response (paths, model names, bodies) ever becomes a label.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabel {
    route: &'static str,
    kind: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets: 0.25 ms to about 4.4 minutes, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 21))
}

/// Why the upstream failed (label `kind` of `upstream_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// Could not connect.
    Connect,
    /// Connected, but the engine failed before the response head.
    Response,
    /// The response body broke off (engine died mid-stream).
    Body,
    /// The request timeout ran out while waiting for the engine.
    Timeout,
}

impl UpstreamErrorKind {
    fn label(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Response => "response",
            Self::Body => "body",
            Self::Timeout => "timeout",
        }
    }
}

/// All metrics of one agent.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteStatus, Counter>,
    duration: HistogramFamily<RouteLabel>,
    head_latency: HistogramFamily<RouteLabel>,
    upstream_errors: Family<KindLabel, Counter>,
    tokens: Family<TokenLabel, Counter>,
    in_flight: Gauge,
    connections: Gauge,
    connections_rejected: Counter,
    handshake_failures: Counter,
    ready: Gauge,
    engine_restarts: Counter,
    certificate_renewals: Counter,
    certificate_not_after: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `chrysalis_agent` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("chrysalis_agent");
        let requests = Family::<RouteStatus, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route and HTTP status",
            requests.clone(),
        );
        let duration: HistogramFamily<RouteLabel> =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "request_duration_seconds",
            "Time from request head to the end of the response body (streams included), by route",
            duration.clone(),
        );
        let head_latency: HistogramFamily<RouteLabel> =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        registry.register(
            "response_head_seconds",
            "Time from request head to the response head (time to first byte), by route",
            head_latency.clone(),
        );
        let upstream_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "upstream_errors",
            "Failures talking to the engine: connect, response, body (broken stream), timeout",
            upstream_errors.clone(),
        );
        let tokens = Family::<TokenLabel, Counter>::default();
        registry.register(
            "tokens",
            "Tokens reported by the engine's `usage` fields (kind prompt or completion), by route",
            tokens.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "in_flight_requests",
            "Requests being handled now (streams until their end)",
            in_flight.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "open_connections",
            "Client connections open now",
            connections.clone(),
        );
        let connections_rejected = Counter::default();
        registry.register(
            "connections_rejected",
            "Connections closed at accept because max_connections were open",
            connections_rejected.clone(),
        );
        let handshake_failures = Counter::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            handshake_failures.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 when evidence, engine and GPU check are all ready",
            ready.clone(),
        );
        let engine_restarts = Counter::default();
        registry.register(
            "engine_restarts",
            "Restarts of the supervised engine",
            engine_restarts.clone(),
        );
        let certificate_renewals = Counter::default();
        registry.register(
            "certificate_renewals",
            "RA-TLS certificates made after the first one",
            certificate_renewals.clone(),
        );
        let certificate_not_after = Gauge::default();
        registry.register(
            "certificate_not_after_seconds",
            "Expiry of the certificate served to new connections, Unix seconds",
            certificate_not_after.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            head_latency,
            upstream_errors,
            tokens,
            in_flight,
            connections,
            connections_rejected,
            handshake_failures,
            ready,
            engine_restarts,
            certificate_renewals,
            certificate_not_after,
        }
    }

    /// One answered request: its final status and its total duration.
    pub fn request_done(&self, route: &'static str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RouteStatus { route, status })
            .inc();
        self.duration
            .get_or_create(&RouteLabel { route })
            .observe(elapsed.as_secs_f64());
    }

    /// The response head of a request was sent after `elapsed`.
    pub fn response_head(&self, route: &'static str, elapsed: Duration) {
        self.head_latency
            .get_or_create(&RouteLabel { route })
            .observe(elapsed.as_secs_f64());
    }

    /// One upstream failure.
    pub fn upstream_error(&self, kind: UpstreamErrorKind) {
        self.upstream_errors
            .get_or_create(&KindLabel { kind: kind.label() })
            .inc();
    }

    /// Tokens from an engine `usage` object.
    pub fn tokens(&self, route: &'static str, prompt: u64, completion: u64) {
        if prompt > 0 {
            self.tokens
                .get_or_create(&TokenLabel {
                    route,
                    kind: "prompt",
                })
                .inc_by(prompt);
        }
        if completion > 0 {
            self.tokens
                .get_or_create(&TokenLabel {
                    route,
                    kind: "completion",
                })
                .inc_by(completion);
        }
    }

    /// Counts a request as in flight until the guard is dropped.
    pub fn in_flight(&self) -> GaugeGuard {
        self.in_flight.inc();
        GaugeGuard(self.in_flight.clone())
    }

    /// Counts a connection as open until the guard is dropped.
    pub fn connection(&self) -> GaugeGuard {
        self.connections.inc();
        GaugeGuard(self.connections.clone())
    }

    /// A connection refused for the connection limit.
    pub fn connection_rejected(&self) {
        self.connections_rejected.inc();
    }

    /// A failed or timed-out TLS handshake.
    pub fn handshake_failed(&self) {
        self.handshake_failures.inc();
    }

    /// Overall readiness.
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// The supervised engine was restarted.
    pub fn engine_restarted(&self) {
        self.engine_restarts.inc();
    }

    /// A certificate was made; `renewal` is false for the first one.
    pub fn certificate(&self, not_after_unix: i64, renewal: bool) {
        if renewal {
            self.certificate_renewals.inc();
        }
        self.certificate_not_after.set(not_after_unix);
    }

    /// Requests currently in flight.
    pub fn in_flight_now(&self) -> i64 {
        self.in_flight.get()
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 << 10);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Decrements its gauge when dropped.
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_family() {
        let m = Metrics::new();
        m.request_done("chat_completions", 200, Duration::from_millis(3));
        m.response_head("chat_completions", Duration::from_millis(1));
        m.upstream_error(UpstreamErrorKind::Connect);
        m.tokens("chat_completions", 5, 7);
        let g = m.in_flight();
        let text = m.encode();
        for needle in [
            "chrysalis_agent_requests_total{route=\"chat_completions\",status=\"200\"} 1",
            "chrysalis_agent_request_duration_seconds_count{route=\"chat_completions\"} 1",
            "chrysalis_agent_response_head_seconds_count{route=\"chat_completions\"} 1",
            "chrysalis_agent_upstream_errors_total{kind=\"connect\"} 1",
            "chrysalis_agent_tokens_total{route=\"chat_completions\",kind=\"prompt\"} 5",
            "chrysalis_agent_tokens_total{route=\"chat_completions\",kind=\"completion\"} 7",
            "chrysalis_agent_in_flight_requests 1",
            "# EOF",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        drop(g);
        assert!(m.encode().contains("chrysalis_agent_in_flight_requests 0"));
    }
}
