//! Proxy benchmark and connection-load test: the agent against nginx (TLS
//! 1.3 reverse proxy) and against talking to the engine directly, in the
//! same run, with the same client and the same stub engine.
//!
//! `cargo bench -p chrysalis-agent --bench proxy -- [SCENARIO...]` (or
//! `bash agent/benches/compare.sh`), scenarios:
//!
//! * `latency`    — 1 connection, sequential non-streamed requests: p50/p99;
//!   (each scenario runs 5 interleaved rounds per path; medians reported)
//! * `throughput` — 64 connections, non-streamed: requests/s, p50/p99;
//! * `stream`     — 64 connections, streamed answers (64 tokens, 2 ms
//!   apart): tokens/s, time to first token, stream time;
//! * `idle`       — 10,000 idle TLS connections + slowloris clients, then
//!   fresh clients: RSS idle and per connection, whether new clients are
//!   served (agent and nginx);
//! * `attest`     — fresh evidence under load: an agent with
//!   `--sim-quote-latency 1s`; inference (16 connections) alone, then
//!   with 200 clients hammering `/attestation` (half `batch?nonce=`, half
//!   the per-quote `?nonce=`, each honouring `Retry-After`), interleaved
//!   rounds; then, still hammered, new clients (fresh RA-TLS verifier, new
//!   connection) fetch `/attestation/latest`: time to evidence, its age,
//!   verified;
//! * default: `latency throughput stream`; `all` adds `idle` and `attest`.
//!
//! `BENCH_BASELINE_AGENT=PATH` adds rows for another agent binary (e.g.
//! one built from an earlier commit) to the same rounds.
//!
//! The stub engine runs in its own process (this binary, `stub PORT`),
//! the agent is the release binary with `--provider sim`, nginx the Debian
//! package (rows skipped when `nginx` is not installed). Everything is on
//! 127.0.0.1; client, proxy and engine share the machine's cores, so the
//! numbers compare the three paths with each other, not with other
//! machines.

#[path = "../tests/common/any_cert.rs"]
mod any_cert;
use any_cert::AnyCert;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const STREAM_TOKENS: usize = 64;
const TOKEN_INTERVAL: Duration = Duration::from_millis(2);
const QUICK_BODY: &str = r#"{"model":"bench","messages":[{"role":"user","content":"hello"}]}"#;
const STREAM_BODY: &str =
    r#"{"model":"bench","stream":true,"messages":[{"role":"user","content":"hello"}]}"#;

fn main() {
    // `cargo test --all-targets` runs bench targets without `--bench`: the
    // numbers are for `cargo bench` only, so do nothing then.
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if !raw.iter().any(|a| a == "--bench") && raw.first().map(String::as_str) != Some("stub") {
        eprintln!("proxy benchmark: run it with `cargo bench -p chrysalis-agent --bench proxy`");
        return;
    }
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--bench"))
        .collect();
    raise_fd_limit();
    if args.first().map(String::as_str) == Some("stub") {
        let port: u16 = args[1].parse().expect("stub PORT");
        return run_stub(port);
    }
    let mut scenarios: Vec<&str> = args.iter().map(String::as_str).collect();
    if scenarios.is_empty() {
        scenarios = vec!["latency", "throughput", "stream"];
    }
    if scenarios == ["all"] {
        scenarios = vec!["latency", "throughput", "stream", "idle", "attest"];
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(&scenarios));
}

// ------------------------------------------------------------------ the stub

/// The stub engine: any POST gets a chat completion at once, or with
/// `"stream":true` 64 SSE tokens 2 ms apart; GET /v1/models a model list.
fn run_stub(port: u16) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(stub_handle);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
}

type StubBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

async fn stub_handle(req: Request<Incoming>) -> Result<Response<StubBody>, std::io::Error> {
    let get = req.method() == http::Method::GET;
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    let stream = memchr::memmem::find(&body, b"\"stream\":true").is_some();
    if get {
        return Ok(json(
            r#"{"object":"list","data":[{"id":"bench","object":"model"}]}"#,
        ));
    }
    if !stream {
        return Ok(json(
            r#"{"id":"chatcmpl-bench","object":"chat.completion","created":0,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! This is a short benchmark answer."},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}"#,
        ));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TOKEN_INTERVAL);
        for i in 0..STREAM_TOKENS {
            tick.tick().await;
            let c = format!("data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":0,\"model\":\"bench\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} \"}},\"finish_reason\":null}}]}}\n\n");
            if tx.send(Bytes::from(c)).await.is_err() {
                return;
            }
        }
        let _ = tx
            .send(Bytes::from_static(b"data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":64,\"total_tokens\":73}}\n\ndata: [DONE]\n\n"))
            .await;
    });
    let mut r = Response::new(BodyExt::boxed(ChannelBody(rx)));
    r.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    Ok(r)
}

struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|b| Ok(http_body::Frame::data(b))))
    }
}

fn json(s: &'static str) -> Response<StubBody> {
    let mut r = Response::new(Full::new(Bytes::from_static(s.as_bytes())).boxed());
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

// ------------------------------------------------------------- processes

/// A child process stopped (SIGTERM, then SIGKILL) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..50 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn wait_port(addr: SocketAddr, what: &str) {
    for _ in 0..600 {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not listen on {addr} within 30 s");
}

/// `GET /readyz` over plain HTTP answers 200.
async fn ready(addr: SocketAddr) -> bool {
    let Ok(tcp) = TcpStream::connect(addr).await else {
        return false;
    };
    let Ok((mut send, conn)) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tcp)).await
    else {
        return false;
    };
    tokio::spawn(conn);
    let r = Request::get("/readyz")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    matches!(send.send_request(r).await, Ok(resp) if resp.status() == 200)
}

fn start_stub() -> (Proc, SocketAddr) {
    let port = free_port();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["stub", &port.to_string()])
        .stdin(Stdio::null())
        .spawn()
        .expect("stub engine");
    (Proc(child), SocketAddr::from(([127, 0, 0, 1], port)))
}

async fn start_agent(upstream: SocketAddr) -> (Proc, SocketAddr, u32) {
    start_agent_with(
        Path::new(env!("CARGO_BIN_EXE_chrysalis-agent")),
        upstream,
        &[],
    )
    .await
}

async fn start_agent_with(
    bin: &Path,
    upstream: SocketAddr,
    extra: &[&str],
) -> (Proc, SocketAddr, u32) {
    let (port, mport) = (free_port(), free_port());
    let mut cmd = Command::new(bin);
    cmd.args([
        "--provider",
        "sim",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--metrics-listen",
        &format!("127.0.0.1:{mport}"),
        "--upstream",
        &format!("http://{upstream}"),
        "--max-connections",
        "100000",
        "--max-concurrent-requests",
        "4096",
    ])
    .args(extra)
    .env("RUST_LOG", "warn")
    .stdin(Stdio::null())
    .stderr(Stdio::null());
    // Experiments: `BENCH_AGENT_WORKERS=N` sets the agent's worker threads.
    if let Some(w) = std::env::var_os("BENCH_AGENT_WORKERS") {
        cmd.arg("--workers").arg(w);
    }
    let child = cmd.spawn().expect("agent binary");
    let pid = child.id();
    let proc = Proc(child);
    let maddr = SocketAddr::from(([127, 0, 0, 1], mport));
    for _ in 0..600 {
        if ready(maddr).await {
            return (proc, SocketAddr::from(([127, 0, 0, 1], port)), pid);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the agent did not become ready within 30 s");
}

fn nginx_path() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// nginx as a TLS 1.3 reverse proxy to `upstream` (HTTP/1.1 keep-alive
/// pool, no response buffering so streams pass through, no access log).
async fn start_nginx(upstream: SocketAddr, dir: &Path) -> Option<(Proc, SocketAddr, u32)> {
    let nginx = nginx_path()?;
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
    let port = free_port();
    let d = dir.display();
    let conf = format!(
        r#"daemon off;
user root;
worker_processes auto;
worker_rlimit_nofile 20000;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 20000; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  keepalive_requests 1000000;
  client_max_body_size 8m;
  upstream engine {{ server {upstream}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {d}/cert.pem;
    ssl_certificate_key {d}/key.pem;
    ssl_protocols TLSv1.3;
    ssl_session_tickets off;
    ssl_session_cache off;
    location / {{
      proxy_pass http://engine;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"#
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new(nginx)
        .args(["-e", &format!("{d}/error.log"), "-p", &d.to_string(), "-c"])
        .arg(dir.join("nginx.conf"))
        .stdin(Stdio::null())
        .spawn()
        .ok()?;
    let pid = child.id();
    let proc = Proc(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_port(addr, "nginx").await;
    Some((proc, addr, pid))
}

/// Resident memory of `pid` and its children, KiB.
fn rss_kib(pid: u32) -> u64 {
    let mut pids = vec![pid];
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            // ppid is the 2nd field after the ")" that ends the command.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u32>().ok());
            if ppid == Some(pid) {
                pids.push(p);
            }
        }
    }
    pids.iter()
        .map(|p| {
            std::fs::read_to_string(format!("/proc/{p}/status"))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

// ------------------------------------------------------------- clients

fn plain_tls(alpn: &[u8]) -> Arc<ClientConfig> {
    let mut c =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert))
            .with_no_client_auth();
    c.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(c)
}

/// RA-TLS client: verifies the agent's simulated evidence (development
/// policy) once per certificate (the verifier caches).
fn ra_tls(alpn: &[u8]) -> Arc<ClientConfig> {
    let cfg = Arc::new(chrysalis_ratls::VerifierConfig::new(
        chrysalis_attestation::Policy::default().allow_simulated(true),
    ));
    let v = Arc::new(chrysalis_ratls::RaTlsServerVerifier::new(cfg));
    let opts = chrysalis_ratls::ClientOptions {
        alpn: vec![alpn.to_vec()],
        ..Default::default()
    };
    Arc::new(chrysalis_ratls::client_config_with(v, &opts).unwrap())
}

#[derive(Clone)]
enum Target {
    Plain(SocketAddr),
    Tls {
        addr: SocketAddr,
        cfg: Arc<ClientConfig>,
        h2: bool,
    },
}

enum Conn {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

async fn tls_stream(
    addr: SocketAddr,
    cfg: &Arc<ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    TlsConnector::from(cfg.clone())
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

async fn connect(t: &Target) -> std::io::Result<Conn> {
    let err = std::io::Error::other;
    match t {
        Target::Plain(addr) => {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let (s, c) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(err)?;
            tokio::spawn(c);
            Ok(Conn::H1(s))
        }
        Target::Tls { addr, cfg, h2 } => {
            let io = TokioIo::new(tls_stream(*addr, cfg).await?);
            if *h2 {
                let (s, c) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(err)?;
                tokio::spawn(c);
                Ok(Conn::H2(s))
            } else {
                let (s, c) = hyper::client::conn::http1::handshake(io)
                    .await
                    .map_err(err)?;
                tokio::spawn(c);
                Ok(Conn::H1(s))
            }
        }
    }
}

fn chat_request(stream: bool, h2: bool) -> Request<Full<Bytes>> {
    let mut b = Request::post("https://localhost/v1/chat/completions");
    if !h2 {
        // HTTP/2 names the host in :authority; nginx refuses both.
        b = b.header("host", "localhost");
    }
    b.header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(if stream {
            STREAM_BODY.as_bytes()
        } else {
            QUICK_BODY.as_bytes()
        })))
        .unwrap()
}

impl Conn {
    async fn send(&mut self, r: Request<Full<Bytes>>) -> hyper::Result<Response<Incoming>> {
        match self {
            Conn::H1(s) => {
                s.ready().await?;
                s.send_request(r).await
            }
            Conn::H2(s) => {
                s.ready().await?;
                s.send_request(r).await
            }
        }
    }
}

#[derive(Default)]
struct Samples {
    latency_us: Vec<u32>,
    ttft_us: Vec<u32>,
    tokens: u64,
    errors: u64,
}

/// One request; (latency, time to first body byte, tokens that arrived
/// within `window`).
async fn one(
    c: &mut Conn,
    stream: bool,
    window: (Instant, Instant),
) -> Result<(Duration, Duration, u64), String> {
    let t0 = Instant::now();
    let h2 = matches!(c, Conn::H2(_));
    let resp = c
        .send(chat_request(stream, h2))
        .await
        .map_err(|e| e.to_string())?;
    if resp.status() != 200 {
        return Err(format!("status {}", resp.status()));
    }
    let mut body = resp.into_body();
    let mut first = None;
    let mut tokens = 0u64;
    while let Some(f) = body.frame().await {
        let f = f.map_err(|e| e.to_string())?;
        if let Ok(d) = f.into_data() {
            first.get_or_insert_with(|| t0.elapsed());
            let now = Instant::now();
            if now >= window.0 && now <= window.1 {
                tokens += memchr::memmem::find_iter(&d, b"\"delta\"").count() as u64;
            }
        }
    }
    let total = t0.elapsed();
    Ok((total, first.unwrap_or(total), tokens))
}

struct Stats {
    rps: f64,
    tokens_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    ttft_p50_ms: f64,
    errors: u64,
}

fn pct(v: &mut [u32], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    f64::from(v[i]) / 1000.0
}

/// `conns` connections sending back to back for `warmup` + `measure`;
/// only requests started after the warm-up count.
async fn load(
    t: &Target,
    conns: usize,
    stream: bool,
    warmup: Duration,
    measure: Duration,
) -> Stats {
    let start = Instant::now();
    let counted_from = start + warmup;
    let end = counted_from + measure;
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = Samples::default();
            let mut c = match connect(&t).await {
                Ok(c) => c,
                Err(_) => {
                    s.errors += 1;
                    return s;
                }
            };
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                match one(&mut c, stream, (counted_from, end)).await {
                    Ok((lat, ttft, tokens)) => {
                        // Tokens count by arrival time (streams straddle
                        // the window's edges); requests when they both
                        // start and end inside it.
                        s.tokens += tokens;
                        if t0 >= counted_from && Instant::now() <= end {
                            s.latency_us.push(lat.as_micros() as u32);
                            s.ttft_us.push(ttft.as_micros() as u32);
                        }
                    }
                    Err(e) => {
                        if s.errors == 0 && std::env::var_os("BENCH_DEBUG").is_some() {
                            eprintln!("request failed: {e}");
                        }
                        s.errors += 1;
                        match connect(&t).await {
                            Ok(n) => c = n,
                            Err(_) => break,
                        }
                    }
                }
            }
            s
        }));
    }
    let mut all = Samples::default();
    for t in tasks {
        let s = t.await.unwrap();
        all.latency_us.extend(s.latency_us);
        all.ttft_us.extend(s.ttft_us);
        all.tokens += s.tokens;
        all.errors += s.errors;
    }
    let secs = measure.as_secs_f64();
    Stats {
        rps: all.latency_us.len() as f64 / secs,
        tokens_per_s: all.tokens as f64 / secs,
        p50_ms: pct(&mut all.latency_us, 0.50),
        p99_ms: pct(&mut all.latency_us, 0.99),
        ttft_p50_ms: pct(&mut all.ttft_us, 0.50),
        errors: all.errors,
    }
}

/// Rounds per scenario.
const ROUNDS: usize = 5;

/// Field-wise median over rounds (errors summed).
fn median(mut runs: Vec<Stats>) -> Stats {
    fn med(runs: &mut [Stats], f: impl Fn(&Stats) -> f64) -> f64 {
        let mut v: Vec<f64> = runs.iter().map(&f).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    }
    Stats {
        rps: med(&mut runs, |s| s.rps),
        tokens_per_s: med(&mut runs, |s| s.tokens_per_s),
        p50_ms: med(&mut runs, |s| s.p50_ms),
        p99_ms: med(&mut runs, |s| s.p99_ms),
        ttft_p50_ms: med(&mut runs, |s| s.ttft_p50_ms),
        errors: runs.iter().map(|s| s.errors).sum(),
    }
}

// ------------------------------------------------------------- idle load

struct IdleStats {
    rss_idle_kib: u64,
    rss_loaded_kib: u64,
    opened: usize,
    failed_to_open: usize,
    slowloris: usize,
    new_ok: usize,
    new_total: usize,
    new_p50_ms: f64,
    new_p99_ms: f64,
}

const IDLE_CONNS: usize = 10_000;
const SLOWLORIS: usize = 100;
const NEW_CLIENTS: usize = 200;

async fn idle_load(addr: SocketAddr, cfg: Arc<ClientConfig>, pid: u32) -> IdleStats {
    // A warm request first, so that lazily made state is in the baseline.
    let t = Target::Tls {
        addr,
        cfg: cfg.clone(),
        h2: false,
    };
    let mut c = connect(&t).await.unwrap();
    one(&mut c, false, (Instant::now(), Instant::now()))
        .await
        .unwrap();
    drop(c);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle_kib = rss_kib(pid);

    // 10,000 TLS connections that then say nothing.
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut opening = Vec::new();
    for _ in 0..IDLE_CONNS {
        let (sem, cfg) = (sem.clone(), cfg.clone());
        opening.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await.unwrap();
            tls_stream(addr, &cfg).await
        }));
    }
    let mut idle = Vec::new();
    let mut failed_to_open = 0;
    for o in opening {
        match o.await.unwrap() {
            Ok(s) => idle.push(s),
            Err(_) => failed_to_open += 1,
        }
    }
    // Slowloris: request heads that never end, one header line per second.
    let stop = Arc::new(tokio::sync::Notify::new());
    let mut lorises = Vec::new();
    for _ in 0..SLOWLORIS {
        let (cfg, stop) = (cfg.clone(), stop.clone());
        lorises.push(tokio::spawn(async move {
            let Ok(mut s) = tls_stream(addr, &cfg).await else {
                return false;
            };
            if s
                .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\n")
                .await
                .is_err()
            {
                return false;
            }
            loop {
                tokio::select! {
                    _ = stop.notified() => return true,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {
                        if s.write_all(b"x-slow: y\r\n").await.is_err() || s.flush().await.is_err() {
                            return false;
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_loaded_kib = rss_kib(pid);
    // Fresh clients: handshake + one request each, while all that is open.
    let mut lat = Vec::new();
    let mut new_ok = 0;
    for _ in 0..NEW_CLIENTS {
        let t0 = Instant::now();
        let ok = match connect(&t).await {
            Ok(mut c) => one(&mut c, false, (Instant::now(), Instant::now()))
                .await
                .is_ok(),
            Err(_) => false,
        };
        if ok {
            new_ok += 1;
            lat.push(t0.elapsed().as_micros() as u32);
        }
    }
    stop.notify_waiters();
    let mut slowloris = 0;
    for l in lorises {
        // `true`: its connection was still open (within idle_timeout).
        if tokio::time::timeout(Duration::from_secs(5), l)
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or(false)
        {
            slowloris += 1;
        }
    }
    let opened = idle.len();
    drop(idle);
    IdleStats {
        rss_idle_kib,
        rss_loaded_kib,
        opened,
        failed_to_open,
        slowloris,
        new_ok,
        new_total: NEW_CLIENTS,
        new_p50_ms: pct(&mut lat, 0.5),
        new_p99_ms: pct(&mut lat, 0.99),
    }
}

// ------------------------------------------------------------- the run

async fn run(scenarios: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (_stub, engine) = start_stub();
    wait_port(engine, "stub engine").await;
    let (_agent, agent_addr, agent_pid) = start_agent(engine).await;
    let baseline = match std::env::var_os("BENCH_BASELINE_AGENT") {
        Some(bin) => Some(start_agent_with(Path::new(&bin), engine, &[]).await),
        None => None,
    };
    let nginx = start_nginx(engine, dir.path()).await;
    if nginx.is_none() {
        eprintln!("nginx not found (apt-get install nginx-light): its rows are skipped");
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("# chrysalis-agent proxy benchmark ({cpus} CPUs; client, proxy and stub engine share them)\n");

    let mut targets: Vec<(&str, Target)> = vec![
        ("direct (plain HTTP/1.1)", Target::Plain(engine)),
        (
            "agent (TLS 1.3, HTTP/1.1)",
            Target::Tls {
                addr: agent_addr,
                cfg: ra_tls(b"http/1.1"),
                h2: false,
            },
        ),
    ];
    if let Some((_, addr, _)) = &baseline {
        targets.push((
            "baseline agent (TLS 1.3, HTTP/1.1)",
            Target::Tls {
                addr: *addr,
                cfg: ra_tls(b"http/1.1"),
                h2: false,
            },
        ));
    }
    if let Some((_, addr, _)) = &nginx {
        targets.push((
            "nginx (TLS 1.3, HTTP/1.1)",
            Target::Tls {
                addr: *addr,
                cfg: plain_tls(b"http/1.1"),
                h2: false,
            },
        ));
    }
    targets.push((
        "agent (TLS 1.3, HTTP/2)",
        Target::Tls {
            addr: agent_addr,
            cfg: ra_tls(b"h2"),
            h2: true,
        },
    ));
    if let Some((_, addr, _)) = &baseline {
        targets.push((
            "baseline agent (TLS 1.3, HTTP/2)",
            Target::Tls {
                addr: *addr,
                cfg: ra_tls(b"h2"),
                h2: true,
            },
        ));
    }
    if let Some((_, addr, _)) = &nginx {
        targets.push((
            "nginx (TLS 1.3, HTTP/2)",
            Target::Tls {
                addr: *addr,
                cfg: plain_tls(b"h2"),
                h2: true,
            },
        ));
    }

    // Experiments: `BENCH_H1_ONLY=1` leaves out the HTTP/2 rows.
    if std::env::var_os("BENCH_H1_ONLY").is_some() {
        targets.retain(|(l, _)| !l.contains("HTTP/2"));
    }
    let plan: Vec<(&str, usize, bool, Duration)> = scenarios
        .iter()
        .filter_map(|s| match *s {
            "latency" => Some(("latency", 1, false, Duration::from_secs(3))),
            "throughput" => Some(("throughput", 64, false, Duration::from_secs(4))),
            "stream" => Some(("stream", 64, true, Duration::from_secs(4))),
            _ => None,
        })
        .collect();
    if !plan.is_empty() {
        println!(
            "| scenario | path | req/s | tokens/s | p50 ms | p99 ms | first byte p50 ms | errors |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|");
    }
    let mut summary = Vec::new();
    for (name, conns, stream, measure) in &plan {
        // Rounds interleave the paths, so that drift in what else the
        // machine does is spread over all of them; each figure is the
        // median over the rounds.
        let mut runs: Vec<Vec<Stats>> = targets.iter().map(|_| Vec::new()).collect();
        for _ in 0..ROUNDS {
            for (i, (_, t)) in targets.iter().enumerate() {
                runs[i].push(load(t, *conns, *stream, Duration::from_secs(1), *measure).await);
            }
        }
        let mut row = Vec::new();
        for ((label, _), r) in targets.iter().zip(runs) {
            let s = median(r);
            println!(
                "| {name} ({conns} conn) | {label} | {:.0} | {} | {:.3} | {:.3} | {:.3} | {} |",
                s.rps,
                if *stream {
                    format!("{:.0}", s.tokens_per_s)
                } else {
                    "–".into()
                },
                s.p50_ms,
                s.p99_ms,
                s.ttft_p50_ms,
                s.errors
            );
            let _ = std::io::stdout().flush();
            row.push((*label, s));
        }
        summary.push((*name, row));
    }
    if !summary.is_empty() {
        println!();
    }
    for (name, row) in &summary {
        let get = |p: &str| row.iter().find(|(l, _)| l.starts_with(p)).map(|(_, s)| s);
        let (Some(direct), Some(agent)) = (get("direct"), get("agent (TLS 1.3, HTTP/1.1)")) else {
            continue;
        };
        match *name {
            "latency" => println!(
                "latency: agent adds {:.3} ms at p50 over direct (goal <= 0.2 ms){}{}",
                agent.p50_ms - direct.p50_ms,
                get("nginx (TLS 1.3, HTTP/1.1)")
                    .map(|n| format!("; nginx adds {:.3} ms", n.p50_ms - direct.p50_ms))
                    .unwrap_or_default(),
                get("baseline agent (TLS 1.3, HTTP/1.1)")
                    .map(|b| format!("; baseline agent adds {:.3} ms", b.p50_ms - direct.p50_ms))
                    .unwrap_or_default()
            ),
            "throughput" => {
                if let Some(b) = get("baseline agent (TLS 1.3, HTTP/1.1)") {
                    println!(
                        "throughput: agent / baseline agent = {:.2} over HTTP/1.1",
                        agent.rps / b.rps
                    );
                }
                if let Some(n) = get("nginx (TLS 1.3, HTTP/1.1)") {
                    println!(
                        "throughput: agent / nginx = {:.2} over HTTP/1.1 (goal >= 1.0){}",
                        agent.rps / n.rps,
                        match (
                            get("agent (TLS 1.3, HTTP/2)"),
                            get("nginx (TLS 1.3, HTTP/2)")
                        ) {
                            (Some(a2), Some(n2)) => format!(", {:.2} over HTTP/2", a2.rps / n2.rps),
                            _ => String::new(),
                        }
                    );
                }
            }
            "stream" => println!(
                "stream: agent / direct tokens/s = {:.3} (goal >= 0.99){}{}",
                agent.tokens_per_s / direct.tokens_per_s,
                get("baseline agent (TLS 1.3, HTTP/1.1)")
                    .map(|b| format!(
                        "; baseline agent / direct = {:.3}",
                        b.tokens_per_s / direct.tokens_per_s
                    ))
                    .unwrap_or_default(),
                get("nginx (TLS 1.3, HTTP/1.1)")
                    .map(|n| format!(
                        "; nginx / direct = {:.3}",
                        n.tokens_per_s / direct.tokens_per_s
                    ))
                    .unwrap_or_default()
            ),
            _ => {}
        }
    }

    if scenarios.contains(&"idle") {
        println!(
            "\n## {IDLE_CONNS} idle TLS connections + {SLOWLORIS} slowloris clients, then {NEW_CLIENTS} new clients\n"
        );
        println!("| server | RSS idle MiB | RSS loaded MiB | per connection KiB | opened | slowloris open | new clients served | new p50 ms | new p99 ms |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        let mut runs = vec![("agent", agent_addr, ra_tls(b"http/1.1"), agent_pid)];
        if let Some((_, addr, pid)) = &baseline {
            runs.push(("baseline agent", *addr, ra_tls(b"http/1.1"), *pid));
        }
        if let Some((_, addr, pid)) = &nginx {
            runs.push(("nginx", *addr, plain_tls(b"http/1.1"), *pid));
        }
        for (label, addr, cfg, pid) in runs {
            let s = idle_load(addr, cfg, pid).await;
            let open = (s.opened + s.slowloris).max(1) as f64;
            println!(
                "| {label} | {:.1} | {:.1} | {:.1} | {}/{} | {}/{} | {}/{} | {:.2} | {:.2} |",
                s.rss_idle_kib as f64 / 1024.0,
                s.rss_loaded_kib as f64 / 1024.0,
                (s.rss_loaded_kib.saturating_sub(s.rss_idle_kib)) as f64 / open,
                s.opened,
                s.opened + s.failed_to_open,
                s.slowloris,
                SLOWLORIS,
                s.new_ok,
                s.new_total,
                s.new_p50_ms,
                s.new_p99_ms
            );
            let _ = std::io::stdout().flush();
            // Let the server close what was dropped before the next run.
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    if scenarios.contains(&"attest") {
        attest_scenario(engine).await;
    }
    drop(nginx);
    drop(baseline);
}

// ------------------------------------------------------- fresh evidence

/// Clients hammering `/attestation` in the `attest` scenario.
const HAMMER_CLIENTS: usize = 200;
/// Inference connections measured in the `attest` scenario.
const ATTEST_CONNS: usize = 16;
/// Rounds of the `attest` scenario (each: alone, then hammered).
const ATTEST_ROUNDS: usize = 5;
/// The documented bound N of `/attestation/latest` with the default
/// refresh interval (5 s): 2 × 5 s.
const FRESH_BOUND: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Hammered {
    answers: std::sync::atomic::AtomicU64,
    refused: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
    max_window: std::sync::atomic::AtomicU64,
}

fn nonce_hex() -> String {
    use rand_core::RngCore;
    let mut n = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut n);
    hex::encode(n)
}

/// One hammering client until `stop`: back to back, half of them
/// `batch?nonce=`, half the per-quote `?nonce=`, sleeping `Retry-After`
/// when refused.
async fn hammer(
    addr: SocketAddr,
    batch: bool,
    stats: Arc<Hammered>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let t = Target::Tls {
        addr,
        cfg: ra_tls(b"h2"),
        h2: true,
    };
    let Ok(mut c) = connect(&t).await else {
        stats.failed.fetch_add(1, Relaxed);
        return;
    };
    while !stop.load(Relaxed) {
        let path = if batch {
            format!("https://localhost/attestation/batch?nonce={}", nonce_hex())
        } else {
            format!("https://localhost/attestation?nonce={}", nonce_hex())
        };
        let r = Request::get(path).body(Full::new(Bytes::new())).unwrap();
        let resp = match c.send(r).await {
            Ok(r) => r,
            Err(_) => {
                stats.failed.fetch_add(1, Relaxed);
                match connect(&t).await {
                    Ok(n) => c = n,
                    Err(_) => return,
                }
                continue;
            }
        };
        let status = resp.status();
        let retry = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let Ok(body) = resp.into_body().collect().await else {
            stats.failed.fetch_add(1, Relaxed);
            continue;
        };
        if status == 200 {
            stats.answers.fetch_add(1, Relaxed);
            if batch {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body.to_bytes()) {
                    let seq = v["window"]["sequence"].as_u64().unwrap_or(0);
                    stats.max_window.fetch_max(seq, Relaxed);
                }
            }
        } else if status == 503 {
            stats.refused.fetch_add(1, Relaxed);
            tokio::time::sleep(Duration::from_secs(retry.unwrap_or(1))).await;
        } else {
            stats.failed.fetch_add(1, Relaxed);
        }
    }
}

/// New clients until `end`, one every 100 ms: a fresh RA-TLS verifier, a
/// new connection, `GET /attestation/latest`. Returns (time to the
/// evidence µs, age of the evidence s, verified) per client.
async fn new_clients(addr: SocketAddr, end: Instant) -> Vec<(u32, i64, bool)> {
    let cfg = Arc::new(chrysalis_ratls::VerifierConfig::new(
        chrysalis_attestation::Policy::default().allow_simulated(true),
    ));
    let mut out = Vec::new();
    while Instant::now() < end {
        let t0 = Instant::now();
        let v = Arc::new(chrysalis_ratls::RaTlsServerVerifier::new(cfg.clone()));
        let opts = chrysalis_ratls::ClientOptions {
            alpn: vec![b"h2".to_vec()],
            ..Default::default()
        };
        let tls = Arc::new(chrysalis_ratls::client_config_with(v.clone(), &opts).unwrap());
        let got = async {
            let io = TokioIo::new(tls_stream(addr, &tls).await.ok()?);
            let (mut s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .ok()?;
            tokio::spawn(conn);
            let r = Request::get("https://localhost/attestation/latest")
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = s.send_request(r).await.ok()?;
            if resp.status() != 200 {
                return None;
            }
            Some(resp.into_body().collect().await.ok()?.to_bytes())
        }
        .await;
        let took = t0.elapsed().as_micros() as u32;
        let (age, ok) = match (got, v.peer()) {
            (Some(body), Some(peer)) => {
                let now = time::OffsetDateTime::now_utc();
                let text = String::from_utf8_lossy(&body);
                match chrysalis_agent::fresh::BatchedEvidence::from_json(&text) {
                    Ok(ans) => {
                        let age = chrysalis_ratls::Claims::from_der(&ans.fresh.claims)
                            .map(|c| (now - c.created_at).whole_seconds())
                            .unwrap_or(i64::MAX);
                        let ok = chrysalis_agent::fresh::verify_batched(
                            &ans,
                            peer.spki_der(),
                            None,
                            None,
                            FRESH_BOUND,
                            &cfg,
                            now,
                        )
                        .is_ok();
                        (age, ok)
                    }
                    Err(_) => (i64::MAX, false),
                }
            }
            _ => (i64::MAX, false),
        };
        out.push((took, age, ok));
        tokio::time::sleep(Duration::from_millis(100).saturating_sub(t0.elapsed())).await;
    }
    out
}

async fn attest_scenario(engine: SocketAddr) {
    use std::sync::atomic::Ordering::Relaxed;
    let (_agent, addr, _) = start_agent_with(
        Path::new(env!("CARGO_BIN_EXE_chrysalis-agent")),
        engine,
        &["--sim-quote-latency", "1s"],
    )
    .await;
    let infer = Target::Tls {
        addr,
        cfg: ra_tls(b"http/1.1"),
        h2: false,
    };
    // The first window (one quote) before measuring.
    let _ = new_clients(addr, Instant::now()).await;
    let (mut alone, mut loaded, mut clients) = (Vec::new(), Vec::new(), Vec::new());
    let stats = Arc::new(Hammered::default());
    for _ in 0..ATTEST_ROUNDS {
        alone.push(
            load(
                &infer,
                ATTEST_CONNS,
                false,
                Duration::from_secs(1),
                Duration::from_secs(4),
            )
            .await,
        );
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hammers: Vec<_> = (0..HAMMER_CLIENTS)
            .map(|i| tokio::spawn(hammer(addr, i % 2 == 0, stats.clone(), stop.clone())))
            .collect();
        // Let the hammering reach its steady state (every client waiting
        // for a window or a Retry-After).
        tokio::time::sleep(Duration::from_secs(3)).await;
        loaded.push(
            load(
                &infer,
                ATTEST_CONNS,
                false,
                Duration::from_secs(1),
                Duration::from_secs(4),
            )
            .await,
        );
        // New clients while the hammering goes on (not during the
        // inference measurement: their handshakes would count against it).
        clients.extend(new_clients(addr, Instant::now() + Duration::from_secs(4)).await);
        stop.store(true, Relaxed);
        for h in hammers {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
    }
    let (a, l) = (median(alone), median(loaded));
    println!(
        "\n## Fresh evidence under load: quote latency 1 s (--sim-quote-latency), {HAMMER_CLIENTS} clients hammering /attestation\n"
    );
    println!("| inference ({ATTEST_CONNS} conn, HTTP/1.1) | req/s | p50 ms | p99 ms | errors |");
    println!("|---|---:|---:|---:|---:|");
    for (label, s) in [("alone", &a), ("with the hammering", &l)] {
        println!(
            "| {label} | {:.0} | {:.3} | {:.3} | {} |",
            s.rps, s.p50_ms, s.p99_ms, s.errors
        );
    }
    println!(
        "\ninference with / without the hammering: throughput {:.3}, p50 {:.3}, p99 {:.3} (goal: each within 5 %)",
        l.rps / a.rps,
        l.p50_ms / a.p50_ms,
        l.p99_ms / a.p99_ms
    );
    let mut took: Vec<u32> = clients.iter().map(|c| c.0).collect();
    let max_age = clients.iter().map(|c| c.1).max().unwrap_or(i64::MAX);
    let verified = clients.iter().filter(|c| c.2).count();
    println!(
        "new clients (fresh verifier + connection + GET /attestation/latest): {} clients, evidence p50 {:.2} ms, p99 {:.2} ms (goal p99 < 50 ms); oldest evidence {} s (bound N = {} s); verified {}/{}",
        clients.len(),
        pct(&mut took, 0.5),
        pct(&mut took, 0.99),
        max_age,
        FRESH_BOUND.as_secs(),
        verified,
        clients.len()
    );
    println!(
        "hammering clients: {} answers, {} refused with 503 + Retry-After, {} failed; batch windows quoted: {}",
        stats.answers.load(Relaxed),
        stats.refused.load(Relaxed),
        stats.failed.load(Relaxed),
        stats.max_window.load(Relaxed)
    );
}
