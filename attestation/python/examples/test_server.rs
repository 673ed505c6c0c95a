//! RA-TLS servers for the Python client's tests: a genuine one with
//! simulated evidence, and three impostors.
//!
//! ```text
//! cargo run -p chrysalis-py --example test_server -- --mode MODE
//!     [--tee tdx|snp] [--listen 127.0.0.1:0]
//! ```
//!
//! Modes:
//! * `genuine` — a simulated TEE's RA-TLS certificate, its own key.
//! * `copied-evidence` — that certificate's evidence, claims and collateral
//!   copied into a certificate for another key (which the server holds):
//!   the claims name another key, so a verifier says "key not bound".
//! * `stolen-cert` — the genuine certificate, served with another key: the
//!   handshake signature does not verify with the certificate's key.
//! * `plain` — an ordinary self-signed certificate, no RA-TLS evidence.
//!
//! It prints `LISTENING ADDR:PORT`, then one line per connection:
//! `CONNECTION handshake=ok received=N` (N plaintext bytes arrived) or
//! `CONNECTION handshake=failed received=0 error=…`. A request gets
//! `HTTP/1.1 200 OK` with the body `hello`, or with [`BIG_BODY_LEN`] bytes
//! of [`big_body`] for `GET /big` (to cross TLS buffer limits). The process exits after
//! [`LIFETIME`], so a test that forgets it cannot leave it running.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use chrysalis_attestation::verifier::Collateral;
use chrysalis_attestation::Tee;
use chrysalis_ratls::tls::provider;
use chrysalis_ratls::x509::{build_certificate, ratls_extensions, CertificateParams};
use chrysalis_ratls::{CertKey, EmbeddedCollateral, IdentityOptions, KeyType, RaTlsIdentity};
use chrysalis_sim::SimProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// How long the process lives at most.
pub const LIFETIME: Duration = Duration::from_secs(120);
/// Per-connection socket timeout.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The answer to any request.
pub const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";

/// Length of the `GET /big` body, bytes.
pub const BIG_BODY_LEN: usize = 1 << 20;

/// The `GET /big` body: byte `i` is `i % 251` (a pattern that shows
/// reordered or lost chunks).
pub fn big_body() -> Vec<u8> {
    (0..BIG_BODY_LEN).map(|i| (i % 251) as u8).collect()
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the server presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Genuine simulated RA-TLS.
    Genuine,
    /// Genuine evidence and claims in a certificate for another key.
    CopiedEvidence,
    /// The genuine certificate with another key.
    StolenCert,
    /// An ordinary self-signed certificate.
    Plain,
    /// The genuine certificate, but no fresh evidence: `/attestation`
    /// answers like any other path (a node that can replay an old
    /// certificate but cannot answer a new nonce).
    NoFresh,
}

/// Set for [`Mode::NoFresh`]: `/attestation` gets no fresh evidence.
static NO_FRESH: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "genuine" => Ok(Mode::Genuine),
            "copied-evidence" => Ok(Mode::CopiedEvidence),
            "stolen-cert" => Ok(Mode::StolenCert),
            "plain" => Ok(Mode::Plain),
            "no-fresh" => Ok(Mode::NoFresh),
            o => Err(format!(
                "--mode {o}: expected genuine, copied-evidence, stolen-cert, plain or no-fresh"
            )),
        }
    }
}

/// The genuine identity this process serves and its simulated TEE (to
/// answer `GET /attestation?nonce=` with fresh evidence, as the agent does).
static GENUINE: std::sync::OnceLock<(SimProvider, Arc<RaTlsIdentity>)> = std::sync::OnceLock::new();

/// A simulated TEE's identity with its collateral embedded.
pub fn sim_identity(tee: Tee) -> Result<Arc<RaTlsIdentity>, BoxError> {
    let (sim, identity) = sim_provider_and_identity(tee)?;
    let identity = Arc::new(identity);
    let _ = GENUINE.set((sim, identity.clone()));
    Ok(identity)
}

fn sim_provider_and_identity(tee: Tee) -> Result<(SimProvider, RaTlsIdentity), BoxError> {
    let sim = SimProvider::new(tee)?;
    let collateral = match tee {
        Tee::Tdx => Collateral::Tdx(sim.tdx_collateral().ok_or("no TDX collateral")?),
        Tee::Snp => Collateral::Snp(sim.snp_certificates().ok_or("no SNP certificates")?),
    };
    let opts = IdentityOptions {
        collateral: Some(EmbeddedCollateral::from_collateral(&collateral)),
        ..IdentityOptions::default()
    };
    let identity = RaTlsIdentity::generate(&sim, &opts)?;
    Ok((sim, identity))
}

/// The fresh-evidence answer to a `GET /attestation?nonce=HEX` request head,
/// from the genuine identity (None for any other request).
fn fresh_answer(request: &[u8]) -> Option<Vec<u8>> {
    if NO_FRESH.load(std::sync::atomic::Ordering::SeqCst) {
        return None;
    }
    let rest = request.strip_prefix(b"GET /attestation?")?;
    let end = rest.iter().position(|&b| b == b' ')?;
    let query = std::str::from_utf8(&rest[..end]).ok()?;
    let nonce = chrysalis_ratls::parse_nonce_query(query).ok()?;
    let (sim, identity) = GENUINE.get()?;
    let body = chrysalis_ratls::fresh_evidence(sim, identity, &nonce)
        .ok()?
        .to_json()
        .ok()?;
    let mut a = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    a.extend_from_slice(body.as_bytes());
    Some(a)
}

/// A certificate for `key` with these extensions, valid for an hour.
fn certificate(
    key: &CertKey,
    exts: Vec<chrysalis_ratls::x509::CertExtension>,
) -> Result<Vec<u8>, BoxError> {
    let now = time::OffsetDateTime::now_utc();
    Ok(build_certificate(
        key,
        &CertificateParams {
            common_name: "impostor".into(),
            subject_alt_names: vec![],
            not_before: now - time::Duration::minutes(1),
            not_after: now + time::Duration::hours(1),
            critical_ext_key_usage: false,
            extensions: exts,
        },
    )?)
}

/// Serves one fixed certificate and key.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// The certificate and key `mode` presents.
pub fn certified_key(mode: Mode, tee: Tee) -> Result<Arc<CertifiedKey>, BoxError> {
    let genuine = sim_identity(tee)?;
    let other = CertKey::generate(KeyType::EcdsaP256)?;
    Ok(match mode {
        Mode::Genuine => genuine.certified_key(),
        Mode::NoFresh => {
            NO_FRESH.store(true, std::sync::atomic::Ordering::SeqCst);
            genuine.certified_key()
        }
        Mode::CopiedEvidence => {
            let exts = ratls_extensions(
                genuine.evidence(),
                genuine.claims_bytes(),
                None,
                genuine.collateral(),
            )?;
            let der = certificate(&other, exts)?;
            RaTlsIdentity::assemble(other, der)?.certified_key()
        }
        Mode::StolenCert => Arc::new(CertifiedKey::new(
            vec![genuine.cert_der().clone()],
            other.rustls_signing_key()?,
        )),
        Mode::Plain => {
            let der = certificate(&other, vec![])?;
            Arc::new(CertifiedKey::new(
                vec![der.into()],
                other.rustls_signing_key()?,
            ))
        }
    })
}

/// A TLS 1.3 server configuration presenting `mode`'s certificate.
pub fn server_config(mode: Mode, tee: Tee) -> Result<Arc<ServerConfig>, BoxError> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(certified_key(mode, tee)?)));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// What happened on one connection.
#[derive(Debug)]
pub struct Outcome {
    /// The handshake completed.
    pub handshake_ok: bool,
    /// Plaintext bytes received.
    pub received: usize,
    /// Why the connection ended badly, if it did.
    pub error: Option<String>,
}

/// Runs one connection: handshake, read the request head, answer.
pub fn serve_connection(cfg: Arc<ServerConfig>, tcp: TcpStream) -> Outcome {
    let _ = tcp.set_read_timeout(Some(IO_TIMEOUT));
    let _ = tcp.set_write_timeout(Some(IO_TIMEOUT));
    let conn = match ServerConnection::new(cfg) {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                handshake_ok: false,
                received: 0,
                error: Some(e.to_string()),
            }
        }
    };
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            return Outcome {
                handshake_ok: false,
                received: 0,
                error: Some(e.to_string()),
            };
        }
    }
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    let mut error = None;
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => request.extend_from_slice(&buf[..n]),
            Err(e) => {
                error = Some(e.to_string());
                break;
            }
        }
    }
    if !request.is_empty() {
        let answer = if request.starts_with(b"GET /big ") {
            let mut a = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {BIG_BODY_LEN}\r\nConnection: close\r\n\r\n"
            )
            .into_bytes();
            a.extend_from_slice(&big_body());
            a
        } else if let Some(fresh) = fresh_answer(&request) {
            fresh
        } else {
            RESPONSE.to_vec()
        };
        if let Err(e) = tls.write_all(&answer).and_then(|()| tls.flush()) {
            error = Some(e.to_string());
        }
    }
    tls.conn.send_close_notify();
    let _ = tls.flush();
    Outcome {
        handshake_ok: true,
        received: request.len(),
        error,
    }
}

fn parse_args() -> Result<(Mode, Tee, SocketAddr), String> {
    let mut mode = None;
    let mut tee = Tee::Tdx;
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--mode" => mode = Some(value()?.parse()?),
            "--tee" => {
                tee = match value()?.as_str() {
                    "tdx" => Tee::Tdx,
                    "snp" => Tee::Snp,
                    o => return Err(format!("--tee {o}: expected tdx or snp")),
                }
            }
            "--listen" => {
                let v = value()?;
                listen = v.parse().map_err(|e| format!("--listen {v}: {e}"))?;
            }
            o => return Err(format!("unknown argument {o}")),
        }
    }
    Ok((mode.ok_or("--mode is required")?, tee, listen))
}

fn main() -> std::process::ExitCode {
    let (mode, tee, listen) = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("test_server: {e}");
            return std::process::ExitCode::from(64);
        }
    };
    let run = || -> Result<(), BoxError> {
        let cfg = server_config(mode, tee)?;
        let listener = TcpListener::bind(listen)?;
        // A deadline, not a measurement: the server must not outlive a test.
        std::thread::spawn(|| {
            std::thread::sleep(LIFETIME);
            eprintln!("test_server: lifetime over, exiting");
            std::process::exit(0);
        });
        println!("LISTENING {}", listener.local_addr()?);
        std::io::stdout().flush()?;
        for tcp in listener.incoming() {
            let tcp = tcp?;
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let o = serve_connection(cfg, tcp);
                let mut out = std::io::stdout().lock();
                let _ = writeln!(
                    out,
                    "CONNECTION handshake={} received={}{}",
                    if o.handshake_ok { "ok" } else { "failed" },
                    o.received,
                    o.error.map(|e| format!(" error={e}")).unwrap_or_default()
                );
                let _ = out.flush();
            });
        }
        Ok(())
    };
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("test_server: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
