//! The client: a verifier configuration built once from a policy, and the
//! two ways to run RA-TLS with it — a blocking stream that owns its socket
//! ([`Client::connect`]) and a sans-I/O session for event loops
//! ([`Client::session`]).
//!
//! Every connection gets its own [`RaTlsServerVerifier`] (so that the
//! identity it reports is this connection's) over the shared
//! [`VerifierConfig`] (so that anchors, policy and the verification cache
//! are shared). Session resumption is off in [`chrysalis_ratls::client_config`]:
//! every connection runs the full handshake and the verifier.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrysalis_attestation::Policy;
use chrysalis_ratls::{
    client_config_with, verify_certificate_der, ClientOptions, RaTlsServerVerifier, VerifierConfig,
};
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::identity::{handshake_identity, IdentityView};
use crate::session::TlsSession;
use crate::target::Target;

/// ALPN offered: HTTP/1.1 only (the Python transport speaks HTTP/1.1).
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Reads a policy file (TOML, see the README's "Policy file").
pub fn policy_from_file(path: &std::path::Path) -> Result<Policy> {
    Policy::load(path).map_err(|e| Error::Policy(e.to_string()))
}

/// Parses policy TOML text.
pub fn policy_from_toml(text: &str) -> Result<Policy> {
    Policy::from_toml(text).map_err(|e| Error::Policy(e.to_string()))
}

/// A relying party: what it trusts (production Intel and AMD roots) and
/// accepts (the policy), and a verification cache shared by its
/// connections.
#[derive(Debug, Clone)]
pub struct Client {
    config: Arc<VerifierConfig>,
}

impl Client {
    /// A client with production anchors and `policy`; `allow_sim` also
    /// accepts simulated evidence (development only: it proves nothing),
    /// as does `allow_simulated = true` in the policy.
    pub fn new(policy: Policy, allow_sim: bool) -> Self {
        let allow = allow_sim || policy.allow_simulated;
        Self::with_config(VerifierConfig::new(policy.allow_simulated(allow)))
    }

    /// A client with a verifier configuration of the caller's (anchors,
    /// collateral, fixed time).
    pub fn with_config(config: VerifierConfig) -> Self {
        Self {
            config: Arc::new(config),
        }
    }

    /// The verifier configuration.
    pub fn config(&self) -> &Arc<VerifierConfig> {
        &self.config
    }

    /// True when simulated evidence is accepted.
    pub fn allows_simulated(&self) -> bool {
        self.config.policy().allow_simulated
    }

    /// A TLS configuration with a fresh verifier for one connection.
    fn tls(&self) -> Result<(Arc<ClientConfig>, Arc<RaTlsServerVerifier>)> {
        let verifier = Arc::new(RaTlsServerVerifier::new(self.config.clone()));
        let opts = ClientOptions {
            alpn: vec![ALPN_HTTP11.to_vec()],
            ..ClientOptions::default()
        };
        let cfg = client_config_with(verifier.clone(), &opts)
            .map_err(|e| Error::from_ratls("configuration", &e))?;
        Ok((Arc::new(cfg), verifier))
    }

    /// Verifies a DER certificate offline, now.
    pub fn verify_certificate(&self, der: &[u8]) -> Result<IdentityView> {
        let now = self
            .config
            .fixed_time()
            .unwrap_or_else(OffsetDateTime::now_utc);
        verify_certificate_der(der, &self.config, now)
            .map(|p| IdentityView::new(&p))
            .map_err(|e| Error::from_ratls("certificate", &e))
    }

    /// Connects to `target` and completes a verified TLS 1.3 handshake,
    /// all within `timeout` (`None`: no limit). Nothing but the handshake
    /// is sent before the verifier accepted the peer; on any failure the
    /// socket is closed.
    pub fn connect(&self, target: &Target, timeout: Option<Duration>) -> Result<RaTlsStream> {
        let peer = target.authority();
        let deadline = Deadline::new(timeout);
        let mut tcp = tcp_connect(target, &peer, &deadline)?;
        let (cfg, verifier) = self.tls()?;
        let mut conn = ClientConnection::new(cfg, target.server_name()?)
            .map_err(|e| Error::from_rustls(&peer, e))?;
        while conn.is_handshaking() {
            let left = deadline.left(&peer, "TLS handshake")?;
            set_timeouts(&tcp, left, &peer)?;
            conn.complete_io(&mut tcp)
                .map_err(|e| Error::from_io(&peer, "TLS handshake", e, deadline.limit_or_zero()))?;
        }
        let identity = handshake_identity(&verifier, &peer)?;
        let alpn = conn.alpn_protocol().map(|p| p.to_vec());
        Ok(RaTlsStream {
            peer,
            tls: StreamOwned::new(conn, tcp),
            identity,
            alpn,
            read_timeout: None,
            write_timeout: None,
            timeouts_set: false,
            closed: false,
        })
    }

    /// A sans-I/O session for `target`: the caller moves bytes between it
    /// and a socket (see [`TlsSession`]).
    pub fn session(&self, target: &Target) -> Result<TlsSession> {
        let peer = target.authority();
        let (cfg, verifier) = self.tls()?;
        let conn = ClientConnection::new(cfg, target.server_name()?)
            .map_err(|e| Error::from_rustls(&peer, e))?;
        Ok(TlsSession::new(peer, conn, verifier))
    }
}

/// A time limit for a sequence of steps.
struct Deadline {
    limit: Option<Duration>,
    at: Option<Instant>,
}

impl Deadline {
    fn new(limit: Option<Duration>) -> Self {
        Self {
            limit,
            at: limit.map(|l| Instant::now() + l),
        }
    }

    fn limit_or_zero(&self) -> Duration {
        self.limit.unwrap_or_default()
    }

    /// Time left (`None`: unlimited), or a timeout error for `what`.
    fn left(&self, peer: &str, what: &'static str) -> Result<Option<Duration>> {
        match self.at {
            None => Ok(None),
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    Err(Error::Timeout {
                        peer: peer.to_string(),
                        what,
                        after: self.limit_or_zero(),
                    })
                } else {
                    Ok(Some(left))
                }
            }
        }
    }
}

/// Resolves and connects, trying each address until the deadline.
fn tcp_connect(target: &Target, peer: &str, deadline: &Deadline) -> Result<TcpStream> {
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|source| Error::Connect {
            peer: peer.to_string(),
            source,
        })?
        .collect();
    let mut last = None;
    for addr in &addrs {
        let attempt = match deadline.left(peer, "connect")? {
            Some(left) => TcpStream::connect_timeout(addr, left),
            None => TcpStream::connect(addr),
        };
        match attempt {
            Ok(tcp) => {
                // Requests are small writes followed by reads: no Nagle delay.
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(Error::Timeout {
                    peer: peer.to_string(),
                    what: "connect",
                    after: deadline.limit_or_zero(),
                })
            }
            Err(e) => last = Some(e),
        }
    }
    Err(Error::Connect {
        peer: peer.to_string(),
        source: last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no address for the host")
        }),
    })
}

/// `std` refuses a zero timeout (it would mean "block forever" to the
/// system): the smallest limit it takes is used instead.
fn sock_timeout(t: Option<Duration>) -> Option<Duration> {
    t.map(|d| d.max(Duration::from_millis(1)))
}

fn set_timeouts(tcp: &TcpStream, t: Option<Duration>, peer: &str) -> Result<()> {
    let t = sock_timeout(t);
    tcp.set_read_timeout(t)
        .and_then(|()| tcp.set_write_timeout(t))
        .map_err(|source| Error::Io {
            peer: peer.to_string(),
            what: "socket timeout",
            source,
        })
}

/// A verified RA-TLS connection over a blocking socket. The TLS session's
/// keys come from a handshake signed by the attested key: for the
/// connection's lifetime every byte read was sent by the holder of that key
/// (TLS 1.3 has no renegotiation; rustls accepts no new certificate).
#[derive(Debug)]
pub struct RaTlsStream {
    peer: String,
    tls: StreamOwned<ClientConnection, TcpStream>,
    identity: Arc<IdentityView>,
    alpn: Option<Vec<u8>>,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    timeouts_set: bool,
    closed: bool,
}

impl RaTlsStream {
    /// What the peer proved.
    pub fn identity(&self) -> &Arc<IdentityView> {
        &self.identity
    }

    /// `HOST:PORT` of the peer.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The ALPN protocol agreed (`http/1.1`), if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.alpn.as_deref()
    }

    /// A second handle on the socket, to abort a blocked read or write
    /// from another thread (`shutdown`).
    pub fn socket_handle(&self) -> std::io::Result<TcpStream> {
        self.tls.sock.try_clone()
    }

    fn check_open(&self) -> Result<()> {
        if self.closed {
            return Err(Error::Closed {
                peer: self.peer.clone(),
            });
        }
        Ok(())
    }

    fn apply_timeouts(&mut self, read: Option<Duration>, write: Option<Duration>) -> Result<()> {
        // One system call per change, not per read.
        let (read, write) = (sock_timeout(read), sock_timeout(write));
        if !self.timeouts_set || read != self.read_timeout {
            self.tls
                .sock
                .set_read_timeout(read)
                .map_err(|e| Error::from_io(&self.peer, "socket timeout", e, Duration::ZERO))?;
            self.read_timeout = read;
        }
        if !self.timeouts_set || write != self.write_timeout {
            self.tls
                .sock
                .set_write_timeout(write)
                .map_err(|e| Error::from_io(&self.peer, "socket timeout", e, Duration::ZERO))?;
            self.write_timeout = write;
        }
        self.timeouts_set = true;
        Ok(())
    }

    /// Reads up to `buf.len()` bytes of plaintext, waiting at most
    /// `timeout` for the first (`None`: no limit). `Ok(0)` is the end of
    /// the stream: the peer's close_notify, or the socket closed without
    /// it (a truncation the HTTP layer's framing detects, as Python's `ssl`
    /// with `suppress_ragged_eofs` does).
    pub fn read(&mut self, buf: &mut [u8], timeout: Option<Duration>) -> Result<usize> {
        self.check_open()?;
        // While reading, a write (TLS key update, alert) gets the same limit.
        self.apply_timeouts(timeout, timeout)?;
        match self.tls.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
            Err(e) => Err(Error::from_io(
                &self.peer,
                "read",
                e,
                timeout.unwrap_or_default(),
            )),
        }
    }

    /// Writes all of `data`, each socket write waiting at most `timeout`.
    pub fn write_all(&mut self, data: &[u8], timeout: Option<Duration>) -> Result<()> {
        self.check_open()?;
        self.apply_timeouts(timeout, timeout)?;
        let limit = timeout.unwrap_or_default();
        self.tls
            .write_all(data)
            .and_then(|()| self.tls.flush())
            .map_err(|e| Error::from_io(&self.peer, "write", e, limit))
    }

    /// Sends close_notify (best effort, at most 1 s) and closes the socket.
    /// Idempotent.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.tls.conn.send_close_notify();
        let _ = self.apply_timeouts(Some(Duration::from_secs(1)), Some(Duration::from_secs(1)));
        while self.tls.conn.wants_write() {
            if !matches!(self.tls.conn.write_tls(&mut self.tls.sock), Ok(n) if n > 0) {
                break;
            }
        }
        let _ = self.tls.sock.shutdown(std::net::Shutdown::Both);
    }
}

impl Drop for RaTlsStream {
    fn drop(&mut self) {
        self.close();
    }
}
