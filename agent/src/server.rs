//! Listeners: the HTTPS front door (TLS 1.3, HTTP/2 or HTTP/1.1 by ALPN)
//! and the plain-HTTP metrics listener; connection limits, idle timeouts,
//! and draining.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_rustls::LazyConfigAcceptor;

use crate::body::ConnActivity;
use crate::error::{Error, Result};
use crate::h1_errors::RewriteParseErrors;
use crate::identity::IdentityStore;
use crate::service::{handle, handle_metrics, ConnCtx, Shared};
use crate::workers::Workers;

/// Lifecycle of a listener's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepting and serving.
    Running,
    /// Not accepting; connections finish their requests and close.
    Draining,
    /// Connections still open are closed now.
    Abort,
}

/// Binds a listening socket with a deep accept backlog (bursts of
/// thousands of connections must not be refused by the kernel).
pub fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let err = |e: std::io::Error| Error::listen(addr, &e);
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(4096).map_err(err)
}

/// Counts open connections and wakes the drain when the last one closes.
#[derive(Debug, Default)]
struct ConnCount {
    open: AtomicUsize,
    zero: Notify,
}

struct ConnGuard(Arc<ConnCount>);

impl ConnCount {
    fn enter(self: &Arc<Self>) -> ConnGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        ConnGuard(self.clone())
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.zero.notify_waiters();
        }
    }
}

/// What a drain did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Connections open when the drain began.
    pub open_at_start: usize,
    /// Connections still open at the deadline, closed by force.
    pub aborted: usize,
}

/// A running listener.
pub struct Listener {
    local_addr: SocketAddr,
    phase: watch::Sender<Phase>,
    conns: Arc<ConnCount>,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("local_addr", &self.local_addr)
            .field("open", &self.open_connections())
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.conns.open.load(Ordering::SeqCst)
    }

    /// Stops accepting, lets every connection finish the requests it is
    /// running (HTTP/1.1: the current response, then close; HTTP/2:
    /// GOAWAY, then the open streams), and closes whatever is still open
    /// at `deadline`.
    pub async fn drain(&self, deadline: Duration) -> DrainReport {
        let open_at_start = self.open_connections();
        self.phase.send_replace(Phase::Draining);
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let notified = self.conns.zero.notified();
            if self.open_connections() == 0 {
                break;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                break;
            }
        }
        let aborted = self.open_connections();
        if aborted > 0 {
            self.phase.send_replace(Phase::Abort);
            // Connection tasks end at once on Abort; give them a moment
            // to unwind so that their sockets are closed on return.
            let settle = tokio::time::Instant::now() + Duration::from_secs(1);
            while self.open_connections() > 0 {
                let notified = self.conns.zero.notified();
                if self.open_connections() == 0
                    || tokio::time::timeout_at(settle, notified).await.is_err()
                {
                    break;
                }
            }
        }
        self.accept.abort();
        DrainReport {
            open_at_start,
            aborted,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.phase.send_replace(Phase::Abort);
        self.accept.abort();
    }
}

/// Serves HTTPS on `listener` with the identities of `store`.
pub fn serve_https(
    listener: TcpListener,
    shared: Arc<Shared>,
    store: Arc<IdentityStore>,
    workers: Arc<Workers>,
) -> Result<Listener> {
    let max = shared.limits.max_connections;
    let s = shared.clone();
    start(listener, shared, max, move |tcp, phase, guard| {
        // The connection moves to a worker thread and stays there with
        // everything it starts (its engine connection included).
        let std_tcp = match tcp.into_std() {
            Ok(t) => t,
            Err(e) => {
                tracing::debug!("handing a connection to a worker: {e}");
                return;
            }
        };
        let (s, store) = (s.clone(), store.clone());
        workers.next().spawn(async move {
            match TcpStream::from_std(std_tcp) {
                Ok(tcp) => https_connection(tcp, s, store, phase, guard).await,
                Err(e) => tracing::debug!("registering a connection with a worker: {e}"),
            }
        });
    })
}

/// Serves the metrics, health and readiness endpoints over plain HTTP/1.1
/// on `listener`.
pub fn serve_metrics(listener: TcpListener, shared: Arc<Shared>) -> Result<Listener> {
    let s = shared.clone();
    // A scraper needs few connections; the bound keeps a flood on the
    // metrics port from taking file descriptors from the API.
    start(listener, shared, 256, move |tcp, phase, guard| {
        tokio::spawn(metrics_connection(tcp, s.clone(), phase, guard));
    })
}

fn start<F>(listener: TcpListener, shared: Arc<Shared>, max: usize, spawn: F) -> Result<Listener>
where
    F: Fn(TcpStream, watch::Receiver<Phase>, ConnGuard) + Send + 'static,
{
    let local_addr = listener.local_addr().map_err(|e| Error::Io {
        what: "reading the listener's address".into(),
        source: e,
    })?;
    let (phase, rx) = watch::channel(Phase::Running);
    let conns = Arc::new(ConnCount::default());
    let accept = tokio::spawn(accept_loop(listener, rx, conns.clone(), shared, max, spawn));
    Ok(Listener {
        local_addr,
        phase,
        conns,
        accept,
    })
}

async fn accept_loop<F>(
    listener: TcpListener,
    mut phase: watch::Receiver<Phase>,
    conns: Arc<ConnCount>,
    shared: Arc<Shared>,
    max: usize,
    spawn: F,
) where
    F: Fn(TcpStream, watch::Receiver<Phase>, ConnGuard),
{
    let mut last_error_log: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            biased;
            r = phase.changed() => {
                if r.is_err() || *phase.borrow() != Phase::Running {
                    return;
                }
                continue;
            }
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, _peer)) => {
                if conns.open.load(Ordering::Relaxed) >= max {
                    shared.metrics.connection_rejected();
                    drop(tcp);
                    continue;
                }
                let _ = tcp.set_nodelay(true);
                spawn(tcp, phase.clone(), conns.enter());
            }
            Err(e) => {
                // Out of file descriptors or memory: wait a little rather
                // than spin, and do not flood the log.
                if last_error_log.is_none_or(|t| t.elapsed() > Duration::from_secs(5)) {
                    tracing::warn!("accept failed: {e}");
                    last_error_log = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn https_connection(
    tcp: TcpStream,
    shared: Arc<Shared>,
    store: Arc<IdentityStore>,
    phase: watch::Receiver<Phase>,
    _guard: ConnGuard,
) {
    let _open = shared.metrics.connection();
    let limits = &shared.limits;
    let handshake = async {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
        // The identity current when this handshake starts is the one this
        // connection keeps (and answers /attestation for).
        let identity = store.current();
        let tls = start.into_stream(identity.tls.clone()).await?;
        Ok::<_, std::io::Error>((tls, identity))
    };
    let (mut tls, identity) = match tokio::time::timeout(limits.handshake_timeout, handshake).await
    {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            shared.metrics.handshake_failed();
            tracing::debug!("TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            shared.metrics.handshake_failed();
            tracing::debug!("TLS handshake timed out");
            return;
        }
    };
    // An idle connection costs only its TLS state until the client sends
    // something: the HTTP layer (and its buffers) starts then.
    if !wait_for_request_bytes(&mut tls, limits.idle_timeout, phase.clone()).await {
        return;
    }
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let ctx = Arc::new(ConnCtx {
        identity: Some(identity),
        activity: Arc::new(ConnActivity::default()),
    });
    let activity = ctx.activity.clone();
    let s = shared.clone();
    let svc = service_fn(move |req| handle(s.clone(), ctx.clone(), req));
    if h2 {
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(
                u32::try_from(limits.max_concurrent_requests).unwrap_or(u32::MAX),
            );
        let conn = b.serve_connection(TokioIo::new(tls), svc);
        drive(conn, phase, Some((activity, limits.idle_timeout)), |c| {
            c.graceful_shutdown()
        })
        .await;
    } else {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(limits.idle_timeout)
            .max_header_size(limits.max_header_bytes)
            .max_headers(limits.max_headers)
            .max_buf_size(limits.max_header_bytes + 1);
        let io = RewriteParseErrors::new(tls, limits.max_header_bytes).with_activity(activity);
        let conn = b.serve_connection(TokioIo::new(io), svc);
        drive(conn, phase, None, |c| c.graceful_shutdown()).await;
    }
}

/// Waits until the client sent bytes after the handshake; false when it
/// stayed silent for `idle`, or the listener is draining.
async fn wait_for_request_bytes(
    tls: &mut tokio_rustls::server::TlsStream<TcpStream>,
    idle: Duration,
    mut phase: watch::Receiver<Phase>,
) -> bool {
    // Records that arrived with the handshake may already be decrypted.
    let buffered = tls
        .get_mut()
        .1
        .process_new_packets()
        .map(|s| s.plaintext_bytes_to_read() > 0)
        .unwrap_or(true);
    if buffered {
        return true;
    }
    tokio::select! {
        r = tls.get_ref().0.readable() => r.is_ok(),
        _ = tokio::time::sleep(idle) => false,
        _ = phase.wait_for(|p| *p != Phase::Running) => false,
    }
}

async fn metrics_connection(
    tcp: TcpStream,
    shared: Arc<Shared>,
    phase: watch::Receiver<Phase>,
    _guard: ConnGuard,
) {
    let ctx = Arc::new(ConnCtx {
        identity: None,
        activity: Arc::new(ConnActivity::default()),
    });
    let s = shared.clone();
    let svc = service_fn(move |req| handle_metrics(s.clone(), ctx.clone(), req));
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(shared.limits.idle_timeout)
        .max_buf_size(shared.limits.max_header_bytes + 1);
    let io = RewriteParseErrors::new(tcp, shared.limits.max_header_bytes);
    let conn = b.serve_connection(TokioIo::new(io), svc);
    drive(conn, phase, None, |c| c.graceful_shutdown()).await;
}

/// Runs a connection until it ends, shutting it down gracefully on
/// `Draining` (and, with `idle`, when no request has run on it for that
/// long), and dropping it on `Abort`.
async fn drive<C, E>(
    conn: C,
    mut phase: watch::Receiver<Phase>,
    idle: Option<(Arc<ConnActivity>, Duration)>,
    shutdown: fn(std::pin::Pin<&mut C>),
) where
    C: std::future::Future<Output = std::result::Result<(), E>>,
    E: std::fmt::Display,
{
    tokio::pin!(conn);
    let mut closing = false;
    if *phase.borrow_and_update() != Phase::Running {
        shutdown(conn.as_mut());
        closing = true;
    }
    let idle_limit = idle.as_ref().map(|(_, d)| *d);
    let idle_timer = tokio::time::sleep(idle_limit.unwrap_or(Duration::MAX / 4));
    tokio::pin!(idle_timer);
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            changed = phase.changed() => {
                let p = if changed.is_err() { Phase::Abort } else { *phase.borrow_and_update() };
                match p {
                    Phase::Running => {}
                    Phase::Draining => {
                        if !closing {
                            shutdown(conn.as_mut());
                            closing = true;
                        }
                    }
                    Phase::Abort => return,
                }
            }
            _ = &mut idle_timer, if idle.is_some() && !closing => {
                let (activity, limit) = idle.as_ref().expect("guarded by is_some");
                match activity.idle_for() {
                    Some(d) if d >= *limit => {
                        shutdown(conn.as_mut());
                        closing = true;
                    }
                    Some(d) => idle_timer.as_mut().reset(tokio::time::Instant::now() + (*limit - d)),
                    None => idle_timer.as_mut().reset(tokio::time::Instant::now() + *limit),
                }
            }
        }
    }
}
