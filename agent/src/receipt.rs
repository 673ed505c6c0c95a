//! Usage receipts: signed with the key of the connection's RA-TLS
//! certificate (the key the client attested), and, for event streams,
//! inserted as a final `chrysalis.receipt` event before `data: [DONE]`.
//!
//! The receipt format itself is `chrysalis_payments::receipt`; this module
//! only signs it and puts it in the stream. [`PaidStream`] passes the
//! engine's frames on as they come; the only bytes it holds back are the
//! start of a line that could still become `data: [DONE]` (at most 11
//! bytes), so streaming is not delayed.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use chrysalis_payments::receipt::SignedReceipt;
use chrysalis_payments::tokens::ChunkCounter;
use http_body::{Body, Frame, SizeHint};
use memchr::memmem;
use sha2::{Digest, Sha256};

use crate::body::{ProxyBody, StreamError};
use crate::ledger::Ticket;
use crate::receipt_key::ReceiptSigner;
use crate::usage::{Usage, UsageScanner};

/// Name of the SSE event that carries the receipt.
pub const RECEIPT_EVENT: &str = "chrysalis.receipt";
/// The line that ends an OpenAI stream.
const DONE: &[u8] = b"data: [DONE]";

/// Charges `ticket` for `usage` and signs the receipt; `None` (logged)
/// when signing failed, so the response still goes out.
pub fn issue(
    ticket: &Ticket,
    signer: &ReceiptSigner,
    usage: Option<Usage>,
    response_sha256: [u8; 32],
) -> Option<SignedReceipt> {
    let receipt = ticket.charge(usage.unwrap_or_default(), response_sha256);
    match SignedReceipt::sign(receipt, |m| signer.sign(m)) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!("signing a usage receipt failed: {e}");
            None
        }
    }
}

/// The tokens of a stream whose engine reported no usage: its content
/// chunks, prompt not charged (`chrysalis_payments::tokens`, the rule the
/// client checks).
fn counted(chunks: &ChunkCounter) -> Usage {
    Usage {
        prompt_tokens: 0,
        completion_tokens: chunks.count(),
    }
}

/// The receipt as one SSE event.
pub fn sse_event(r: &SignedReceipt) -> Bytes {
    Bytes::from(format!("event: {RECEIPT_EVENT}\ndata: {}\n\n", r.encode()))
}

/// An event stream with the receipt inserted before `data: [DONE]` (or at
/// the end when the engine sends no `[DONE]`), issued only when the engine's
/// stream completed.
pub struct PaidStream {
    inner: Option<ProxyBody>,
    ticket: Option<Ticket>,
    signer: ReceiptSigner,
    hasher: Sha256,
    scanner: UsageScanner,
    /// Content chunks, for an engine that reports no usage.
    chunks: ChunkCounter,
    /// Withheld start of a line that may become `data: [DONE]`.
    pending: BytesMut,
    /// Whether the next byte from the engine starts a line.
    at_line_start: bool,
    out: VecDeque<Bytes>,
    ended: bool,
}

impl std::fmt::Debug for PaidStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaidStream")
            .field("receipt_due", &self.ticket.is_some())
            .finish_non_exhaustive()
    }
}

impl PaidStream {
    /// Wraps the engine's event stream.
    pub fn new(inner: ProxyBody, ticket: Ticket, signer: ReceiptSigner) -> Self {
        Self {
            inner: Some(inner),
            ticket: Some(ticket),
            signer,
            hasher: Sha256::new(),
            scanner: UsageScanner::sse(),
            chunks: ChunkCounter::new(),
            pending: BytesMut::new(),
            at_line_start: true,
            out: VecDeque::new(),
            ended: false,
        }
    }

    /// Bytes before the receipt: counted, hashed and sent.
    fn pass_hashed(&mut self, b: Bytes) {
        if b.is_empty() {
            return;
        }
        self.hasher.update(&b);
        self.scanner.feed(&b);
        self.chunks.feed(&b);
        self.out.push_back(b);
    }

    fn emit_receipt(&mut self) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        let usage = std::mem::replace(&mut self.scanner, UsageScanner::Off)
            .finish()
            .or_else(|| Some(counted(&self.chunks)));
        let digest: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
        if let Some(r) = issue(&ticket, &self.signer, usage, digest) {
            self.out.push_back(sse_event(&r));
        }
    }

    fn feed(&mut self, data: Bytes) {
        if self.ticket.is_none() {
            self.out.push_back(data);
            return;
        }
        let buf = if self.pending.is_empty() {
            data
        } else {
            self.pending.extend_from_slice(&data);
            self.pending.split().freeze()
        };
        let line_start_ok = |buf: &[u8], at: usize, first: bool| {
            if at == 0 {
                first
            } else {
                buf[at - 1] == b'\n'
            }
        };
        let found =
            memmem::find_iter(&buf, DONE).find(|&p| line_start_ok(&buf, p, self.at_line_start));
        if let Some(p) = found {
            self.pass_hashed(buf.slice(..p));
            self.emit_receipt();
            self.out.push_back(buf.slice(p..));
            return;
        }
        // Hold back the start of the last line if it may become [DONE].
        let last_line = match memchr::memrchr(b'\n', &buf) {
            Some(nl) => Some(nl + 1),
            None if self.at_line_start => Some(0),
            None => None,
        };
        if let Some(ls) = last_line {
            let tail = &buf[ls..];
            if !tail.is_empty() && DONE.starts_with(tail) {
                self.pending.extend_from_slice(tail);
                self.pass_hashed(buf.slice(..ls));
                self.at_line_start = true;
                return;
            }
        }
        self.at_line_start = buf.last() == Some(&b'\n');
        self.pass_hashed(buf);
    }

    fn take_inner(&mut self) -> Option<ProxyBody> {
        self.inner.take()
    }

    fn end(&mut self) {
        self.ended = true;
        let rest = self.pending.split().freeze();
        self.pass_hashed(rest);
        if self.inner.as_ref().is_some_and(ProxyBody::completed) {
            self.emit_receipt();
        }
        // A stream that did not complete is not charged: the ticket drops.
        self.ticket = None;
    }
}

/// A paid stream abandoned before its receipt (the client went away):
/// the engine's answer is still read to its end in the background (within
/// the request's deadline, which the body keeps) and charged, without a
/// receipt, so that leaving just before `[DONE]` does not make an answer
/// free. The channel's next request must then cover it (402 otherwise).
impl Drop for PaidStream {
    fn drop(&mut self) {
        if self.ended || self.ticket.is_none() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (Some(ticket), Some(mut inner)) = (self.ticket.take(), self.take_inner()) else {
            return;
        };
        let mut scanner = std::mem::replace(&mut self.scanner, UsageScanner::Off);
        let mut chunks = std::mem::take(&mut self.chunks);
        let rest = self.pending.split().freeze();
        scanner.feed(&rest);
        chunks.feed(&rest);
        rt.spawn(async move {
            use http_body_util::BodyExt;
            while let Some(Ok(frame)) = inner.frame().await {
                if let Some(d) = frame.data_ref() {
                    scanner.feed(d);
                    chunks.feed(d);
                }
                if inner.is_end_stream() {
                    break;
                }
            }
            if inner.completed() {
                let usage = scanner.finish().unwrap_or_else(|| counted(&chunks));
                let r = ticket.charge(usage, [0; 32]);
                tracing::info!(
                    channel = %r.channel,
                    amount = r.amount,
                    "a paid stream was abandoned before its receipt; charged without one"
                );
            }
        });
    }
}

impl Body for PaidStream {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        let this = self.get_mut();
        loop {
            if let Some(b) = this.out.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.feed(data),
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                Poll::Ready(Some(Err(e))) => {
                    this.ticket = None;
                    this.ended = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => this.end(),
                Poll::Pending => return Poll::Pending,
            }
            if this.inner.as_ref().is_some_and(|i| i.is_end_stream()) && !this.ended {
                this.end();
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.out.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
