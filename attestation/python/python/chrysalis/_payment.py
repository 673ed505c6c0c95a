"""Paying through a TON payment channel: an httpx transport around the
verified one (``chrysalis.http_client(channel=FILE)``).

For each request to a token route (``/v1/chat/completions``,
``/v1/completions``, ``/v1/embeddings``) it sends the channel's voucher for
everything paid so far (``X-Chrysalis-Voucher``), reads the answer as it
streams (the ``chrysalis.receipt`` event is taken out of the stream, so the
OpenAI SDK never sees it), checks the receipt in Rust with the same checks
as ``chrysalis chat --channel`` (signed by the connection's attested key,
that key the channel's machine key, this channel, the next sequence
number, the request and response bytes, the tokens the answer reported, a
price no higher than the channel's) and, when it passes, pays for it at
once with a voucher sent along ``GET /v1/models``. A refused receipt raises
:class:`PaymentRefused` at the end of the answer and is never paid.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType

import httpx

from ._native import PaidAnswer, PaymentChannel, PaymentRefused
from ._transport import RaTlsTransport, identity_of

VOUCHER_HEADER = "x-chrysalis-voucher"
RECEIPT_HEADER = "x-chrysalis-receipt"
RECEIPT_EVENT_LINE = b"event: chrysalis.receipt"
PAID_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")


class _WithoutReceiptEvent:
    """Passes an event stream on without the receipt event (whole lines;
    only an unfinished line is held back)."""

    def __init__(self) -> None:
        self._pending = b""
        self._skipping = False

    def feed(self, chunk: bytes) -> bytes:
        data = self._pending + chunk
        end = data.rfind(b"\n") + 1
        self._pending = data[end:]
        out = []
        for line in data[:end].splitlines(keepends=True):
            bare = line.rstrip(b"\r\n")
            if self._skipping:
                if not bare:
                    self._skipping = False
                continue
            if bare == RECEIPT_EVENT_LINE:
                self._skipping = True
                continue
            out.append(line)
        return b"".join(out)

    def finish(self) -> bytes:
        rest, self._pending = self._pending, b""
        return b"" if self._skipping else rest


class _PaidStream(httpx.SyncByteStream):
    def __init__(self, transport: PayingTransport, response: httpx.Response, request: httpx.Request,
                 body: bytes, key: bytes) -> None:
        self._transport = transport
        self._inner = response.stream
        self._header = response.headers.get(RECEIPT_HEADER)
        self._sse = response.headers.get("content-type", "").startswith("text/event-stream")
        self._request = request
        self._body = body
        self._key = key
        self._answer = PaidAnswer()
        self._filter = _WithoutReceiptEvent()
        self._settled = False

    def _settle(self) -> None:
        if not self._settled:
            self._settled = True
            self._transport._settle(self._answer, self._header, self._body, self._key, self._request)

    def __iter__(self) -> Iterator[bytes]:
        assert isinstance(self._inner, httpx.SyncByteStream)
        for chunk in self._inner:
            self._answer.feed(chunk)
            # Settled as soon as the receipt is in: an SDK stops reading at
            # `[DONE]`, which follows it.
            if self._sse and self._answer.has_receipt():
                self._settle()
            out = self._filter.feed(chunk) if self._sse else chunk
            if out:
                yield out
        if self._sse:
            rest = self._filter.finish()
            if rest:
                yield rest
        self._settle()

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


class PayingTransport(httpx.BaseTransport):
    """The verified transport, paying through ``channel`` (see module doc)."""

    def __init__(self, inner: RaTlsTransport, channel: PaymentChannel) -> None:
        self._inner = inner
        self.channel = channel

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or request.url.path not in PAID_PATHS:
            return self._inner.handle_request(request)
        body = request.read()
        request.headers[VOUCHER_HEADER] = self.channel.voucher()
        response = self._inner.handle_request(request)
        if response.status_code != 200:
            return response
        identity = identity_of(response)
        if identity is None:
            response.close()
            raise PaymentRefused("the answer did not come over a verified connection")
        key = identity.public_key_der
        self.channel.check_key(key)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_PaidStream(self, response, request, body, key),
            extensions=response.extensions,
        )

    def _settle(self, answer: PaidAnswer, header: str | None, body: bytes, key: bytes,
                request: httpx.Request) -> None:
        self.channel.accept(answer, header, body, key)
        url = request.url.copy_with(path="/v1/models", query=None)
        pay = httpx.Request("GET", url, headers={VOUCHER_HEADER: self.channel.voucher()})
        resp = self._inner.handle_request(pay)
        resp.read()
        resp.close()
        if resp.status_code != 200:
            raise PaymentRefused(f"the agent did not take the voucher: HTTP {resp.status_code}")

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> PayingTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.close()
