//! Connections to the engine, and header hygiene between the two hops.
//!
//! The pool hands out plain HTTP/1.1 connections (hyper's connection-level
//! client) and takes one back only when its response body was read to the
//! end ([`Pooled::release`]). A response abandoned half-way (the client
//! went away, the request timed out) drops its connection instead, which
//! closes it: that is how the engine learns to stop generating, and a
//! connection with an unread response is never reused.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Idle connections kept at most.
const MAX_IDLE: usize = 1024;

/// Why a request to the engine failed.
#[derive(Debug)]
pub enum UpstreamError {
    /// No connection could be made (refused, timed out).
    Connect(String),
    /// Connected, but the exchange failed before a response head.
    Response(String),
}

/// Pool of HTTP/1.1 connections to one engine address.
#[derive(Debug)]
pub struct UpstreamPool {
    addr: SocketAddr,
    connect_timeout: Duration,
    /// Idle connections per worker thread (a connection is driven by a
    /// task of the thread that made it; lending it to another thread would
    /// wake across threads on every read), plus one for other threads.
    idle: Vec<Mutex<Vec<SendRequest<Full<Bytes>>>>>,
}

/// A connection lent for one request; see [`Pooled::release`].
#[derive(Debug)]
pub struct Pooled {
    sender: SendRequest<Full<Bytes>>,
    pool: Arc<UpstreamPool>,
}

impl Pooled {
    /// Returns the connection to the pool: call only after the response
    /// body was read to its end.
    pub fn release(self) {
        self.pool.put_back(self.sender);
    }
}

impl UpstreamPool {
    /// A pool for `addr` used from `workers` worker threads; connecting
    /// gives up after `connect_timeout`.
    pub fn new(addr: SocketAddr, connect_timeout: Duration, workers: usize) -> Self {
        Self {
            addr,
            connect_timeout,
            idle: (0..=workers).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }

    fn slot(&self) -> &Mutex<Vec<SendRequest<Full<Bytes>>>> {
        let last = self.idle.len() - 1;
        let i = crate::workers::worker_index().map_or(last, |w| w.min(last));
        &self.idle[i]
    }

    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.slot().lock().unwrap_or_else(|p| p.into_inner());
        while let Some(s) = idle.pop() {
            if !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn put_back(&self, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.slot().lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(sender);
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, UpstreamError> {
        let tcp =
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(self.addr)).await {
                Err(_) => {
                    return Err(UpstreamError::Connect(format!(
                        "connecting to {} timed out after {} ms",
                        self.addr,
                        self.connect_timeout.as_millis()
                    )))
                }
                Ok(Err(e)) => {
                    return Err(UpstreamError::Connect(format!(
                        "connecting to {}: {e}",
                        self.addr
                    )))
                }
                Ok(Ok(t)) => t,
            };
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| {
                UpstreamError::Connect(format!("HTTP/1.1 handshake with {}: {e}", self.addr))
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("engine connection ended: {e}");
            }
        });
        Ok(sender)
    }

    /// Sends `req` (origin-form target, `Host` set) on an idle connection,
    /// or a new one. A pooled connection that turns out to be closed
    /// before the request went out is replaced transparently.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<Full<Bytes>>,
    ) -> Result<(Response<Incoming>, Pooled), UpstreamError> {
        loop {
            let (mut sender, fresh) = match self.take_idle() {
                Some(s) => (s, false),
                None => (self.connect().await?, true),
            };
            if sender.ready().await.is_err() {
                if fresh {
                    return Err(UpstreamError::Connect(format!(
                        "the connection to {} closed at once",
                        self.addr
                    )));
                }
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    return Ok((
                        resp,
                        Pooled {
                            sender,
                            pool: self.clone(),
                        },
                    ))
                }
                Err(mut e) => match e.take_message() {
                    // Not sent: a stale pooled connection; try another.
                    Some(back) if !fresh => req = back,
                    _ => return Err(UpstreamError::Response(error_chain(e.error()))),
                },
            }
        }
    }
}

/// An error and its causes on one line.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Headers that describe one connection, not the message (RFC 9110
/// §7.6.1), plus the proxy-only ones: never forwarded in either direction.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers, `Upgrade`, and every header that
/// `Connection` names.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    if h.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for n in named {
            h.remove(n);
        }
    }
    for n in &HOP_BY_HOP {
        h.remove(n);
    }
    h.remove(header::UPGRADE);
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, X-Secret-Hop"),
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic x"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("x-secret-hop", "1"),
            ("authorization", "Bearer k"),
            ("content-type", "application/json"),
        ] {
            h.append(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["authorization", "content-type"]);
    }
}
