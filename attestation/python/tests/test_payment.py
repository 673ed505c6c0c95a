"""Paying per token from Python: ``chrysalis.http_client(channel=FILE)`` in
front of an agent whose runtime configuration requires payment (simulated
TDX, the stub engine). The channel file is written here (the on-chain
open is tested in Rust, host-tools/tests/ton_pay.rs)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

import chrysalis
import engine_stub
from conftest import Agent, Process

PRICE = 1_000_000_000  # nanotons per million tokens
TOKENS = 3 + len(engine_stub.WORDS)
PER_ANSWER = -(-TOKENS * PRICE // 1_000_000)


@pytest.fixture(scope="module")
def paid_agent(agent_bin: Path, engine: engine_stub.Engine, tmp_path_factory) -> Iterator[Agent]:
    cfg = tmp_path_factory.mktemp("paid") / "runtime.json"
    cfg.write_text(json.dumps({"payments": {"required": True, "price_per_million": PRICE, "unpaid_credit": 0}}))
    p = Process.start(
        [str(agent_bin), "--provider", "sim", "--listen", "127.0.0.1:0", "--upstream", engine.url,
         "--metrics-listen", "127.0.0.1:0", "--log-format", "text", "--runtime-config", str(cfg)]
    )
    try:
        m = p.wait_for(r"ready\S*\s+(https://127\.0\.0\.1:\d+)")
        yield Agent(url=m.group(1), process=p)
    finally:
        p.stop()


def channel_file(tmp_path: Path, agent: Agent, price: int = PRICE) -> Path:
    key = chrysalis.verify(agent.url, allow_sim=True, any_image=True).public_key_der
    path = tmp_path / "test.channel"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({
            "version": 1, "channel": "0:" + secrets.token_hex(32), "registry": "r", "client": "c", "nonce": 1,
            "machine_id": "00" * 32, "voucher_seed": secrets.token_hex(32), "operator": "o",
            "price_per_million": price, "key_hash": hashlib.sha256(key).hexdigest(),
            "deposit": 10**12, "paid": 0, "charged": 0, "seq": 0,
        }, f)
    return path


def _client(agent: Agent, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{agent.url}/v1", api_key="unused", max_retries=0,
                         http_client=chrysalis.http_client(allow_sim=True, any_image=True, **kwargs))


def _state(path: Path) -> dict:
    return json.loads(path.read_text())


def test_openai_pays_per_token_and_every_receipt_is_verified(paid_agent: Agent, tmp_path: Path) -> None:
    path = channel_file(tmp_path, paid_agent)
    client = _client(paid_agent, channel=path)
    msgs = [{"role": "user", "content": "hi"}]
    r = client.chat.completions.create(model="m", messages=msgs)
    assert r.choices[0].message.content == "".join(engine_stub.WORDS)
    assert (_state(path)["seq"], _state(path)["charged"], _state(path)["paid"]) == (1, PER_ANSWER, PER_ANSWER)
    # A stream: the SDK sees the chunks and the usage, never the receipt event.
    text = ""
    for chunk in client.chat.completions.create(model="m", messages=msgs, stream=True):
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
    assert text == "".join(engine_stub.WORDS)
    s = _state(path)
    assert (s["seq"], s["charged"], s["paid"]) == (2, 2 * PER_ANSWER, 2 * PER_ANSWER)
    # The operator's endpoint holds the voucher for all of it.
    with chrysalis.http_client(allow_sim=True, any_image=True) as http:
        v = http.get(f"{paid_agent.url}/v1/chrysalis/vouchers").json()["vouchers"]
    mine = [x for x in v if x["channel"] == s["channel"]]
    assert mine and mine[0]["amount"] == 2 * PER_ANSWER


def test_an_overcharging_receipt_is_refused_and_not_paid(paid_agent: Agent, tmp_path: Path) -> None:
    # The channel says half the agent's price: the agent's receipt overcharges.
    path = channel_file(tmp_path, paid_agent, price=PRICE // 2)
    client = _client(paid_agent, channel=path)
    with pytest.raises(chrysalis.PaymentRefused, match="overcharge"):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert (_state(path)["charged"], _state(path)["paid"]) == (0, 0)


def test_without_a_channel_the_agent_answers_402(paid_agent: Agent) -> None:
    client = _client(paid_agent)
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert e.value.status_code == 402
    assert "voucher" in str(e.value)
