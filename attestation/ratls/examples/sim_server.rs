//! A tiny RA-TLS server with simulated evidence, for clients written in
//! other languages (see `tests/py/ratls_check.py`).
//!
//! ```text
//! cargo run -p chrysalis-ratls --example sim_server -- [--tee tdx|snp]
//!     [--listen 127.0.0.1:0] [--max-connections 8]
//! ```
//!
//! It generates an identity on a simulated TDX platform (or SNP chip) with
//! the simulator's collateral embedded, binds the address, prints one line
//! `LISTENING ADDR:PORT` on stdout, and answers every TLS 1.3 connection
//! with `HTTP/1.1 200 OK` and the body `hello`. It exits after
//! `--max-connections` connections or 60 s, whichever comes first, so a
//! test that forgets it cannot leave it running.
//!
//! The simulator's roots are generated at start-up and never pinned: a
//! client accepts this server only with a development policy
//! (`Policy::allow_simulated`).
#![forbid(unsafe_code)]

use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chrysalis_attestation::verifier::Collateral;
use chrysalis_attestation::Tee;
use chrysalis_ratls::{server_config, EmbeddedCollateral, IdentityOptions, RaTlsIdentity};
use chrysalis_sim::SimProvider;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// How long the server runs at most.
pub const LIFETIME: Duration = Duration::from_secs(60);
/// How long one connection may take (handshake, request, answer).
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head read, in bytes; the rest is ignored.
const MAX_REQUEST: usize = 16 * 1024;
/// The whole answer: the body is `hello`.
pub const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";

/// Command line of the example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// The simulated TEE.
    pub tee: Tee,
    /// Address to bind.
    pub listen: SocketAddr,
    /// Connections to accept before exiting.
    pub max_connections: usize,
}

impl Args {
    /// Parses `--tee tdx|snp`, `--listen ADDR` and `--max-connections N`.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut out = Args {
            tee: Tee::Tdx,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_connections: 8,
        };
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--tee" => {
                    out.tee = match value()?.as_str() {
                        "tdx" => Tee::Tdx,
                        "snp" => Tee::Snp,
                        other => return Err(format!("--tee {other}: expected tdx or snp")),
                    }
                }
                "--listen" => {
                    let v = value()?;
                    out.listen = v.parse().map_err(|e| format!("--listen {v}: {e}"))?;
                }
                "--max-connections" => {
                    let v = value()?;
                    out.max_connections = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("--max-connections {v}: expected a positive integer")
                    })?;
                }
                other => return Err(format!("unknown argument {other}")),
            }
        }
        Ok(out)
    }
}

/// An RA-TLS identity with evidence from a fresh simulated `tee`, the
/// simulator's collateral embedded (so a client needs none of its own).
pub fn sim_identity(tee: Tee) -> chrysalis_ratls::Result<RaTlsIdentity> {
    let sim = SimProvider::new(tee)?;
    let collateral = match (sim.tdx_collateral(), sim.snp_certificates()) {
        (Some(t), _) => Some(Collateral::Tdx(t)),
        (None, Some(s)) => Some(Collateral::Snp(s)),
        (None, None) => None,
    };
    let opts = IdentityOptions {
        collateral: collateral.as_ref().map(EmbeddedCollateral::from_collateral),
        ..IdentityOptions::default()
    };
    RaTlsIdentity::generate(&sim, &opts)
}

/// Accepts up to `max_connections` connections on `listener` and answers
/// each with [`RESPONSE`]; returns how many were answered without error.
/// Stops accepting when `lifetime` is over and gives connections still in
/// progress at most [`CONNECTION_TIMEOUT`] more.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    max_connections: usize,
    lifetime: Duration,
) -> usize {
    let mut tasks = JoinSet::new();
    let accept_all = async {
        for _ in 0..max_connections {
            match listener.accept().await {
                Ok((tcp, _)) => {
                    let acceptor = acceptor.clone();
                    tasks.spawn(tokio::time::timeout(
                        CONNECTION_TIMEOUT,
                        answer(acceptor, tcp),
                    ));
                }
                Err(e) => eprintln!("sim_server: accept: {e}"),
            }
        }
    };
    // A deadline, not a measurement: the server must not outlive a test.
    let _ = tokio::time::timeout(lifetime, accept_all).await;
    let mut answered = 0;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(Ok(()))) => answered += 1,
            Ok(Ok(Err(e))) => eprintln!("sim_server: connection: {e}"),
            Ok(Err(_)) => eprintln!("sim_server: connection timed out"),
            Err(e) => eprintln!("sim_server: connection task: {e}"),
        }
    }
    answered
}

/// One connection: TLS handshake, read the request head, answer `hello`,
/// close_notify.
async fn answer(acceptor: TlsAcceptor, tcp: TcpStream) -> io::Result<()> {
    let mut tls = acceptor.accept(tcp).await?;
    let mut request = Vec::new();
    let mut buf = [0u8; 2048];
    // Any request gets the same answer: read until the end of the head, the
    // peer's EOF, or MAX_REQUEST bytes.
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
        let n = tls.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    tls.write_all(RESPONSE).await?;
    tls.flush().await?;
    tls.shutdown().await
}

async fn run(args: Args) -> Result<usize, Box<dyn std::error::Error>> {
    let identity = sim_identity(args.tee)?;
    let acceptor = TlsAcceptor::from(Arc::new(server_config(&identity, None)?));
    let listener = TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    eprintln!(
        "sim_server: simulated {:?}, certificate {} bytes, evidence {} bytes",
        identity.tee(),
        identity.cert_der().len(),
        identity.evidence().len()
    );
    let mut out = io::stdout().lock();
    writeln!(out, "LISTENING {addr}")?;
    out.flush()?;
    drop(out);
    Ok(serve(listener, acceptor, args.max_connections, LIFETIME).await)
}

fn main() -> ExitCode {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sim_server: {e}");
            eprintln!(
                "usage: sim_server [--tee tdx|snp] [--listen ADDR:PORT] [--max-connections N]"
            );
            return ExitCode::from(64);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sim_server: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(answered) => {
            eprintln!("sim_server: answered {answered} connection(s), exiting");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sim_server: {e}");
            ExitCode::FAILURE
        }
    }
}
