//! Shared pieces of the agent's integration tests: a small deterministic
//! stub engine (hyper), an agent with a plain self-signed certificate, and
//! HTTPS clients. Everything listens on 127.0.0.1 with OS-chosen ports.
#![allow(dead_code)] // each test binary uses a different subset

mod any_cert;
pub use any_cert::AnyCert;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use chrysalis_agent::config::{Config, ProviderKind, Upstream};
use chrysalis_agent::identity::{tls_config, ServedIdentity};
use chrysalis_agent::{Agent, IdentitySource};
use chrysalis_ratls::{RaTlsServerVerifier, VerifierConfig};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::ClientConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Liveness guard: turns a hang into a failure. Not a timing assertion —
/// the bound is far above anything the tests need.
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(60), f).await {
        Ok(v) => v,
        Err(_) => panic!("no progress within 60 s: {what}"),
    }
}

// ---------------------------------------------------------------- stub engine

/// What the stub engine saw.
#[derive(Debug, Clone)]
pub enum Event {
    /// A request (not emitted for the agent's own readiness probes of
    /// /v1/models, which carry no `x-test` header).
    Request {
        /// Method.
        method: String,
        /// Path and query.
        path: String,
        /// Headers as received.
        headers: HeaderMap,
        /// Body.
        body: Bytes,
    },
    /// A streamed answer was abandoned by the agent (its body dropped).
    StreamCancelled,
    /// A streamed answer was handed to hyper completely.
    StreamFinished,
}

/// A body fed from a channel.
pub struct ChannelBody(pub mpsc::Receiver<Result<Frame<Bytes>, io::Error>>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.0.poll_recv(cx)
    }
}

/// The deterministic stub engine. Per-request behaviour is chosen by
/// request headers (the agent forwards them):
/// * `x-stub-chunks: N` — content chunks in a stream (default 3);
/// * `x-stub-gated: 1` — wait for [`Stub::release`] before each chunk
///   (and, for non-streamed answers, before the response head);
/// * `x-stub-fail-after: K` — after K chunks the body fails (the engine
///   "dies" on that connection);
/// * `x-stub-status: NNN` — answer this status (non-streamed);
/// * `x-stub-content-type: T` — the content type of a stream.
pub struct Stub {
    /// Where it listens.
    pub addr: SocketAddr,
    events: Mutex<mpsc::UnboundedReceiver<Event>>,
    events_tx: mpsc::UnboundedSender<Event>,
    gate: Arc<Semaphore>,
    kill: watch::Sender<bool>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl Stub {
    /// Starts on a free port.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts on `addr` (to come back where a killed engine was).
    pub async fn start_on(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("stub bind");
        let addr = listener.local_addr().unwrap();
        let (events_tx, events) = mpsc::unbounded_channel();
        let gate = Arc::new(Semaphore::new(0));
        let (kill, kill_rx) = watch::channel(false);
        let (tx, g) = (events_tx.clone(), gate.clone());
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let acc = accepted.clone();
        tokio::spawn(async move {
            let mut kill_rx2 = kill_rx.clone();
            loop {
                let (tcp, _) = tokio::select! {
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                    _ = kill_rx2.changed() => return,
                };
                acc.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (tx, g, mut k) = (tx.clone(), g.clone(), kill_rx.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| stub_handle(req, tx.clone(), g.clone()));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc);
                    tokio::select! {
                        _ = conn => {}
                        // Killed: the connection is dropped mid-whatever.
                        _ = k.changed() => {}
                    }
                });
            }
        });
        Self {
            addr,
            events: Mutex::new(events),
            events_tx,
            gate,
            kill,
            accepted,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Lets `n` more gated chunks (or heads) go.
    pub fn release(&self, n: usize) {
        self.gate.add_permits(n);
    }

    /// Kills the engine: listener and every connection dropped at once.
    pub fn kill(&self) {
        self.kill.send_replace(true);
    }

    /// The next event for which `pred` holds (others are discarded).
    pub async fn wait_event(&self, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
        within(what, async {
            loop {
                let ev = {
                    let mut rx = self.events.lock().unwrap();
                    rx.try_recv().ok()
                };
                match ev {
                    Some(e) if pred(&e) => return e,
                    Some(_) => {}
                    None => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        })
        .await
    }

    /// The next request with an `x-test` header.
    pub async fn next_request(&self) -> (String, String, HeaderMap, Bytes) {
        match self
            .wait_event("a request at the stub", |e| {
                matches!(e, Event::Request { .. })
            })
            .await
        {
            Event::Request {
                method,
                path,
                headers,
                body,
            } => (method, path, headers, body),
            _ => unreachable!(),
        }
    }

    /// How many requests (with `x-test`) arrived since the last drain;
    /// drains the events.
    pub fn requests_seen(&self) -> usize {
        let mut rx = self.events.lock().unwrap();
        let mut n = 0;
        while let Ok(e) = rx.try_recv() {
            n += usize::from(matches!(e, Event::Request { .. }));
        }
        n
    }

    /// Drops the events seen so far.
    pub fn clear_events(&self) {
        let mut rx = self.events.lock().unwrap();
        while rx.try_recv().is_ok() {}
        let _ = &self.events_tx;
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.kill();
    }
}

type StubBody = BoxBody<Bytes, io::Error>;

fn full(b: impl Into<Bytes>) -> StubBody {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

fn header_num(h: &HeaderMap, name: &str) -> Option<usize> {
    h.get(name)?.to_str().ok()?.parse().ok()
}

async fn stub_handle(
    req: Request<Incoming>,
    events: mpsc::UnboundedSender<Event>,
    gate: Arc<Semaphore>,
) -> Result<Response<StubBody>, io::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    if parts.headers.contains_key("x-test") {
        let _ = events.send(Event::Request {
            method: parts.method.to_string(),
            path: path.clone(),
            headers: parts.headers.clone(),
            body: body.clone(),
        });
    }
    let h = &parts.headers;
    let gated = h.contains_key("x-stub-gated");
    let stream = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("stream").and_then(|s| s.as_bool()))
        .unwrap_or(false);
    let mut resp = if stream {
        let n = header_num(h, "x-stub-chunks").unwrap_or(3);
        let fail_after = header_num(h, "x-stub-fail-after");
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(produce_stream(n, gated, fail_after, tx, gate, events));
        let mut r = Response::new(ChannelBody(rx).boxed());
        let ct = h
            .get("x-stub-content-type")
            .cloned()
            .unwrap_or(HeaderValue::from_static("text/event-stream"));
        r.headers_mut().insert("content-type", ct);
        r
    } else {
        if gated {
            gate.acquire().await.expect("gate").forget();
        }
        let text = match path.split('?').next().unwrap_or("") {
            "/v1/models" => r#"{"object":"list","data":[{"id":"stub-model","object":"model","owned_by":"stub"}]}"#.to_string(),
            p if p.starts_with("/v1/models/") => format!(
                r#"{{"id":"{}","object":"model","owned_by":"stub"}}"#,
                &p["/v1/models/".len()..]
            ),
            "/v1/chat/completions" => format!(
                r#"{{"id":"chatcmpl-stub","object":"chat.completion","choices":[{{"index":0,"message":{{"role":"assistant","content":"stub answer to {} bytes"}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}}}"#,
                body.len()
            ),
            "/v1/completions" => r#"{"id":"cmpl-stub","object":"text_completion","choices":[{"index":0,"text":"stub text","finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":4,"total_tokens":6}}"#.to_string(),
            "/v1/embeddings" => r#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5,-0.25]}],"usage":{"prompt_tokens":7,"total_tokens":7}}"#.to_string(),
            _ => r#"{"error":"stub: no such path"}"#.to_string(),
        };
        let mut r = Response::new(full(text));
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        if let Some(s) = header_num(h, "x-stub-status") {
            *r.status_mut() = StatusCode::from_u16(s as u16).unwrap();
        }
        r
    };
    // Hop-by-hop headers the agent must not pass on to its client.
    let rh = resp.headers_mut();
    rh.insert("x-stub", HeaderValue::from_static("ok"));
    rh.insert("x-stub-hop", HeaderValue::from_static("secret"));
    rh.insert("connection", HeaderValue::from_static("x-stub-hop"));
    rh.insert("keep-alive", HeaderValue::from_static("timeout=9"));
    Ok(resp)
}

/// The SSE chunk for token `i`.
pub fn chunk_text(i: usize) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-stub\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} \"}}}}]}}\n\n"
    )
}

/// The final usage chunk of a stream of `n` tokens.
pub fn usage_chunk(n: usize) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-stub\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{{\"prompt_tokens\":11,\"completion_tokens\":{n},\"total_tokens\":{}}}}}\n\n",
        11 + n
    )
}

async fn produce_stream(
    n: usize,
    gated: bool,
    fail_after: Option<usize>,
    tx: mpsc::Sender<Result<Frame<Bytes>, io::Error>>,
    gate: Arc<Semaphore>,
    events: mpsc::UnboundedSender<Event>,
) {
    let cancelled = || {
        let _ = events.send(Event::StreamCancelled);
    };
    for i in 0..n {
        if gated {
            tokio::select! {
                p = gate.acquire() => p.expect("gate").forget(),
                _ = tx.closed() => return cancelled(),
            }
        }
        if fail_after == Some(i) {
            let _ = tx.send(Err(io::Error::other("stub engine died"))).await;
            return;
        }
        if tx
            .send(Ok(Frame::data(chunk_text(i).into())))
            .await
            .is_err()
        {
            return cancelled();
        }
    }
    for tail in [usage_chunk(n), "data: [DONE]\n\n".to_string()] {
        if tx.send(Ok(Frame::data(tail.into()))).await.is_err() {
            return cancelled();
        }
    }
    // Dropping the sender ends the body.
    drop(tx);
    let _ = events.send(Event::StreamFinished);
}

// ---------------------------------------------------------------- the agent

/// A self-signed certificate for 127.0.0.1 as a static identity.
pub fn self_signed_identity() -> Arc<ServedIdentity> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let chain = vec![CertificateDer::from(ck.cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    Arc::new(ServedIdentity {
        tls: Arc::new(tls_config(chain, key).unwrap()),
        attestation: None,
        not_after: None,
        description: "self-signed test certificate without evidence".into(),
    })
}

/// A configuration for tests: loopback listeners on free ports.
pub fn test_config(upstream: SocketAddr) -> Config {
    let mut c = Config::with_provider(ProviderKind::Sim);
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.metrics_listen = "127.0.0.1:0".parse().unwrap();
    c.upstream = Upstream::parse(&format!("http://{upstream}")).unwrap();
    c
}

/// Starts an agent with a self-signed identity in front of `upstream`.
pub async fn start_agent(upstream: SocketAddr, tweak: impl FnOnce(&mut Config)) -> Agent {
    let mut c = test_config(upstream);
    tweak(&mut c);
    Agent::start(c, IdentitySource::Static(self_signed_identity()))
        .await
        .expect("agent starts")
}

/// Waits until the agent reports ready.
pub async fn wait_ready(agent: &Agent) {
    within("agent ready", agent.readiness().wait_ready()).await;
}

/// A port with nothing listening (bound, then released).
pub fn dead_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

// ---------------------------------------------------------------- clients

/// A client configuration: the given TLS versions and ALPN protocols.
pub fn client_config(
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let mut c =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert))
            .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

/// A TLS 1.3 connection offering `alpn`.
pub async fn tls(addr: SocketAddr, alpn: &[&[u8]]) -> io::Result<TlsStream<TcpStream>> {
    tls_with(addr, client_config(&[&rustls::version::TLS13], alpn)).await
}

/// A TLS connection with a given client configuration.
pub async fn tls_with(
    addr: SocketAddr,
    cfg: Arc<ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(cfg)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// Request bodies of the test clients.
pub type ReqBody = BoxBody<Bytes, io::Error>;

/// An HTTP/1.1 (or HTTP/2) client connection.
pub enum Client {
    /// HTTP/1.1.
    H1(hyper::client::conn::http1::SendRequest<ReqBody>),
    /// HTTP/2.
    H2(hyper::client::conn::http2::SendRequest<ReqBody>),
}

impl Client {
    /// Connects with HTTP/1.1 (ALPN http/1.1).
    pub async fn h1(addr: SocketAddr) -> Self {
        let io = TokioIo::new(tls(addr, &[b"http/1.1"]).await.expect("TLS"));
        let (send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        Self::H1(send)
    }

    /// Connects with HTTP/2 (ALPN h2).
    pub async fn h2(addr: SocketAddr) -> Self {
        let s = tls(addr, &[b"h2"]).await.expect("TLS");
        assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
                .await
                .unwrap();
        tokio::spawn(conn);
        Self::H2(send)
    }

    /// Sends a request.
    pub async fn send(&mut self, req: Request<ReqBody>) -> hyper::Result<Response<Incoming>> {
        match self {
            Self::H1(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
            Self::H2(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
        }
    }

    /// Whether this is HTTP/2.
    pub fn is_h2(&self) -> bool {
        matches!(self, Self::H2(_))
    }
}

/// A request with a complete body and an `x-test` marker header.
pub fn req(method: &str, path: &str, body: &str) -> Request<ReqBody> {
    Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"))
        .header("x-test", "1")
        .header("content-type", "application/json")
        .body(
            Full::new(Bytes::from(body.to_string()))
                .map_err(|e| match e {})
                .boxed(),
        )
        .unwrap()
}

/// The whole body as text.
pub async fn text(resp: Response<Incoming>) -> String {
    let b = within("response body", resp.into_body().collect())
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8(b.to_vec()).expect("utf-8 body")
}

/// Checks the OpenAI error shape and returns the `code`.
pub fn error_code(body: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    let err = v["error"]
        .as_object()
        .unwrap_or_else(|| panic!("no error object: {body}"));
    let mut keys: Vec<_> = err.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["code", "message", "param", "type"], "{body}");
    assert!(err["param"].is_null(), "{body}");
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        matches!(
            err["type"].as_str(),
            Some("invalid_request_error" | "server_error")
        ),
        "{body}"
    );
    err["code"].as_str().expect("code is a string").to_string()
}

/// The next data frame of a response body (`None` at the end).
pub async fn next_chunk(body: &mut Incoming) -> Option<Result<Bytes, hyper::Error>> {
    loop {
        match within("next chunk", body.frame()).await? {
            Ok(f) => {
                if let Ok(d) = f.into_data() {
                    if !d.is_empty() {
                        return Some(Ok(d));
                    }
                }
            }
            Err(e) => return Some(Err(e)),
        }
    }
}

/// GET on the metrics listener, plain HTTP/1.1.
pub async fn metrics_get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake::<_, ReqBody>(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let r = Request::builder()
        .uri(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()).map_err(|e| match e {}).boxed())
        .unwrap();
    let resp: Response<Incoming> = send.send_request(r).await.unwrap();
    let status = resp.status();
    (status, text(resp).await)
}

// ---------------------------------------------------------------- RA-TLS

/// An RA-TLS connection (HTTP/2): the certificate is verified (development policy:
/// simulated evidence accepted) and its SPKI returned.
pub async fn ra_tls_client(
    addr: std::net::SocketAddr,
    cfg: &Arc<VerifierConfig>,
) -> (hyper::client::conn::http2::SendRequest<ReqBody>, Vec<u8>) {
    let v = Arc::new(RaTlsServerVerifier::new(cfg.clone()));
    let tls_cfg = chrysalis_ratls::client_config(v.clone()).unwrap();
    let s = tls_with(addr, Arc::new(tls_cfg))
        .await
        .expect("RA-TLS handshake");
    let peer = v.peer().expect("verified peer");
    assert!(peer.is_simulated());
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    (send, peer.spki_der().to_vec())
}
