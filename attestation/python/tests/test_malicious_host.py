"""The malicious-host suite, Python side: the real ``chrysalis-agent
--provider sim`` playing the published cpu release
(``--sim-release chrysalis-0.2.0-cpu --sim-configuration …``) with one
``--sim-set`` deviation, verified by ``chrysalis.verify(..., allow_sim=True)``.
Every attack must be refused with its own reason; the honest node accepted.
The Rust suite (``tests/tests/malicious_host.rs``) runs the same cases
through ``chrysalis verify``; the README's "Malicious-host suite" table
lists them.

The client is the default one: ``chrysalis.verify(url, allow_sim=True)``
accepts the published releases compiled into the wheel, with evidence bound
to a fresh nonce. As a cross-check the same policy is also computed here,
independently of the Rust code that builds it, from
``measurements/releases/*/measurements.json``: each SNP configuration's
MEASUREMENT with HOST_DATA = SHA-256 of the default host configuration
``{}``; each TDX configuration of a cpu release with MRTD and RTMR0-2 as
published and the RTMR3 the agent extends for ``{}``
(``SHA-384("chrysalis:" name ":" payload)`` events ``config`` then
``boot-done``), checked against the published RTMR3; and
``require_image``. A configuration leaving a register null is not
verifiable and left out (none of the published release's is).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import chrysalis
from conftest import REPO, Process

RELEASE = "chrysalis-0.2.0-cpu"
SNP_CONF = "snp-2cpu-EPYC-v4"
TDX_CONF = "tdx-2cpu-2048m-0gpu"
DEFAULT_HOST_CONFIGURATION = b"{}"


def sha384(b: bytes) -> bytes:
    return hashlib.sha384(b).digest()


def event(name: str, payload: bytes) -> bytes:
    return sha384(b"chrysalis:" + name.encode() + b":" + payload)


def replay(digests: list[bytes]) -> str:
    r = bytes(48)
    for d in digests:
        r = sha384(r + d)
    return r.hex()


def boot_events(config: bytes) -> list[bytes]:
    return [event("config", sha384(config)), event("boot-done", b"")]


def published_policy() -> str:
    lines = ["require_image = true"]
    host_data = hashlib.sha256(DEFAULT_HOST_CONFIGURATION).hexdigest()
    rtmr3 = replay(boot_events(DEFAULT_HOST_CONFIGURATION))
    for m in sorted((REPO / "measurements" / "releases").glob("*/measurements.json")):
        release = m.parent.name
        for c in json.loads(m.read_text())["configurations"]:
            label = f"{release} / {c['name']}"
            if c.get("snp"):
                assert c["snp"].get("host_data") in (None, host_data), label
                lines += [
                    "[[snp.measurements]]",
                    f'name = "{label}"',
                    f'measurement = "{c["snp"]["measurement"]}"',
                    f'host_data = "{host_data}"',
                ]
            t = c.get("tdx")
            registers = ("mrtd", "rtmr0", "rtmr1", "rtmr2")
            if t and not release.endswith("-gpu") and all(t.get(r) for r in registers):
                assert t.get("rtmr3") in (None, rtmr3), f"{label}: published RTMR3 is the boot replay"
                lines += ["[[tdx.measurements]]", f'name = "{label}"']
                lines += [f'{r} = "{t[r]}"' for r in registers]
                lines.append(f'rtmr3 = "{rtmr3}"')
                lines += [f'{r} = "{t[r]}"' for r in ("td_attributes", "xfam") if t.get(r)]
    return "\n".join(lines) + "\n"


PUBLISHED = published_policy()


@pytest.fixture
def node(agent_bin: Path, engine) -> Iterator[Callable[..., str]]:
    """Starts an agent playing ``conf`` with ``sets``; returns its URL."""
    started: list[Process] = []

    def start(conf: str | None, *sets: str, extra: tuple[str, ...] = ()) -> str:
        argv = [
            str(agent_bin),
            "--provider", "sim",
            "--listen", "127.0.0.1:0",
            "--upstream", engine.url,
            "--metrics-listen", "127.0.0.1:0",
            "--log-format", "text",
        ]
        if conf:
            argv += ["--sim-release", RELEASE, "--sim-configuration", conf]
        for s in sets:
            argv += ["--sim-set", s]
        p = Process.start(argv + list(extra))
        started.append(p)
        return p.wait_for(r"ready\S*\s+(https://127\.0\.0\.1:\d+)").group(1)

    yield start
    for p in started:
        p.stop()


#: The default client (the published releases).
DEFAULT = None


def rejected(url: str, policy: str | None, words: str) -> None:
    with pytest.raises(chrysalis.PolicyRejected) as e:
        chrysalis.verify(url, policy=policy, allow_sim=True)
    assert any(words in r for r in e.value.reasons), e.value.reasons


def test_honest_snp_node_is_accepted_and_named(node) -> None:
    url = node(SNP_CONF)
    ident = chrysalis.verify(url, allow_sim=True)
    assert ident.node == f"{RELEASE} / {SNP_CONF}"
    assert ident.fresh_evidence is True
    published = json.loads((REPO / "measurements/releases" / RELEASE / "measurements.json").read_text())
    conf = next(c for c in published["configurations"] if c["name"] == SNP_CONF)
    assert ident.tee == "snp" and ident.simulated
    assert ident.measurements["measurement"] == conf["snp"]["measurement"]
    assert ident.measurements["host_data"] == hashlib.sha256(b"{}").hexdigest()
    # The policy recomputed here agrees with the compiled-in default.
    assert chrysalis.verify(url, policy=PUBLISHED, allow_sim=True).node == f"policy set {ident.node}"


def test_honest_tdx_node_is_accepted_and_named(node) -> None:
    url = node(TDX_CONF)
    ident = chrysalis.verify(url, allow_sim=True)
    assert ident.node == f"{RELEASE} / {TDX_CONF}"
    assert ident.tee == "tdx" and ident.simulated
    published = json.loads((REPO / "measurements/releases" / RELEASE / "measurements.json").read_text())
    conf = next(c for c in published["configurations"] if c["name"] == TDX_CONF)
    for r in ("mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3"):
        assert ident.measurements[r] == conf["tdx"][r], r
    assert ident.measurements["rtmr3"] == replay(boot_events(b"{}")), "RTMR3 recomputed in Python"
    # The policy recomputed here agrees with the compiled-in default.
    assert chrysalis.verify(url, policy=PUBLISHED, allow_sim=True).node == f"policy set {ident.node}"


SNP_ATTACKS = [
    ("other MEASUREMENT", ("measurement=" + "42" * 48,), "MEASUREMENT is 4242"),
    ("SNP debug", ("policy=0xb0000",), "SNP policy DEBUG bit 19 set"),
    ("MIGRATE_MA", ("policy=0x70000",), "sets MIGRATE_MA (bit 18)"),
    ("VMPL 1", ("vmpl=1",), "report requested at VMPL 1"),
    (
        "TCB below the Milan floor",
        ("reported_tcb=" + hex(int.from_bytes(bytes([4, 0, 0, 0, 0, 0, 21, 219]), "little")),),
        "TCB status OutOfDate is not accepted",
    ),
]


@pytest.mark.parametrize("case,sets,words", SNP_ATTACKS, ids=[c[0] for c in SNP_ATTACKS])
def test_snp_attacks_are_refused(node, case: str, sets: tuple[str, ...], words: str) -> None:
    rejected(node(SNP_CONF, *sets), DEFAULT, words)


def test_unknown_image_is_refused(node) -> None:
    rejected(node(None, extra=("--sim-tee", "snp")), DEFAULT, "MEASUREMENT is")
    url = node(None)
    for policy in (DEFAULT, PUBLISHED):
        rejected(url, policy, "MRTD is")


def test_runtime_configuration_not_allowed(node, tmp_path: Path) -> None:
    cfg = tmp_path / "runtime.json"
    cfg.write_text('{"model": "attacker-chosen"}')
    rejected(node(SNP_CONF, extra=("--runtime-config", str(cfg))), DEFAULT, "HOST_DATA is")
    rejected(node(TDX_CONF, extra=("--runtime-config", str(cfg))), DEFAULT, "RTMR3 is")


R42 = "42" * 48
TDX_ATTACKS = [
    ("MRTD", ("mrtd=" + R42,), "MRTD is 4242"),
    ("RTMR0", ("rtmr0=" + R42,), "RTMR0 is 4242"),
    ("RTMR1", ("rtmr1=" + R42,), "RTMR1 is 4242"),
    ("RTMR2", ("rtmr2=" + R42,), "RTMR2 is 4242"),
    ("debug TD", ("td_attributes=0x10000001",), "TD is a debug TD"),
    ("TUD bit 4", ("td_attributes=0x10000010",), "TUD byte 0x10"),
    ("TUD bit 6", ("td_attributes=0x10000040",), "TUD byte 0x40"),
    ("MRCONFIGID", ("mrconfigid=" + "01" * 48,), "MRCONFIGID is 0101"),
    ("MROWNERCONFIG", ("mrownerconfig=" + "01" * 48,), "MROWNERCONFIG is 0101"),
    ("MROWNER", ("mrowner=" + "01" * 48,), "MROWNER is 0101"),
    (
        "RTMR3 extra event",
        ("rtmr3=" + replay([*boot_events(b"{}")[:1], event("debug-shell", b"on"), boot_events(b"{}")[1]]),),
        "RTMR3 is",
    ),
    ("agent restarted after boot-done", ("rtmr3=" + replay(boot_events(b"{}") * 2),), "RTMR3 is"),
]


@pytest.mark.parametrize("case,sets,words", TDX_ATTACKS, ids=[c[0] for c in TDX_ATTACKS])
def test_tdx_attacks_are_refused(node, case: str, sets: tuple[str, ...], words: str) -> None:
    url = node(TDX_CONF, *sets)
    for policy in (DEFAULT, PUBLISHED):
        rejected(url, policy, words)


VERIFIER_REFUSALS = [
    ("SEPT_VE_DISABLE clear", "td_attributes=0", "SEPT_VE_DISABLE (bit 28) is clear"),
    ("MIGRATABLE", "td_attributes=0x30000000", "MIGRATABLE (bit 29) is set"),
    ("old TDX module", "tee_tcb_svn=" + "00" * 16, "platform TCB is older than every level"),
]


@pytest.mark.parametrize("case,assignment,words", VERIFIER_REFUSALS, ids=[c[0] for c in VERIFIER_REFUSALS])
def test_tdx_verifier_refusals(node, case: str, assignment: str, words: str) -> None:
    url = node(TDX_CONF, assignment)
    for policy in (DEFAULT, PUBLISHED):
        with pytest.raises(chrysalis.ChrysalisError) as e:
            chrysalis.verify(url, policy=policy, allow_sim=True)
        assert words in str(e.value), str(e.value)


def test_evidence_on_a_certificate_for_another_key_is_refused(ratls_server: Callable) -> None:
    srv = ratls_server("copied-evidence", tee="snp")
    with pytest.raises(chrysalis.VerificationFailed, match="key not bound in evidence"):
        chrysalis.verify(srv.url, allow_sim=True)
