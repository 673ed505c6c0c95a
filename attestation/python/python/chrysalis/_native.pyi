"""Types of the Rust extension ``chrysalis._native`` (see ``src/py.rs``)."""

from os import PathLike
from typing import Any

__version__: str

class ChrysalisError(Exception):
    """Base class of every error of the chrysalis package."""

class VerificationFailed(ChrysalisError):
    """The peer did not prove what it runs: a signature, chain, binding,
    validity or handshake check failed."""

class MalformedEvidence(VerificationFailed):
    """The certificate carries no RA-TLS evidence, or evidence, claims or
    collateral that cannot be decoded."""

class PolicyRejected(ChrysalisError):
    """Authentic evidence the policy rejects."""

    reasons: list[str]
    """Every failed policy rule."""

class ConnectionFailed(ChrysalisError):
    """TCP or TLS failed for a reason other than the peer's evidence."""

class ConnectionTimedOut(ConnectionFailed):
    """Connecting, the handshake, a read or a write took too long."""

class InvalidPolicy(ChrysalisError):
    """The policy file or text cannot be read or is invalid."""

class Policy:
    """Which TCB statuses, measurements, debug and simulated evidence are
    acceptable (README "Policy file"). ``Policy()`` is the default policy:
    the published Chrysalis releases compiled into this package."""

    def __init__(self) -> None: ...
    @staticmethod
    def published(release: str | None = None) -> Policy:
        """Only published releases (all, or the one named)."""
    @staticmethod
    def any_image() -> Policy:
        """Any image on an authentic TEE; outputs say NO IMAGE PINNED."""
    @property
    def accepts(self) -> str:
        """What image this policy accepts, in words."""
    @staticmethod
    def from_toml(text: str) -> Policy: ...
    @staticmethod
    def from_file(path: str | PathLike[str]) -> Policy: ...
    @property
    def allow_simulated(self) -> bool: ...
    @property
    def accepted_tcb_status(self) -> list[str]: ...

class VerifiedIdentity:
    """What a verified peer proved. Immutable."""

    @property
    def tee(self) -> str:
        """``"tdx"`` or ``"snp"``."""
    @property
    def format(self) -> str:
        """``"chrysalis"`` or ``"cocoon"``."""
    @property
    def simulated(self) -> bool:
        """True when the evidence chained to a simulated root (proves nothing)."""
    @property
    def trust_anchor(self) -> str:
        """``"production"``, ``"simulated"`` or ``"custom"``."""
    @property
    def measurements(self) -> dict[str, Any]:
        """TDX: ``mrtd``, ``rtmr0``..``rtmr3``, ``mrseam``, ``mrconfigid``,
        ``mrowner``, ``mrownerconfig``, ``td_attributes``, ``xfam``,
        ``tee_tcb_svn``, ``fmspc`` (hex). SNP: ``measurement``,
        ``host_data``, ``family_id``, ``image_id``, ``chip_id`` (hex),
        ``policy``, ``guest_svn``, ``vmpl``, ``reported_tcb``, ``product``, ``vlek``."""
    @property
    def tcb_status(self) -> str:
        """``"UpToDate"``, ``"SWHardeningNeeded"``, ``"OutOfDate"`` …"""
    @property
    def advisory_ids(self) -> list[str]: ...
    @property
    def tcb_notes(self) -> list[str]: ...
    @property
    def debug(self) -> bool: ...
    @property
    def gpu_evidence(self) -> str:
        """``"absent"`` or ``"bound_not_verified"``."""
    @property
    def gpu_evidence_digest(self) -> str | None:
        """SHA-384 of the bound GPU evidence, hex."""
    @property
    def certificate_sha256(self) -> str | None: ...
    @property
    def certificate_not_before(self) -> str | None:
        """RFC 3339."""
    @property
    def certificate_not_after(self) -> str | None:
        """RFC 3339."""
    @property
    def certificate_valid(self) -> bool:
        """True when the certificate is valid now."""
    @property
    def public_key_der(self) -> bytes:
        """The attested key's DER SubjectPublicKeyInfo."""
    @property
    def public_key_sha256(self) -> str:
        """SHA-256 of the attested key's SubjectPublicKeyInfo, hex: the key
        the connection is pinned to."""
    @property
    def created_at(self) -> str | None:
        """When the evidence was created, RFC 3339."""
    @property
    def verified_at(self) -> str:
        """RFC 3339."""
    @property
    def node(self) -> str | None:
        """The accepted configuration the registers matched, e.g.
        ``chrysalis-0.2.0-cpu / snp-2cpu-EPYC-v4``; None: no image pinned."""
    @property
    def fresh_evidence(self) -> bool:
        """True when evidence bound to a fresh nonce was verified (``verify``)."""
    @property
    def release(self) -> str | None: ...
    @property
    def warnings(self) -> list[str]: ...
    def to_dict(self) -> dict[str, Any]:
        """Every field as JSON-compatible values."""
    def to_json(self) -> str: ...

class RaTlsStream:
    """A verified RA-TLS connection over a blocking socket."""

    @property
    def identity(self) -> VerifiedIdentity: ...
    @property
    def peer(self) -> str:
        """``HOST:PORT``."""
    @property
    def alpn(self) -> str | None: ...
    def fileno(self) -> int: ...
    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Up to ``max_bytes`` of plaintext; ``b""`` at the end of the stream."""
    def write(self, data: bytes, timeout: float | None = None) -> None: ...
    def close(self) -> None: ...

class TlsSession:
    """A sans-I/O RA-TLS client session (the async transport drives it)."""

    @property
    def peer(self) -> str: ...
    @property
    def is_handshaking(self) -> bool: ...
    @property
    def identity(self) -> VerifiedIdentity | None: ...
    @property
    def alpn(self) -> str | None: ...
    def receive(self, data: bytes) -> None:
        """Bytes from the socket (``b""``: its end); verifies during the handshake."""
    def data_to_send(self) -> bytes: ...
    def read(self, max_bytes: int) -> bytes | None:
        """Plaintext; None when more must be received; ``b""`` at the end."""
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...

class Verifier:
    """Production Intel and AMD roots, a policy, a verification cache."""

    def __init__(self, policy: Policy | None = None, allow_sim: bool = False) -> None: ...
    @property
    def allow_sim(self) -> bool: ...
    def connect(self, host: str, port: int, timeout: float | None = None) -> RaTlsStream:
        """Connects and completes a verified TLS 1.3 handshake."""
    def verify(self, url: str, timeout: float | None = None) -> VerifiedIdentity:
        """Verifies the node at ``https://HOST:PORT`` like ``chrysalis
        verify``: handshake, nonce-fresh evidence, published configuration,
        GPU evidence; closes."""
    def session(self, host: str, port: int) -> TlsSession: ...
    def verify_certificate(self, der: bytes) -> VerifiedIdentity:
        """Verifies a DER certificate offline, now."""

class PaymentRefused(ChrysalisError):
    """A usage receipt was refused (forged, overcharging, not matching the
    answer), or the channel cannot pay (another machine's key, deposit used up)."""

class PaidAnswer:
    """The bytes of one paid answer as they arrive."""

    def __init__(self) -> None: ...
    def feed(self, chunk: bytes) -> None: ...
    def has_receipt(self) -> bool:
        """Whether an event stream's receipt event has been read whole."""

class PaymentChannel:
    """A channel file from ``chrysalis ton channel open`` (mode 0600)."""

    def __init__(self, path: str | PathLike[str]) -> None: ...
    def voucher(self) -> str:
        """The voucher for everything paid so far (recorded first)."""
    def accept(self, answer: PaidAnswer, header: str | None, request: bytes, public_key_der: bytes) -> dict[str, int]:
        """Checks and records the answer's receipt: ``{"seq", "amount", "cumulative"}``."""
    def check_key(self, public_key_der: bytes) -> None: ...
    @property
    def charged(self) -> int: ...
    @property
    def seq(self) -> int: ...
    @property
    def address(self) -> str: ...
