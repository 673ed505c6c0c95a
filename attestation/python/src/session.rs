//! A sans-I/O RA-TLS client session, for event loops (the async httpx
//! transport): the caller reads from and writes to the socket; this object
//! runs TLS 1.3 and the RA-TLS verifier on the bytes it is given.
//!
//! ```text
//! send(data_to_send())                      # ClientHello
//! while is_handshaking(): receive(recv()); send(data_to_send())
//! write(plaintext); send(data_to_send())
//! read(n) → Data | WouldBlock (receive more) | Eof
//! ```
//!
//! No plaintext leaves before the verifier accepted the peer: rustls keeps
//! what is written during the handshake until the handshake is complete,
//! and the client's Finished is only produced after verification.

use std::io::{Read, Write};
use std::sync::Arc;

use chrysalis_ratls::RaTlsServerVerifier;
use rustls::ClientConnection;

use crate::error::{Error, Result};
use crate::identity::{handshake_identity, IdentityView};

/// Largest plaintext chunk [`TlsSession::read`] returns at once.
pub const MAX_READ: usize = 1 << 20;

/// What [`TlsSession::read`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plaintext {
    /// Decrypted bytes (never empty).
    Data(Vec<u8>),
    /// Nothing decrypted yet: receive more from the socket.
    WouldBlock,
    /// The end of the stream: close_notify, or the socket's end without it
    /// (the HTTP layer's framing detects truncation).
    Eof,
}

/// One client connection's TLS state (see the module documentation).
#[derive(Debug)]
pub struct TlsSession {
    peer: String,
    conn: ClientConnection,
    verifier: Arc<RaTlsServerVerifier>,
    identity: Option<Arc<IdentityView>>,
    /// Received TLS bytes rustls has not taken yet (its plaintext buffer
    /// was full), from `pending_at` on.
    pending: Vec<u8>,
    pending_at: usize,
    /// The socket reached its end.
    eof: bool,
    /// The end was passed to rustls.
    eof_delivered: bool,
}

impl TlsSession {
    pub(crate) fn new(
        peer: String,
        mut conn: ClientConnection,
        verifier: Arc<RaTlsServerVerifier>,
    ) -> Self {
        // The caller drains data_to_send() after every write: no limit on
        // how much plaintext a write may queue (it is the caller's buffer).
        conn.set_buffer_limit(None);
        Self {
            peer,
            conn,
            verifier,
            identity: None,
            pending: Vec::new(),
            pending_at: 0,
            eof: false,
            eof_delivered: false,
        }
    }

    /// `HOST:PORT` of the peer.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// True until the handshake (and so the verification) completed.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// What the peer proved, once the handshake completed.
    pub fn identity(&self) -> Option<&Arc<IdentityView>> {
        self.identity.as_ref()
    }

    /// The ALPN protocol agreed, if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// Takes bytes received from the socket; an empty slice means the
    /// socket reached its end. Runs the handshake and the verifier as the
    /// peer's messages arrive.
    pub fn receive(&mut self, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            self.eof = true;
        } else {
            if self.pending_at == self.pending.len() {
                self.pending.clear();
                self.pending_at = 0;
            }
            self.pending.extend_from_slice(data);
        }
        self.pump()
    }

    /// Feeds pending bytes to rustls until they are used up or its
    /// plaintext buffer is full.
    fn pump(&mut self) -> Result<()> {
        let was_handshaking = self.conn.is_handshaking();
        while self.pending_at < self.pending.len() {
            let mut rest = &self.pending[self.pending_at..];
            match self.conn.read_tls(&mut rest) {
                Ok(0) => break,
                Ok(n) => {
                    self.pending_at += n;
                    self.process()?;
                }
                // Plaintext buffer full: the reader must drain it first.
                Err(e) if e.kind() == std::io::ErrorKind::Other => break,
                Err(e) => return Err(Error::from_io(&self.peer, "read", e, Default::default())),
            }
        }
        if self.eof && !self.eof_delivered && self.pending_at == self.pending.len() {
            self.eof_delivered = true;
            let _ = self.conn.read_tls(&mut &[][..]);
            self.process()?;
        }
        if was_handshaking && !self.conn.is_handshaking() {
            self.identity = Some(handshake_identity(&self.verifier, &self.peer)?);
        }
        if self.conn.is_handshaking() && self.eof_delivered {
            return Err(Error::Io {
                peer: self.peer.clone(),
                what: "TLS handshake",
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection during the handshake",
                ),
            });
        }
        Ok(())
    }

    fn process(&mut self) -> Result<()> {
        self.conn
            .process_new_packets()
            .map(|_| ())
            .map_err(|e| Error::from_rustls(&self.peer, e))
    }

    /// TLS bytes to send to the socket now (may be empty): handshake
    /// messages, encrypted writes, alerts, close_notify.
    pub fn data_to_send(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut out) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        out
    }

    /// Decrypted plaintext, at most `max` bytes (and [`MAX_READ`]).
    pub fn read(&mut self, max: usize) -> Result<Plaintext> {
        self.pump()?;
        let mut buf = vec![0u8; max.clamp(1, MAX_READ)];
        let got = self.conn.reader().read(&mut buf);
        let out = match got {
            Ok(0) => Plaintext::Eof,
            Ok(n) => {
                buf.truncate(n);
                Plaintext::Data(buf)
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if self.eof_delivered {
                    Plaintext::Eof
                } else {
                    Plaintext::WouldBlock
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Plaintext::Eof,
            Err(e) => return Err(Error::from_io(&self.peer, "read", e, Default::default())),
        };
        // Room was made: take what was waiting.
        self.pump()?;
        Ok(out)
    }

    /// Queues plaintext to send; call [`TlsSession::data_to_send`] after.
    /// Refused until the handshake completed, so that nothing is queued
    /// for a peer not yet verified.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        if self.identity.is_none() {
            return Err(Error::Io {
                peer: self.peer.clone(),
                what: "write",
                source: std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "the RA-TLS handshake has not completed",
                ),
            });
        }
        self.conn
            .writer()
            .write_all(data)
            .map_err(|e| Error::from_io(&self.peer, "write", e, Default::default()))
    }

    /// Queues close_notify; call [`TlsSession::data_to_send`] after.
    pub fn close(&mut self) {
        self.conn.send_close_notify();
    }
}
