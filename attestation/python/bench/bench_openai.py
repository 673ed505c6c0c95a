"""Requests per second of the OpenAI SDK through the verified client
(``chrysalis.http_client``) vs a plain ``httpx.Client(verify=False)``, to
the same agent (simulated TEE) in front of the stub engine, in the same run.

    python attestation/python/bench/bench_openai.py [--requests 30] [--rounds 40]

Needs the ``chrysalis`` wheel, ``openai`` and ``httpx`` installed (the venv
``ci/python.sh`` makes) and the agent binary (``$CHRYSALIS_AGENT_BIN``, else
target/release or target/debug ``chrysalis-agent``). The engine runs in its
own process so it does not compete with the client for the GIL. Rounds
alternate between the clients so drift hits both alike; the median round
of each is reported, for non-streaming and streaming chat completions and
for new connections (one handshake per request). On a busy machine the
rounds drift a lot, so rounds alternate in short blocks and the ratio
reported is the median of the block pairs' ratios (each pair ran back to
back), besides the ratio of the median rates.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import openai

import chrysalis

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(HERE.parent / "tests"))
import engine_stub  # noqa: E402


def start(argv: list[str], pattern: str, timeout: float = 120.0) -> tuple[subprocess.Popen[str], re.Match[str]]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    found: list[re.Match[str]] = []
    done = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            m = re.search(pattern, line)
            if m and not found:
                found.append(m)
                done.set()
        done.set()

    threading.Thread(target=pump, daemon=True).start()
    if not done.wait(timeout) or not found:
        proc.kill()
        raise SystemExit(f"{argv[0]} did not print {pattern!r}")
    return proc, found[0]


def agent_binary() -> str:
    if os.environ.get("CHRYSALIS_AGENT_BIN"):
        return os.environ["CHRYSALIS_AGENT_BIN"]
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    for profile in ("release", "debug"):
        p = target / profile / "chrysalis-agent"
        if p.is_file():
            return str(p)
    raise SystemExit("no chrysalis-agent binary: cargo build -p chrysalis-agent")


def rps(call: Callable[[], Any], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        call()
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=30, help="requests per block")
    ap.add_argument("--rounds", type=int, default=40, help="block pairs per case")
    ap.add_argument("--json", action="store_true", help="print one JSON line only")
    args = ap.parse_args()

    engine, m = start([sys.executable, str(HERE.parent / "tests" / "engine_stub.py")], r"LISTENING (\S+)")
    agent = None
    try:
        agent, m2 = start(
            [
                agent_binary(),
                "--provider",
                "sim",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                f"http://{m.group(1)}",
                "--metrics-listen",
                "127.0.0.1:0",
            ],
            r"ready\S*\s+(https://127\.0\.0\.1:\d+)",
        )
        url = m2.group(1)
        messages = [{"role": "user", "content": "benchmark"}]

        def sdk(http_client: httpx.Client) -> openai.OpenAI:
            return openai.OpenAI(base_url=f"{url}/v1", api_key="-", http_client=http_client, max_retries=0)

        clients = {
            "verified": sdk(chrysalis.http_client(allow_sim=True)),
            "plain": sdk(httpx.Client(verify=False, timeout=600)),
        }
        # No keep-alive: every request opens (and verifies) a new connection.
        fresh = {
            "verified": sdk(chrysalis.http_client(allow_sim=True, limits=httpx.Limits(max_keepalive_connections=0))),
            "plain": sdk(httpx.Client(verify=False, timeout=600, limits=httpx.Limits(max_keepalive_connections=0))),
        }

        def chat(c: openai.OpenAI) -> Callable[[], Any]:
            return lambda: c.chat.completions.create(model=engine_stub.MODEL, messages=messages)

        def stream(c: openai.OpenAI) -> Callable[[], Any]:
            def run() -> None:
                text = "".join(
                    ch.choices[0].delta.content or ""
                    for ch in c.chat.completions.create(model=engine_stub.MODEL, messages=messages, stream=True)
                    if ch.choices
                )
                assert text == "".join(engine_stub.WORDS)

            return run

        cases: dict[str, tuple[dict[str, openai.OpenAI], Callable[[openai.OpenAI], Callable[[], Any]], int]] = {
            "chat": (clients, chat, args.requests),
            "chat_stream": (clients, stream, args.requests),
            "chat_new_connection": (fresh, chat, args.requests),
        }
        results: dict[str, dict[str, float]] = {}
        for name, (cs, make, n) in cases.items():
            for c in cs.values():  # warm-up (connections, caches, imports)
                rps(make(c), max(10, n // 10))
            rounds: dict[str, list[float]] = {k: [] for k in cs}
            pair_ratios: list[float] = []
            for i in range(args.rounds):
                # Alternate which goes first, so neither always gets the
                # warmer (or the colder) half of a pair.
                order = list(cs) if i % 2 == 0 else list(reversed(list(cs)))
                got = {k: rps(make(cs[k]), n) for k in order}
                for k, r in got.items():
                    rounds[k].append(r)
                pair_ratios.append(got["verified"] / got["plain"])
            v = statistics.median(rounds["verified"])
            p = statistics.median(rounds["plain"])
            paired = statistics.median(pair_ratios)
            results[name] = {
                "verified_rps": round(v, 1),
                "plain_rps": round(p, 1),
                "ratio_of_medians": round(v / p, 3),
                "median_paired_ratio": round(paired, 3),
            }
            if not args.json:
                print(
                    f"{name:20s} verified {v:7.1f} req/s  plain {p:7.1f} req/s  "
                    f"ratio of medians {v / p:.3f}  median paired ratio {paired:.3f}",
                    flush=True,
                )
        print(json.dumps({"requests_per_block": args.requests, "block_pairs": args.rounds, "results": results}))
    finally:
        for p in (agent, engine):
            if p is not None:
                p.kill()
                p.wait()


if __name__ == "__main__":
    main()
