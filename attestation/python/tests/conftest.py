"""Fixtures: the stub engine, the agent in front of it (simulated TEE), and
the RA-TLS test servers of ``examples/test_server.rs`` (genuine and
impostors). Everything listens on 127.0.0.1; every process is killed at the
end of the session.

Binaries: ``$CHRYSALIS_AGENT_BIN`` and ``$CHRYSALIS_TEST_SERVER_BIN`` (what
``ci/python.sh`` builds), else they are built here with cargo.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import engine_stub  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
#: How long a process may take to say it is ready, seconds.
START_TIMEOUT = 120.0


def _binary(env: str, cargo_args: list[str], relpath: str) -> Path:
    given = os.environ.get(env)
    if given:
        path = Path(given)
        if not path.is_file():
            pytest.fail(f"${env}={given} does not exist")
        return path
    subprocess.run(["cargo", "build", "-q", *cargo_args], cwd=REPO, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / relpath


@dataclass
class Process:
    """A child process whose output lines are collected by a thread."""

    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    @classmethod
    def start(cls, argv: list[str]) -> Process:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
        )
        p = cls(proc)
        threading.Thread(target=p._pump, daemon=True).start()
        return p

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        """The first output line matching ``pattern``."""
        rx = re.compile(pattern)
        with self.cond:
            ok = self.cond.wait_for(
                lambda: any(rx.search(x) for x in self.lines) or self.proc.poll() is not None,
                timeout,
            )
            for x in self.lines:
                m = rx.search(x)
                if m:
                    return m
        raise AssertionError(
            f"{self.proc.args}: no line matching {pattern!r} "
            f"({'exited ' + str(self.proc.returncode) if ok else 'timed out'}); output:\n"
            + "\n".join(self.lines[-40:])
        )

    def output(self) -> list[str]:
        with self.cond:
            return list(self.lines)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture(scope="session")
def agent_bin() -> Path:
    return _binary("CHRYSALIS_AGENT_BIN", ["-p", "chrysalis-agent"], "debug/chrysalis-agent")


@pytest.fixture(scope="session")
def test_server_bin() -> Path:
    return _binary(
        "CHRYSALIS_TEST_SERVER_BIN",
        ["-p", "chrysalis-py", "--example", "test_server"],
        "debug/examples/test_server",
    )


@pytest.fixture(scope="session")
def engine() -> Iterator[engine_stub.Engine]:
    e = engine_stub.start()
    yield e
    e.shutdown()
    e.server_close()


@dataclass
class Agent:
    url: str
    process: Process


@pytest.fixture(scope="session")
def agent(agent_bin: Path, engine: engine_stub.Engine) -> Iterator[Agent]:
    p = Process.start(
        [
            str(agent_bin),
            "--provider",
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            engine.url,
            "--metrics-listen",
            "127.0.0.1:0",
            "--log-format",
            "text",
        ]
    )
    try:
        m = p.wait_for(r"ready\S*\s+(https://127\.0\.0\.1:\d+)")
        yield Agent(url=m.group(1), process=p)
    finally:
        p.stop()


@dataclass
class ServerHandle:
    url: str
    process: Process

    def connections(self, n: int) -> list[str]:
        """The first ``n`` connection reports (waits up to 30 s for them)."""
        p = self.process

        def reports() -> list[str]:
            return [x for x in p.lines if x.startswith("CONNECTION")]

        with p.cond:
            p.cond.wait_for(lambda: len(reports()) >= n or p.proc.poll() is not None, 30)
            got = reports()
        assert len(got) >= n, f"{n} connection reports expected, got {got}"
        return got[:n]


@pytest.fixture
def ratls_server(test_server_bin: Path) -> Iterator[Callable[..., ServerHandle]]:
    started: list[Process] = []

    def start(mode: str, tee: str = "tdx") -> ServerHandle:
        p = Process.start([str(test_server_bin), "--mode", mode, "--tee", tee])
        started.append(p)
        m = p.wait_for(r"^LISTENING (\S+)")
        return ServerHandle(url=f"https://{m.group(1)}", process=p)

    yield start
    for p in started:
        p.stop()
