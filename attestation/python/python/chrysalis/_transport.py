"""httpx transports whose every connection is RA-TLS, verified in Rust.

Design: httpx keeps doing HTTP (through httpcore's connection pool and its
HTTP/1.1 state machine), but the pool's *network backend* is ours. Its
``connect_tcp`` returns only after the Rust side has connected, run the TLS
1.3 handshake and verified the server's RA-TLS certificate (evidence, its
binding to the handshake key, the policy). A peer that fails raises
:class:`chrysalis.VerificationFailed`, :class:`chrysalis.MalformedEvidence`
or :class:`chrysalis.PolicyRejected` from ``connect_tcp``, before httpcore
has written a single byte of the request. The stream it returns encrypts
and decrypts with that handshake's keys, so the connection stays pinned to
the verified key for its whole life (TLS 1.3: no renegotiation; no session
resumption, so every new connection is verified afresh). httpcore's own
``start_tls`` step is a no-op on these streams.

* sync: :class:`RaTlsTransport` (``httpx.BaseTransport``) over a blocking
  socket owned by Rust, read and written with the GIL released;
* async: :class:`AsyncRaTlsTransport` (``httpx.AsyncBaseTransport``) over an
  anyio socket, TLS in a sans-I/O Rust session; the handshake steps that
  verify run in a worker thread so the event loop is not blocked.

Plain network failures keep httpx's own exceptions (``httpx.ConnectError``,
``httpx.ConnectTimeout``, ``httpx.ReadTimeout`` …, carrying the message of
the :class:`chrysalis.ConnectionFailed` behind them; httpcore's pool drops
the exception chain), so httpx and the OpenAI SDK retry them as usual;
verification failures are raised as they are and never retried.
"""

from __future__ import annotations

import select
import ssl
import threading
import time
import typing
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from types import TracebackType

import anyio
import httpcore
import httpx

from ._native import (
    ConnectionFailed,
    ConnectionTimedOut,
    RaTlsStream,
    TlsSession,
    VerificationFailed,
    VerifiedIdentity,
    Verifier,
)

__all__ = [
    "IDENTITY_INFO",
    "AsyncRaTlsBackend",
    "AsyncRaTlsTransport",
    "RaTlsBackend",
    "RaTlsTransport",
    "identity_of",
]

#: ``stream.get_extra_info(IDENTITY_INFO)`` gives a connection's
#: :class:`chrysalis.VerifiedIdentity`.
IDENTITY_INFO = "chrysalis_identity"

#: Bytes asked of the socket at once.
_RECV_SIZE = 65536

_unused_ssl_context: ssl.SSLContext | None = None


def _pool_ssl_context() -> ssl.SSLContext:
    """An SSL context httpcore requires for https origins but never uses
    here (our streams are TLS already). Without one it would build a
    default context, loading the CA bundle, on every new connection."""
    global _unused_ssl_context
    if _unused_ssl_context is None:
        _unused_ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return _unused_ssl_context


def _fd_readable(fd: int) -> bool:
    """True when a read on the socket would not block (data, or its end)."""
    if fd < 0:
        return True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll(): select()
        try:
            readable, _, _ = select.select([fd], [], [], 0)
            return bool(readable)
        except (OSError, ValueError):
            return True


# --------------------------------------------------------------------- sync


class _SyncStream(httpcore.NetworkStream):
    """httpcore's view of a verified :class:`chrysalis.RaTlsStream`."""

    def __init__(self, stream: RaTlsStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            return self._stream.read(max_bytes, timeout)
        except ConnectionTimedOut as e:
            raise httpcore.ReadTimeout(str(e)) from e
        except ConnectionFailed as e:
            raise httpcore.ReadError(str(e)) from e

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._stream.write(bytes(buffer), timeout)
        except ConnectionTimedOut as e:
            raise httpcore.WriteTimeout(str(e)) from e
        except ConnectionFailed as e:
            raise httpcore.WriteError(str(e)) from e

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        # RA-TLS was established (and verified) in connect_tcp.
        return self

    def get_extra_info(self, info: str) -> typing.Any:
        if info == IDENTITY_INFO:
            return self._stream.identity
        if info == "is_readable":
            return _fd_readable(self._stream.fileno())
        if info == "server_addr":
            host, _, port = self._stream.peer.rpartition(":")
            return (host.strip("[]"), int(port))
        # "ssl_object": None, so httpcore speaks HTTP/1.1 (ALPN offers only it).
        return None


def _node_url(host: str, port: int) -> str:
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


class _NodeVetting:
    """The full node check, once per node and key.

    Every connection's handshake verifies the certificate's evidence and the
    policy (the published releases by default). On top, the first
    connection to a node — and any connection that presents another key —
    runs ``Verifier.verify`` (the same library as ``chrysalis verify``):
    evidence bound to a fresh nonce for that key, the RTMR3 event log, and
    the GPU evidence a gpu release requires. A connection is used only when
    its key is one that passed that check.
    """

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier
        self._vetted: dict[tuple[str, int], str] = {}
        self._lock = threading.Lock()

    def needs(self, host: str, port: int, key: str) -> bool:
        with self._lock:
            return self._vetted.get((host, port)) != key

    def vet(self, host: str, port: int, key: str, timeout: float | None) -> None:
        ident = self.verifier.verify(_node_url(host, port), timeout)
        if ident.public_key_sha256 != key:
            raise VerificationFailed(
                f"{host}:{port}: the node's fresh evidence is for key {ident.public_key_sha256[:16]}…, "
                f"but this connection's certificate has key {key[:16]}…"
            )
        with self._lock:
            self._vetted[(host, port)] = key


class RaTlsBackend(httpcore.NetworkBackend):
    """A network backend whose connections are verified RA-TLS."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier
        self._vetting = _NodeVetting(verifier)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        if local_address is not None:
            raise httpcore.ConnectError("chrysalis: local_address is not supported")
        try:
            stream = self.verifier.connect(host, port, timeout)
        except ConnectionTimedOut as e:
            raise httpcore.ConnectTimeout(str(e)) from e
        except ConnectionFailed as e:
            raise httpcore.ConnectError(str(e)) from e
        except ValueError as e:
            raise httpcore.ConnectError(str(e)) from e
        # VerificationFailed / MalformedEvidence / PolicyRejected propagate
        # unchanged: nothing was sent, and retrying cannot help.
        key = stream.identity.public_key_sha256
        if self._vetting.needs(host, port, key):
            try:
                self._vetting.vet(host, port, key, timeout)
            except ConnectionTimedOut as e:
                stream.close()
                raise httpcore.ConnectTimeout(str(e)) from e
            except ConnectionFailed as e:
                stream.close()
                raise httpcore.ConnectError(str(e)) from e
            except BaseException:
                stream.close()
                raise
        return _SyncStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("chrysalis: RA-TLS over Unix sockets is not supported")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def _httpx_error(exc: BaseException) -> type[httpx.TransportError] | None:
    """The httpx exception class for an httpcore one (same names)."""
    for cls in type(exc).__mro__:
        if cls.__module__.split(".")[0] == "httpcore":
            mapped = getattr(httpx, cls.__name__, None)
            if isinstance(mapped, type) and issubclass(mapped, httpx.TransportError):
                return mapped
    return None


@contextmanager
def _mapped_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        mapped = _httpx_error(exc)
        if mapped is None:
            raise
        raise mapped(str(exc), request=request) from exc


def _check_https(request: httpx.Request) -> None:
    if request.url.scheme != "https":
        raise httpx.UnsupportedProtocol(
            f"chrysalis: {request.url} is not https: RA-TLS is TLS, use https://",
            request=request,
        )


def _core_request(request: httpx.Request) -> httpcore.Request:
    return httpcore.Request(
        method=request.method,
        url=httpcore.URL(
            scheme=request.url.raw_scheme,
            host=request.url.raw_host,
            port=request.url.port,
            target=request.url.raw_path,
        ),
        headers=request.headers.raw,
        content=request.stream,
        extensions=request.extensions,
    )


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes], request: httpx.Request) -> None:
        self._stream = stream
        self._request = request

    def __iter__(self) -> Iterator[bytes]:
        with _mapped_errors(self._request):
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


class RaTlsTransport(httpx.BaseTransport):
    """An httpx transport that sends requests only over verified RA-TLS
    connections (HTTP/1.1, pooled and kept alive like httpx's own).

    Args:
        verifier: the :class:`chrysalis.Verifier` (policy, trust anchors,
            verification cache) every connection is checked with.
        limits: connection pool limits.
        retries: connection attempts retried on connect errors and
            timeouts (never on verification failures).
    """

    def __init__(
        self,
        verifier: Verifier,
        *,
        limits: httpx.Limits = httpx.Limits(max_connections=100, max_keepalive_connections=20),
        retries: int = 0,
    ) -> None:
        self.verifier = verifier
        self._pool = httpcore.ConnectionPool(
            ssl_context=_pool_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            retries=retries,
            network_backend=RaTlsBackend(verifier),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _check_https(request)
        assert isinstance(request.stream, httpx.SyncByteStream)
        with _mapped_errors(request):
            resp = self._pool.handle_request(_core_request(request))
        assert isinstance(resp.stream, Iterable)
        return httpx.Response(
            status_code=resp.status,
            headers=resp.headers,
            stream=_ResponseStream(resp.stream, request),
            extensions=resp.extensions,
        )

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> RaTlsTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        self.close()


# -------------------------------------------------------------------- async


class _AsyncStream(httpcore.AsyncNetworkStream):
    """httpcore's view of an anyio socket carrying a verified Rust session."""

    def __init__(self, sock: anyio.abc.SocketStream, session: TlsSession, identity: VerifiedIdentity) -> None:
        self._sock = sock
        self._session = session
        self._identity = identity

    async def _send(self, data: bytes, timeout: float | None) -> None:
        if not data:
            return
        try:
            with anyio.fail_after(timeout):
                await self._sock.send(data)
        except TimeoutError as e:
            raise httpcore.WriteTimeout(f"{self._session.peer}: write timed out") from e
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as e:
            raise httpcore.WriteError(f"{self._session.peer}: write: {e!r}") from e

    async def _receive(self, timeout: float | None) -> None:
        try:
            with anyio.fail_after(timeout):
                try:
                    chunk = await self._sock.receive(_RECV_SIZE)
                except anyio.EndOfStream:
                    chunk = b""
        except TimeoutError as e:
            raise httpcore.ReadTimeout(f"{self._session.peer}: read timed out") from e
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as e:
            raise httpcore.ReadError(f"{self._session.peer}: read: {e!r}") from e
        try:
            self._session.receive(chunk)
        except ConnectionFailed as e:
            raise httpcore.ReadError(str(e)) from e
        # Key updates and alerts the peer's records asked for.
        await self._send(self._session.data_to_send(), timeout)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        while True:
            try:
                data = self._session.read(max_bytes)
            except ConnectionFailed as e:
                raise httpcore.ReadError(str(e)) from e
            if data is not None:
                return data
            await self._receive(timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._session.write(bytes(buffer))
        except ConnectionFailed as e:
            raise httpcore.WriteError(str(e)) from e
        await self._send(self._session.data_to_send(), timeout)

    async def aclose(self) -> None:
        try:
            self._session.close()
            with anyio.move_on_after(1, shield=True):
                await self._sock.send(self._session.data_to_send())
        except Exception:  # noqa: BLE001 - closing: best effort
            pass
        finally:
            await self._sock.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # RA-TLS was established (and verified) in connect_tcp.
        return self

    def get_extra_info(self, info: str) -> typing.Any:
        if info == IDENTITY_INFO:
            return self._identity
        if info == "is_readable":
            raw = self._sock.extra(anyio.abc.SocketAttribute.raw_socket, None)
            return True if raw is None else _fd_readable(raw.fileno())
        if info == "server_addr":
            return self._sock.extra(anyio.abc.SocketAttribute.remote_address, None)
        return None


async def _handshake(sock: anyio.abc.SocketStream, session: TlsSession) -> None:
    await sock.send(session.data_to_send())
    while session.is_handshaking:
        try:
            chunk = await sock.receive(_RECV_SIZE)
        except anyio.EndOfStream:
            chunk = b""
        # The certificate arrives in one of these: verification runs in a
        # worker thread (the Rust side releases the GIL), not on the loop.
        await anyio.to_thread.run_sync(session.receive, chunk)
        out = session.data_to_send()
        if out:
            await sock.send(out)


class AsyncRaTlsBackend(httpcore.AsyncNetworkBackend):
    """The async network backend whose connections are verified RA-TLS."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier
        self._vetting = _NodeVetting(verifier)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if local_address is not None:
            raise httpcore.ConnectError("chrysalis: local_address is not supported")
        try:
            session = self.verifier.session(host, port)
        except ValueError as e:
            raise httpcore.ConnectError(str(e)) from e
        peer = session.peer
        try:
            with anyio.fail_after(timeout):
                sock = await anyio.connect_tcp(host, port)
        except TimeoutError as e:
            raise httpcore.ConnectTimeout(f"{peer}: connect timed out after {timeout}s") from e
        except OSError as e:
            raise httpcore.ConnectError(f"connect to {peer}: {e}") from e
        try:
            with anyio.fail_after(timeout):
                await _handshake(sock, session)
        except BaseException as exc:
            # Tell the peer why (the alert rustls queued), then close.
            with anyio.move_on_after(1, shield=True):
                try:
                    await sock.send(session.data_to_send())
                except Exception:  # noqa: BLE001 - best effort
                    pass
                await sock.aclose()
            if isinstance(exc, TimeoutError):
                raise httpcore.ConnectTimeout(
                    f"{peer}: TLS handshake timed out after {timeout}s"
                ) from exc
            if isinstance(exc, ConnectionFailed):
                raise httpcore.ConnectError(str(exc)) from exc
            if isinstance(exc, (OSError, anyio.BrokenResourceError)):
                raise httpcore.ConnectError(f"{peer}: TLS handshake: {exc!r}") from exc
            raise
        identity = session.identity
        assert identity is not None  # the handshake completed: verified
        key = identity.public_key_sha256
        if self._vetting.needs(host, port, key):
            try:
                await anyio.to_thread.run_sync(self._vetting.vet, host, port, key, timeout)
            except BaseException as exc:
                with anyio.move_on_after(1, shield=True):
                    await sock.aclose()
                if isinstance(exc, ConnectionTimedOut):
                    raise httpcore.ConnectTimeout(str(exc)) from exc
                if isinstance(exc, ConnectionFailed):
                    raise httpcore.ConnectError(str(exc)) from exc
                raise
        return _AsyncStream(sock, session, identity)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("chrysalis: RA-TLS over Unix sockets is not supported")

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


class _AsyncResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: typing.AsyncIterable[bytes], request: httpx.Request) -> None:
        self._stream = stream
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped_errors(self._request):
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            await aclose()


class AsyncRaTlsTransport(httpx.AsyncBaseTransport):
    """The async counterpart of :class:`RaTlsTransport` (asyncio or trio)."""

    def __init__(
        self,
        verifier: Verifier,
        *,
        limits: httpx.Limits = httpx.Limits(max_connections=100, max_keepalive_connections=20),
        retries: int = 0,
    ) -> None:
        self.verifier = verifier
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=_pool_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=True,
            http2=False,
            retries=retries,
            network_backend=AsyncRaTlsBackend(verifier),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _check_https(request)
        assert isinstance(request.stream, httpx.AsyncByteStream)
        with _mapped_errors(request):
            resp = await self._pool.handle_async_request(_core_request(request))
        assert isinstance(resp.stream, typing.AsyncIterable)
        return httpx.Response(
            status_code=resp.status,
            headers=resp.headers,
            stream=_AsyncResponseStream(resp.stream, request),
            extensions=resp.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def __aenter__(self) -> AsyncRaTlsTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()


def identity_of(response: httpx.Response) -> VerifiedIdentity | None:
    """The verified identity of the connection that carried ``response``
    (None when it did not come through a chrysalis transport)."""
    stream = response.extensions.get("network_stream")
    if stream is None:
        return None
    identity = stream.get_extra_info(IDENTITY_INFO)
    return identity if isinstance(identity, VerifiedIdentity) else None
