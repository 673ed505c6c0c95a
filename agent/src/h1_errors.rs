//! JSON bodies for the errors hyper answers by itself on HTTP/1.1.
//!
//! When a request head cannot be parsed (400), is too large (431), or its
//! target is too long (414), hyper writes a bodyless response and closes
//! the connection; the service never sees the request. This wrapper sits
//! between hyper and the TLS stream and replaces exactly that response —
//! a single write made of the status line, `content-length: 0`, `date`,
//! optionally `connection: close`, and nothing else — with the same status
//! and an OpenAI-shaped JSON error. Every other write passes through
//! untouched, and the service itself never produces such a response (its
//! errors always carry a JSON body).
//!
//! It also closes such connections *lingering*: after an error answer sent
//! before the request was read completely (a rewritten parse error, or the
//! service's early answer, see [`crate::body::early_answer`]), closing the
//! socket at once would reset it while the client is still sending, and the
//! reset destroys the answer in the client's receive buffer. Instead the
//! write side is shut (TLS close_notify, then FIN) and what the client
//! still sends is read and discarded until it closes, goes quiet for
//! [`LINGER_IDLE`], or [`LINGER_MAX`] / [`LINGER_MAX_BYTES`] are reached.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::api_error::ApiError;
use crate::body::{ConnActivity, LINGER_IDLE, LINGER_MAX, LINGER_MAX_BYTES};

/// See the module documentation.
#[derive(Debug)]
pub struct RewriteParseErrors<T> {
    inner: T,
    max_header_bytes: usize,
    pending: Vec<u8>,
    written: usize,
    /// A parse error was answered.
    rewrote: bool,
    /// The connection's requests, which may ask for a lingering close.
    activity: Option<Arc<ConnActivity>>,
    /// State of a lingering close in progress.
    linger: Option<Box<Linger>>,
}

#[derive(Debug)]
struct Linger {
    write_shut: bool,
    until: Instant,
    idle: Pin<Box<Sleep>>,
    discarded: usize,
}

impl<T> RewriteParseErrors<T> {
    /// Wraps `inner`; `max_header_bytes` is quoted in 431 answers.
    pub fn new(inner: T, max_header_bytes: usize) -> Self {
        Self {
            inner,
            max_header_bytes,
            pending: Vec::new(),
            written: 0,
            rewrote: false,
            activity: None,
            linger: None,
        }
    }

    /// Closes lingering also when `activity` asks for it (an early answer
    /// of the service).
    pub fn with_activity(mut self, activity: Arc<ConnActivity>) -> Self {
        self.activity = Some(activity);
        self
    }

    fn should_linger(&self) -> bool {
        self.rewrote || self.activity.as_ref().is_some_and(|a| a.wants_linger())
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

/// The JSON replacement when `buf` is exactly one of hyper's automatic
/// parse-error responses.
pub fn replacement(buf: &[u8], max_header_bytes: usize) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(buf).ok()?;
    let head = text.strip_suffix("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.strip_prefix("HTTP/1.1 ")?;
    let error = match status.get(..4)? {
        "400 " => ApiError::malformed("the request is not valid HTTP/1.1"),
        "431 " => ApiError::headers_too_large(max_header_bytes),
        "414 " => ApiError::uri_too_long(),
        _ => return None,
    };
    let mut zero_length = false;
    for line in lines {
        let lower = line.to_ascii_lowercase();
        if lower == "content-length: 0" {
            zero_length = true;
        } else if !(lower.starts_with("date: ") || lower == "connection: close") {
            return None;
        }
    }
    zero_length.then(|| error.http1_bytes())
}

impl<T: AsyncWrite + Unpin> RewriteParseErrors<T> {
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for RewriteParseErrors<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RewriteParseErrors<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        // Cheap first test: hyper's error answers start with a 4xx status
        // line; everything else goes straight through.
        if buf.starts_with(b"HTTP/1.1 4") {
            if let Some(r) = replacement(buf, this.max_header_bytes) {
                this.pending = r;
                this.rewrote = true;
                // The original bytes count as written; the replacement is
                // flushed now or by the next flush/shutdown.
                if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                    return Poll::Ready(Err(e));
                }
                return Poll::Ready(Ok(buf.len()));
            }
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // hyper's error answer is a head without a body: one buffer. Check
        // it as a plain write; everything else goes out vectored.
        let mut non_empty = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(first), None) = (non_empty.next(), non_empty.next()) {
            if first.starts_with(b"HTTP/1.1 4") {
                return self.poll_write(cx, first);
            }
        }
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if !this.should_linger() {
            return Pin::new(&mut this.inner).poll_shutdown(cx);
        }
        this.poll_linger(cx)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> RewriteParseErrors<T> {
    /// The lingering close: shut the write side, then read and discard
    /// until the client closes, goes quiet, or a bound is reached.
    /// Always ends `Ok`: the answer is out, whatever the client does.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let l = self.linger.get_or_insert_with(|| {
            Box::new(Linger {
                write_shut: false,
                until: Instant::now() + LINGER_MAX,
                idle: Box::pin(tokio::time::sleep(LINGER_IDLE)),
                discarded: 0,
            })
        });
        if !l.write_shut {
            if ready!(Pin::new(&mut self.inner).poll_shutdown(cx)).is_err() {
                return Poll::Ready(Ok(()));
            }
            l.write_shut = true;
            l.idle
                .as_mut()
                .reset(tokio::time::Instant::now() + LINGER_IDLE);
        }
        let mut scratch = [0u8; 4096];
        loop {
            if Instant::now() >= l.until || l.discarded >= LINGER_MAX_BYTES {
                return Poll::Ready(Ok(()));
            }
            let mut rb = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                    l.discarded += rb.filled().len();
                    l.idle
                        .as_mut()
                        .reset(tokio::time::Instant::now() + LINGER_IDLE);
                }
                // The client closed (or broke) its side: done.
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending => {
                    return match l.idle.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(Ok(())),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bodyless_error_heads_are_replaced() {
        let date = "date: Tue, 01 Dec 2026 00:00:00 GMT";
        for (status, code) in [
            ("400 Bad Request", "malformed_request"),
            ("431 Request Header Fields Too Large", "headers_too_large"),
            ("414 URI Too Long", "uri_too_long"),
        ] {
            for head in [
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n{date}\r\n\r\n"),
                format!("HTTP/1.1 {status}\r\n{date}\r\ncontent-length: 0\r\n\r\n"),
                format!(
                    "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: 0\r\n{date}\r\n\r\n"
                ),
            ] {
                let r = replacement(head.as_bytes(), 9000).expect(&head);
                let text = String::from_utf8(r).unwrap();
                assert!(text.starts_with(&format!("HTTP/1.1 {}", &status[..3])));
                assert!(text.contains(code), "{text}");
            }
        }
        for not in [
            // Our own JSON errors carry a body.
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 20\r\n{date}\r\n\r\n"),
            format!("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n{date}\r\n\r\n"),
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx: y\r\n\r\n".to_string(),
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nbody".to_string(),
            format!("HTTP/1.1 400 Bad Request\r\n{date}\r\n\r\n"),
        ] {
            assert!(replacement(not.as_bytes(), 9000).is_none(), "{not}");
        }
    }
}
