"""Chrysalis: talk only to machines that proved what they run.

Verified RA-TLS for Python, built on the Rust verifier (``chrysalis-ratls``).
Every connection's TLS 1.3 handshake, the TEE evidence in the server's
certificate, its binding to the handshake key and your policy are checked
in Rust before a single byte of your request is sent.

Example, with the OpenAI SDK::

    import chrysalis, openai
    client = openai.OpenAI(base_url="https://node.example:8443/v1", api_key="-",
                           http_client=chrysalis.http_client(policy="policy.toml"))
    for chunk in client.chat.completions.create(model="m", messages=[...], stream=True):
        print(chunk.choices[0].delta.content or "", end="")

Errors (all subclasses of :class:`ChrysalisError`):

* :class:`VerificationFailed` — the server did not prove what it runs
  (signature, chain, binding, validity, handshake key); its subclass
  :class:`MalformedEvidence` means the certificate carries no RA-TLS
  evidence at all (an ordinary TLS server) or evidence that cannot be decoded;
* :class:`PolicyRejected` — authentic evidence the policy rejects
  (``.reasons`` lists every failed rule; simulated evidence without
  ``allow_sim=True``, an out-of-date TCB, unknown measurements …);
* :class:`ConnectionFailed` (:class:`ConnectionTimedOut`) — the network;
* :class:`InvalidPolicy` — the policy file or text.

Through httpx, verification errors are raised as they are (and never
retried); network errors keep httpx's types (``httpx.ConnectError``,
``httpx.ReadTimeout`` …, with the chrysalis error's message) so that httpx
and the OpenAI SDK retry them as usual.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from ._native import (
    ChrysalisError,
    ConnectionFailed,
    ConnectionTimedOut,
    InvalidPolicy,
    MalformedEvidence,
    PaidAnswer,
    PaymentChannel,
    PaymentRefused,
    Policy,
    PolicyRejected,
    RaTlsStream,
    TlsSession,
    VerificationFailed,
    VerifiedIdentity,
    Verifier,
    __version__,
)
from ._payment import PayingTransport
from ._transport import (
    IDENTITY_INFO,
    AsyncRaTlsBackend,
    AsyncRaTlsTransport,
    RaTlsBackend,
    RaTlsTransport,
    identity_of,
)

__all__ = [
    "IDENTITY_INFO",
    "AsyncRaTlsBackend",
    "AsyncRaTlsTransport",
    "ChrysalisError",
    "ConnectionFailed",
    "ConnectionTimedOut",
    "InvalidPolicy",
    "MalformedEvidence",
    "PaidAnswer",
    "PayingTransport",
    "PaymentChannel",
    "PaymentRefused",
    "Policy",
    "PolicyLike",
    "PolicyRejected",
    "RaTlsBackend",
    "RaTlsStream",
    "RaTlsTransport",
    "TlsSession",
    "VerificationFailed",
    "VerifiedIdentity",
    "Verifier",
    "__version__",
    "async_http_client",
    "http_client",
    "identity_of",
    "load_policy",
    "verifier",
    "verify",
]

#: What a ``policy`` argument may be: a :class:`Policy`, a path to a policy
#: TOML file (``str`` or ``os.PathLike``), policy TOML text, or None for the
#: default policy.
PolicyLike = Policy | str | os.PathLike[str] | None

#: Default time limit of :func:`verify`, seconds.
DEFAULT_VERIFY_TIMEOUT = 30.0

# httpx.Client / AsyncClient arguments that would bypass or weaken the
# verified transport.
_REFUSED_KWARGS = ("transport", "mounts", "verify", "cert", "proxy", "http2", "app", "uds")


def load_policy(
    policy: PolicyLike = None, *, release: str | None = None, any_image: bool = False
) -> Policy:
    """The :class:`Policy` that ``policy`` names.

    A :class:`Policy` is used as is; an ``os.PathLike`` is a file; a
    ``str`` is TOML text when it contains ``=``, ``[`` or a newline (every
    non-empty policy does) or is blank, else a file path; None is the
    default policy: the published Chrysalis releases compiled into this
    package (every register of each configuration pinned), TCB
    ``UpToDate`` only, no debug, no simulated evidence. ``release`` narrows
    the default to one published release; ``any_image=True`` accepts any
    image on an authentic TEE (every identity's ``warnings`` says NO IMAGE
    PINNED).

    Raises:
        InvalidPolicy: unreadable file, bad TOML, unknown key, wrong hex length.
        TypeError: more than one of ``policy``, ``release``, ``any_image``.
    """
    if sum(x is not None and x is not False for x in (policy, release, any_image)) > 1:
        raise TypeError("give at most one of policy, release and any_image")
    if any_image:
        return Policy.any_image()
    if release is not None:
        return Policy.published(release)
    if policy is None:
        return Policy()
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, os.PathLike):
        return Policy.from_file(os.fspath(policy))
    if isinstance(policy, str):
        if not policy.strip() or any(c in policy for c in "=[\n"):
            return Policy.from_toml(policy)
        return Policy.from_file(policy)
    raise TypeError(f"policy: expected Policy, a path, TOML text or None, got {type(policy).__name__}")


def verifier(
    policy: PolicyLike = None,
    allow_sim: bool = False,
    *,
    release: str | None = None,
    any_image: bool = False,
) -> Verifier:
    """A :class:`Verifier` for ``policy`` (see :func:`load_policy`);
    ``allow_sim=True`` also accepts SIMULATED evidence (development only:
    it proves nothing)."""
    return Verifier(load_policy(policy, release=release, any_image=any_image), allow_sim)


def verify(
    url: str,
    policy: PolicyLike = None,
    allow_sim: bool = False,
    timeout: float | None = DEFAULT_VERIFY_TIMEOUT,
    *,
    release: str | None = None,
    any_image: bool = False,
) -> VerifiedIdentity:
    """Verifies the node at ``https://HOST:PORT`` exactly as ``chrysalis
    verify`` does (the same Rust library): RA-TLS handshake, evidence bound
    to a fresh random nonce for the same key, the published configuration
    it runs (``identity.node``; by default only published releases are
    accepted), and its GPU evidence (required for a gpu release); closes
    and returns what it proved.

    The network I/O and the verification run in Rust with the GIL released.

    Raises:
        MalformedEvidence: no RA-TLS evidence, or undecodable evidence.
        VerificationFailed: the evidence or the handshake does not verify.
        PolicyRejected: authentic, but the policy rejects it.
        ConnectionFailed: TCP or TLS failed (ConnectionTimedOut: too slow).
        InvalidPolicy: the policy cannot be read.
        ValueError: the URL is not ``https://HOST[:PORT]``.
    """
    return verifier(policy, allow_sim, release=release, any_image=any_image).verify(url, timeout)


def _split_kwargs(kind: str, kwargs: dict[str, Any]) -> tuple[httpx.Limits, dict[str, Any]]:
    refused = [k for k in _REFUSED_KWARGS if k in kwargs]
    if refused:
        raise TypeError(
            f"chrysalis.{kind}: {', '.join(refused)} cannot be combined with the verified "
            "transport (TLS and its verification are chrysalis's)"
        )
    limits = kwargs.pop("limits", httpx.Limits(max_connections=100, max_keepalive_connections=20))
    kwargs.setdefault("timeout", httpx.Timeout(600.0, connect=30.0))
    return limits, kwargs


def http_client(
    policy: PolicyLike = None,
    allow_sim: bool = False,
    *,
    release: str | None = None,
    any_image: bool = False,
    retries: int = 0,
    channel: str | os.PathLike[str] | PaymentChannel | None = None,
    **httpx_kwargs: Any,
) -> httpx.Client:
    """An ``httpx.Client`` whose every connection is verified RA-TLS.

    Pass it to the OpenAI SDK as ``openai.OpenAI(http_client=...)``. Any
    ``httpx.Client`` argument may be given (``timeout``, ``headers``,
    ``limits``, ``base_url``, ``event_hooks`` …) except those that replace
    the transport or its TLS (``transport``, ``mounts``, ``verify``,
    ``cert``, ``proxy``, ``http2``). Only ``https://`` URLs are served.
    ``retries`` retries connect errors (never verification failures).
    ``channel`` (a channel file from ``chrysalis ton channel open``, or a
    :class:`PaymentChannel`) pays per token through that TON payment
    channel and verifies every usage receipt (see ``chrysalis._payment``).
    """
    limits, kwargs = _split_kwargs("http_client", dict(httpx_kwargs))
    transport: httpx.BaseTransport = RaTlsTransport(
        verifier(policy, allow_sim, release=release, any_image=any_image), limits=limits, retries=retries
    )
    if channel is not None:
        ch = channel if isinstance(channel, PaymentChannel) else PaymentChannel(os.fspath(channel))
        transport = PayingTransport(transport, ch)
    return httpx.Client(transport=transport, **kwargs)


def async_http_client(
    policy: PolicyLike = None,
    allow_sim: bool = False,
    *,
    release: str | None = None,
    any_image: bool = False,
    retries: int = 0,
    **httpx_kwargs: Any,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every connection is verified RA-TLS
    (for ``openai.AsyncOpenAI(http_client=...)``); see :func:`http_client`."""
    limits, kwargs = _split_kwargs("async_http_client", dict(httpx_kwargs))
    transport = AsyncRaTlsTransport(
        verifier(policy, allow_sim, release=release, any_image=any_image), limits=limits, retries=retries
    )
    return httpx.AsyncClient(transport=transport, **kwargs)
