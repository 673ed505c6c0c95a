//! Response bodies: small complete ones, and the engine's body passed
//! through frame by frame.
//!
//! [`ProxyBody`] never buffers: each frame the engine sends is handed to
//! hyper as soon as it arrives, so server-sent events reach the client
//! chunk by chunk. Dropping it (the client went away, or the response was
//! abandoned) drops the engine's body and with it the engine connection,
//! which is how the engine learns to stop generating.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;

use crate::api_error::ApiError;
use crate::metrics::{GaugeGuard, Metrics, UpstreamErrorKind};
use crate::upstream::Pooled;
use crate::usage::UsageScanner;

/// Error of a response body: the stream was cut (engine failure or request
/// timeout). hyper then ends the connection (HTTP/1.1) or resets the
/// stream (HTTP/2), so the client sees an incomplete answer, never a
/// silently truncated one.
#[derive(Debug)]
pub struct StreamError(pub String);

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StreamError {}

/// Every response body the agent sends.
// One per response, moved once into hyper: boxing the larger variant would
// only add an allocation per proxied request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum AgentBody {
    /// A complete body (JSON answers, metrics, errors).
    Full(Option<Bytes>),
    /// A complete error answer sent before the request body was read to
    /// its end (see [`early_answer`]): the request body is kept, unread,
    /// until this answer has been handed to the connection.
    Early(Option<Bytes>, UnreadRequest),
    /// The engine's body, streamed through.
    Proxy(ProxyBody),
    /// Any other body (a paid event stream with its usage receipt).
    Boxed(http_body_util::combinators::UnsyncBoxBody<Bytes, StreamError>),
}

impl From<Bytes> for AgentBody {
    fn from(b: Bytes) -> Self {
        if b.is_empty() {
            Self::Full(None)
        } else {
            Self::Full(Some(b))
        }
    }
}

impl From<String> for AgentBody {
    fn from(s: String) -> Self {
        Bytes::from(s).into()
    }
}

impl Body for AgentBody {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        match self.get_mut() {
            Self::Full(b) | Self::Early(b, _) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Self::Proxy(p) => Pin::new(p).poll_frame(cx),
            Self::Boxed(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(b) | Self::Early(b, _) => b.is_none(),
            Self::Proxy(p) => p.is_end_stream(),
            Self::Boxed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(None) | Self::Early(None, _) => SizeHint::with_exact(0),
            Self::Full(Some(b)) | Self::Early(Some(b), _) => SizeHint::with_exact(b.len() as u64),
            Self::Proxy(p) => p.size_hint(),
            Self::Boxed(b) => b.size_hint(),
        }
    }
}

/// An error answer that may come before the request body was read to its
/// end (limits, routing, admission).
///
/// Dropping an unread request body early makes HTTP/2 reset the stream
/// with CANCEL, which discards the answer still queued on it: the client
/// would see no response at all. So the unread body travels with the
/// answer ([`AgentBody::Early`]) until the answer's last frame was queued,
/// then is drained for a while ([`UnreadRequest`]). On HTTP/1.1 the
/// connection is also marked for a lingering close
/// ([`ConnActivity::request_linger`]), so a client still sending reads the
/// answer instead of a reset.
pub fn early_answer(
    tracker: Tracker,
    error: ApiError,
    request: Incoming,
    conn: &ConnActivity,
) -> http::Response<AgentBody> {
    tracker.complete(error.status.as_u16());
    let mut r: http::Response<AgentBody> = error.into_response();
    if !request.is_end_stream() {
        conn.request_linger();
        if let AgentBody::Full(b) = r.body_mut() {
            let bytes = b.take();
            *r.body_mut() = AgentBody::Early(bytes, UnreadRequest(Some(request)));
        }
    }
    r
}

/// A lingering close or drain ends when the client sent nothing for this
/// long.
pub const LINGER_IDLE: Duration = Duration::from_secs(1);
/// A lingering close or drain ends after this long in any case.
pub const LINGER_MAX: Duration = Duration::from_secs(5);
/// A lingering close or drain ends after discarding this many bytes.
pub const LINGER_MAX_BYTES: usize = 64 << 20;

/// The unread rest of a request body answered early. Dropped (after the
/// answer's last frame), it is read and discarded in the background up to
/// [`LINGER_IDLE`] / [`LINGER_MAX`] / [`LINGER_MAX_BYTES`]: the client
/// finishes sending and the stream ends cleanly (HTTP/2 without a reset
/// that clients such as curl report as a failed upload; HTTP/1.1 even
/// keeping the connection). Beyond the bounds it is dropped: HTTP/2 resets
/// the stream with NO_ERROR after the complete answer, HTTP/1.1 closes
/// lingering.
#[derive(Debug)]
pub struct UnreadRequest(Option<Incoming>);

impl Drop for UnreadRequest {
    fn drop(&mut self) {
        let Some(body) = self.0.take() else { return };
        if body.is_end_stream() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(drain(body));
        }
    }
}

async fn drain(mut body: Incoming) {
    use http_body_util::BodyExt;
    let until = tokio::time::Instant::now() + LINGER_MAX;
    let mut read = 0usize;
    while read < LINGER_MAX_BYTES {
        let idle = tokio::time::Instant::now() + LINGER_IDLE;
        match tokio::time::timeout_at(idle.min(until), body.frame()).await {
            Ok(Some(Ok(f))) => read += f.data_ref().map_or(0, |d| d.len()),
            _ => return,
        }
    }
}

/// Requests running on one connection, and when the last one ended: the
/// HTTP/2 idle check closes a connection only when nothing runs on it.
#[derive(Debug)]
pub struct ConnActivity {
    origin: Instant,
    active: AtomicUsize,
    last_ms: AtomicU64,
    linger: AtomicBool,
}

impl Default for ConnActivity {
    fn default() -> Self {
        Self {
            origin: Instant::now(),
            active: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            linger: AtomicBool::new(false),
        }
    }
}

impl ConnActivity {
    /// Marks a request as running until the guard drops.
    pub fn begin(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.touch();
        ActiveGuard(self.clone())
    }

    fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// An answer went out before its request body was read: an HTTP/1.1
    /// connection closes with a lingering close (see
    /// [`crate::h1_errors::RewriteParseErrors`]).
    pub fn request_linger(&self) {
        self.linger.store(true, Ordering::Relaxed);
    }

    /// Whether [`ConnActivity::request_linger`] was called.
    pub fn wants_linger(&self) -> bool {
        self.linger.load(Ordering::Relaxed)
    }

    /// How long the connection has been without a running request; `None`
    /// while one runs.
    pub fn idle_for(&self) -> Option<Duration> {
        if self.active.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let now = self.origin.elapsed();
        Some(now.saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed))))
    }
}

/// See [`ConnActivity::begin`].
#[derive(Debug)]
pub struct ActiveGuard(Arc<ConnActivity>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a request ended (for metrics and the debug log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered completely.
    Complete,
    /// The client went away before the end.
    ClientGone,
    /// The engine's body broke off.
    UpstreamBroken,
    /// The request timeout ran out during the response.
    TimedOut,
}

/// Holds a request's resources (concurrency permit, in-flight gauge,
/// connection activity) and records its metrics when dropped, which for a
/// streamed answer is when the stream ends or is abandoned.
#[derive(Debug)]
pub struct Tracker {
    metrics: Arc<Metrics>,
    route: &'static str,
    start: Instant,
    status: u16,
    outcome: Outcome,
    _permit: Option<OwnedSemaphorePermit>,
    _in_flight: GaugeGuard,
    _active: ActiveGuard,
}

impl Tracker {
    /// Starts tracking a request.
    pub fn new(
        metrics: Arc<Metrics>,
        route: &'static str,
        start: Instant,
        active: ActiveGuard,
    ) -> Self {
        let in_flight = metrics.in_flight();
        Self {
            metrics,
            route,
            start,
            status: 0,
            outcome: Outcome::ClientGone,
            _permit: None,
            _in_flight: in_flight,
            _active: active,
        }
    }

    /// Keeps a concurrency permit until the request ends.
    pub fn hold(&mut self, permit: OwnedSemaphorePermit) {
        self._permit = Some(permit);
    }

    /// The status sent, and the time to the response head.
    pub fn responded(&mut self, status: u16) {
        self.status = status;
        self.metrics.response_head(self.route, self.start.elapsed());
    }

    /// A complete (non-streamed) answer.
    pub fn complete(mut self, status: u16) {
        self.responded(status);
        self.outcome = Outcome::Complete;
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let elapsed = self.start.elapsed();
        self.metrics.request_done(self.route, self.status, elapsed);
        tracing::debug!(
            route = self.route,
            status = self.status,
            outcome = ?self.outcome,
            ms = elapsed.as_secs_f64() * 1e3,
            "request finished"
        );
    }
}

/// The engine's response body on its way to the client.
#[derive(Debug)]
pub struct ProxyBody {
    inner: Incoming,
    /// The engine connection, returned to the pool only when the body was
    /// read to its end; dropped (closed) otherwise.
    conn: Option<Pooled>,
    scanner: UsageScanner,
    /// Send a final error event instead of breaking the stream (SSE
    /// without a Content-Length).
    sse_errors: bool,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
    expired: bool,
    done: bool,
    /// A cut decided but not yet handed to hyper: given on the next poll,
    /// so that what was already sent is flushed first (see `fail`).
    cut: Option<StreamError>,
    tracker: Tracker,
}

impl ProxyBody {
    /// Wraps the engine's body. `deadline` fires when the request timeout
    /// runs out.
    pub fn new(
        inner: Incoming,
        conn: Pooled,
        scanner: UsageScanner,
        sse_errors: bool,
        deadline: Pin<Box<Sleep>>,
        timeout: Duration,
        tracker: Tracker,
    ) -> Self {
        Self {
            inner,
            conn: Some(conn),
            scanner,
            sse_errors,
            deadline,
            timeout,
            expired: false,
            done: false,
            cut: None,
            tracker,
        }
    }

    /// Whether the engine's body was read to its end without a failure.
    pub fn completed(&self) -> bool {
        self.done && self.tracker.outcome == Outcome::Complete
    }

    fn finish_ok(&mut self) {
        self.done = true;
        if let Some(c) = self.conn.take() {
            c.release();
        }
        self.tracker.outcome = Outcome::Complete;
        let scanner = std::mem::replace(&mut self.scanner, UsageScanner::Off);
        if let Some(u) = scanner.finish() {
            self.tracker
                .metrics
                .tokens(self.tracker.route, u.prompt_tokens, u.completion_tokens);
        }
    }

    /// The stream failed: either a final SSE error event, or an error that
    /// makes hyper cut the response.
    fn fail(
        &mut self,
        cx: &mut Context<'_>,
        outcome: Outcome,
        error: ApiError,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        self.done = true;
        self.tracker.outcome = outcome;
        self.scanner = UsageScanner::Off;
        // Never reuse a connection with an unfinished response.
        self.conn = None;
        tracing::warn!(
            route = self.tracker.route,
            code = error.code,
            "response stream ended early: {}",
            error.message
        );
        if self.sse_errors {
            Poll::Ready(Some(Ok(Frame::data(error.sse_event()))))
        } else {
            // hyper drops its unflushed write buffer when a body errors, so
            // a frame forwarded in the same turn as the cut could be lost:
            // answer Pending once (hyper flushes), then the error.
            self.cut = Some(StreamError(error.message));
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        let this = self.get_mut();
        if let Some(cut) = this.cut.take() {
            return Poll::Ready(Some(Err(cut)));
        }
        if this.done {
            return Poll::Ready(None);
        }
        if this.expired {
            this.tracker
                .metrics
                .upstream_error(UpstreamErrorKind::Timeout);
            return this.fail(
                cx,
                Outcome::TimedOut,
                ApiError::upstream_timeout(this.timeout.as_millis()),
            );
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.scanner.feed(data);
                }
                // hyper stops polling a body whose announced length was
                // sent, so the end is recognised here, not by a final
                // `None` that may never be asked for.
                if this.inner.is_end_stream() {
                    this.finish_ok();
                    return Poll::Ready(Some(Ok(frame)));
                }
                // An engine that never pauses still meets the timeout:
                // this frame goes out, the next poll ends the stream.
                this.expired = this.deadline.is_elapsed();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.tracker.metrics.upstream_error(UpstreamErrorKind::Body);
                let detail = if e.is_incomplete_message() {
                    "the engine closed the connection mid-response".to_string()
                } else {
                    format!("the engine's response broke off: {e}")
                };
                this.fail(cx, Outcome::UpstreamBroken, upstream_broken(detail))
            }
            Poll::Ready(None) => {
                this.finish_ok();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    this.tracker
                        .metrics
                        .upstream_error(UpstreamErrorKind::Timeout);
                    return this.fail(
                        cx,
                        Outcome::TimedOut,
                        ApiError::upstream_timeout(this.timeout.as_millis()),
                    );
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // A pending cut is not an end: it must reach hyper as an error.
        self.done && self.cut.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.done || self.sse_errors {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

fn upstream_broken(detail: String) -> ApiError {
    let mut e = ApiError::upstream_failed(&detail);
    e.code = "upstream_disconnected";
    e.message = detail;
    e
}
