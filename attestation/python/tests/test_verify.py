"""chrysalis.verify(): identities, policies and typed errors, against the
agent (simulated TDX) and the RA-TLS test servers."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import chrysalis

HEX48 = 96  # hex digits of a 48-byte register


def test_agent_identity_with_allow_sim(agent) -> None:
    ident = chrysalis.verify(agent.url, allow_sim=True, any_image=True)
    assert ident.tee == "tdx"
    assert ident.format == "chrysalis"
    assert ident.simulated is True
    assert ident.trust_anchor == "simulated"
    for reg in ("mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrseam"):
        value = ident.measurements[reg]
        assert len(value) == HEX48 and int(value, 16) >= 0, reg
    assert ident.tcb_status == "UpToDate"
    assert ident.gpu_evidence == "absent"
    assert ident.gpu_evidence_digest is None
    assert ident.certificate_valid is True
    assert ident.certificate_not_before < ident.verified_at < ident.certificate_not_after
    assert len(ident.public_key_sha256) == 64
    assert any("SIMULATED" in w for w in ident.warnings)
    d = ident.to_dict()
    assert d["tee"] == "tdx" and d["measurements"]["mrtd"] == ident.measurements["mrtd"]
    assert d["certificate"]["sha256"] == ident.certificate_sha256
    assert d["certificate"]["valid"] is True
    assert json.loads(ident.to_json()) == d
    assert "tee='tdx'" in repr(ident)
    # The same server, verified again: the same identity (same key).
    again = chrysalis.verify(agent.url, allow_sim=True, any_image=True)
    assert again == ident
    assert again.public_key_sha256 == ident.public_key_sha256


def test_default_policy_rejects_simulated_evidence(agent) -> None:
    with pytest.raises(chrysalis.PolicyRejected) as e:
        chrysalis.verify(agent.url)
    assert isinstance(e.value, chrysalis.ChrysalisError)
    assert not isinstance(e.value, chrysalis.VerificationFailed)
    assert "SIMULATED" in str(e.value)
    assert e.value.reasons and any("SIMULATED" in r for r in e.value.reasons)


def test_default_policy_accepts_only_published_releases(agent) -> None:
    # Simulated evidence allowed, but the simulator's own registers are no
    # published configuration: the default (published releases) refuses.
    assert chrysalis.load_policy(None).accepts.startswith("published releases (chrysalis-")
    with pytest.raises(chrysalis.PolicyRejected) as e:
        chrysalis.verify(agent.url, allow_sim=True)
    assert not any("SIMULATED" in r for r in e.value.reasons), e.value.reasons
    assert e.value.reasons, "every failed rule is listed"
    # --any-image accepts any image, loudly, after the nonce round trip.
    ident = chrysalis.verify(agent.url, allow_sim=True, any_image=True)
    assert ident.node is None and ident.fresh_evidence is True
    assert any("NO IMAGE PINNED" in w for w in ident.warnings), ident.warnings
    with pytest.raises(TypeError):
        chrysalis.load_policy("allow_simulated = true", any_image=True)
    with pytest.raises(ValueError, match="chrysalis-9.9.9-cpu"):
        chrysalis.verify(agent.url, allow_sim=True, release="chrysalis-9.9.9-cpu")


def test_policy_as_toml_text_file_path_and_object(agent, tmp_path: Path) -> None:
    text = 'allow_simulated = true\naccepted_tcb_status = ["UpToDate"]\n'
    f = tmp_path / "policy.toml"
    f.write_text(text)
    for policy in (text, f, str(f), chrysalis.Policy.from_toml(text), chrysalis.Policy.from_file(f)):
        assert chrysalis.verify(agent.url, policy=policy).simulated
    p = chrysalis.load_policy(f)
    assert p.allow_simulated and p.accepted_tcb_status == ["UpToDate"]
    assert not chrysalis.load_policy(None).allow_simulated
    assert not chrysalis.load_policy("").allow_simulated


def test_measurement_policy_names_what_differs(agent) -> None:
    policy = f'allow_simulated = true\n[[tdx.measurements]]\nname = "expected"\nmrtd = "{"ab" * 48}"\n'
    with pytest.raises(chrysalis.PolicyRejected) as e:
        chrysalis.verify(agent.url, policy=policy)
    assert "mrtd" in str(e.value).lower(), str(e.value)


def test_invalid_policies_are_invalid_policy(tmp_path: Path) -> None:
    with pytest.raises(chrysalis.InvalidPolicy, match="no_such_key"):
        chrysalis.load_policy("no_such_key = 1")
    with pytest.raises(chrysalis.InvalidPolicy, match="mrtd"):
        chrysalis.load_policy('[[tdx.measurements]]\nmrtd = "abcd"')
    with pytest.raises(chrysalis.InvalidPolicy, match="missing.toml"):
        chrysalis.load_policy(tmp_path / "missing.toml")
    with pytest.raises(TypeError):
        chrysalis.load_policy(42)  # type: ignore[arg-type]


def test_bad_urls_are_value_errors() -> None:
    for url in ("http://127.0.0.1:1", "127.0.0.1:1", "https://user:pw@127.0.0.1:1", "https://h:0"):
        with pytest.raises(ValueError):
            chrysalis.verify(url)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never says anything."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield int(sock.getsockname()[1])
    stop.set()
    t.join()
    for c in held:
        c.close()
    sock.close()


def test_connection_failures(silent_server: int) -> None:
    with pytest.raises(chrysalis.ConnectionFailed) as e:
        chrysalis.verify(f"https://127.0.0.1:{_free_port()}", allow_sim=True, any_image=True)
    assert "connect to 127.0.0.1" in str(e.value)
    with pytest.raises(chrysalis.ConnectionTimedOut, match="TLS handshake timed out"):
        chrysalis.verify(f"https://127.0.0.1:{silent_server}", allow_sim=True, any_image=True, timeout=0.3)


@pytest.mark.parametrize(
    ("mode", "error", "words"),
    [
        ("copied-evidence", chrysalis.VerificationFailed, "key not bound in evidence"),
        ("stolen-cert", chrysalis.VerificationFailed, "handshake signature invalid"),
        ("plain", chrysalis.MalformedEvidence, "no evidence extension"),
    ],
)
def test_impostors_are_refused(ratls_server: Callable, mode: str, error: type, words: str) -> None:
    srv = ratls_server(mode)
    with pytest.raises(error) as e:
        chrysalis.verify(srv.url, allow_sim=True, any_image=True)
    assert words in str(e.value)
    # Every impostor is a verification failure; a plain TLS server's
    # certificate is the special case with no evidence at all.
    assert isinstance(e.value, chrysalis.VerificationFailed)
    assert not isinstance(e.value, chrysalis.PolicyRejected)
    [report] = srv.connections(1)
    assert "handshake=failed" in report and "received=0" in report, report


def test_snp_identity(ratls_server: Callable) -> None:
    srv = ratls_server("genuine", tee="snp")
    ident = chrysalis.verify(srv.url, allow_sim=True, any_image=True)
    assert ident.tee == "snp"
    assert len(ident.measurements["measurement"]) == HEX48
    assert "host_data" in ident.measurements


def test_offline_certificate_verification(ratls_server: Callable) -> None:
    import ssl

    srv = ratls_server("genuine")
    host, port = srv.url.removeprefix("https://").rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, int(port))) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der
    v = chrysalis.Verifier(chrysalis.Policy.any_image(), allow_sim=True)
    ident = v.verify_certificate(der)
    assert ident.tee == "tdx" and ident.simulated
    with pytest.raises(chrysalis.PolicyRejected):
        chrysalis.Verifier().verify_certificate(der)
    with pytest.raises(chrysalis.MalformedEvidence):
        v.verify_certificate(b"not a certificate")
