"""The OpenAI SDK (and plain httpx) through the verified transports, in
front of the agent (simulated TDX) and the stub engine."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import openai
import pytest

import chrysalis
import engine_stub

PROMPT = "Say hello over a verified connection"


def _client(agent, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{agent.url}/v1",
        api_key="unused",
        http_client=chrysalis.http_client(**kwargs),
    )


def _chat_bodies(engine: engine_stub.Engine) -> list[bytes]:
    return [r["body"] for r in engine.chat_requests()]


def test_openai_streams_over_a_verified_connection(agent, engine) -> None:
    before = len(_chat_bodies(engine))
    with _client(agent, allow_sim=True, any_image=True) as client:
        stream = client.chat.completions.create(
            model=engine_stub.MODEL,
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "".join(engine_stub.WORDS)
    bodies = _chat_bodies(engine)[before:]
    assert len(bodies) == 1
    assert json.loads(bodies[0])["messages"][0]["content"] == PROMPT


def test_openai_non_streaming_and_connection_reuse(agent, engine) -> None:
    with _client(agent, allow_sim=True, any_image=True) as client:
        for _ in range(3):
            r = client.chat.completions.create(
                model=engine_stub.MODEL, messages=[{"role": "user", "content": PROMPT}]
            )
            assert r.choices[0].message.content == "".join(engine_stub.WORDS)
        models = client.models.list()
        assert [m.id for m in models] == [engine_stub.MODEL]


def test_openai_without_allow_sim_raises_policy_rejected_and_sends_nothing(agent, engine) -> None:
    before = len(_chat_bodies(engine))
    with _client(agent) as client:
        with pytest.raises(chrysalis.PolicyRejected) as e:
            client.chat.completions.create(
                model=engine_stub.MODEL,
                messages=[{"role": "user", "content": PROMPT}],
                stream=True,
            )
    assert "SIMULATED" in str(e.value)
    # Nothing reached the engine: the request was never written.
    assert _chat_bodies(engine)[before:] == []


def test_openai_refuses_an_impostor_before_sending(ratls_server: Callable) -> None:
    srv = ratls_server("copied-evidence")
    client = openai.OpenAI(
        base_url=f"{srv.url}/v1",
        api_key="unused",
        http_client=chrysalis.http_client(allow_sim=True, any_image=True),
    )
    with pytest.raises(chrysalis.VerificationFailed, match="key not bound"):
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
    [report] = srv.connections(1)
    assert "handshake=failed" in report and "received=0" in report, report


def test_plain_tls_server_is_refused_through_httpx(ratls_server: Callable) -> None:
    srv = ratls_server("plain")
    with chrysalis.http_client(allow_sim=True, any_image=True) as c:
        with pytest.raises(chrysalis.MalformedEvidence):
            c.post(f"{srv.url}/v1/chat/completions", json={"secret": PROMPT})
    [report] = srv.connections(1)
    assert "received=0" in report, report


def test_a_node_that_cannot_answer_a_nonce_gets_no_request(ratls_server: Callable) -> None:
    # A genuine certificate (its handshake alone verifies), but the node
    # cannot produce evidence for a new nonce: the transport's first-contact
    # check refuses it, and the connection meant for the request carries
    # nothing.
    srv = ratls_server("no-fresh")
    with chrysalis.http_client(allow_sim=True, any_image=True) as c:
        with pytest.raises(chrysalis.MalformedEvidence, match="fresh evidence"):
            c.post(f"{srv.url}/v1/chat/completions", json={"secret": PROMPT})
    reports = srv.connections(2)
    assert any("handshake=ok" in r and "received=0" in r for r in reports), reports


def test_httpx_response_carries_the_connection_identity(agent) -> None:
    with chrysalis.http_client(allow_sim=True, any_image=True) as c:
        r = c.get(f"{agent.url}/v1/models")
        assert r.status_code == 200
        ident = chrysalis.identity_of(r)
        assert ident is not None and ident.tee == "tdx" and ident.simulated
        assert ident == chrysalis.verify(agent.url, allow_sim=True, any_image=True)
    assert chrysalis.identity_of(httpx.Response(200)) is None


def test_http_urls_and_unsafe_arguments_are_refused(agent) -> None:
    with chrysalis.http_client(allow_sim=True, any_image=True) as c:
        with pytest.raises(httpx.UnsupportedProtocol, match="not https"):
            c.get(agent.url.replace("https://", "http://"))
    for bad in ({"verify": False}, {"transport": httpx.HTTPTransport()}, {"http2": True}):
        with pytest.raises(TypeError):
            chrysalis.http_client(**bad)


def test_connect_errors_keep_httpx_types(agent) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with chrysalis.http_client(allow_sim=True, any_image=True) as c:
        with pytest.raises(httpx.ConnectError, match=f"connect to 127.0.0.1:{port}: Connection refused"):
            c.get(f"https://127.0.0.1:{port}/")


def test_async_openai_streams_and_rejects(agent, engine) -> None:
    async def main() -> None:
        before = len(_chat_bodies(engine))
        async with openai.AsyncOpenAI(
            base_url=f"{agent.url}/v1",
            api_key="unused",
            http_client=chrysalis.async_http_client(allow_sim=True, any_image=True),
        ) as client:
            stream = await client.chat.completions.create(
                model=engine_stub.MODEL,
                messages=[{"role": "user", "content": PROMPT}],
                stream=True,
            )
            parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            assert "".join(parts) == "".join(engine_stub.WORDS)
            # Concurrent requests: each on its own verified connection.
            rs = await asyncio.gather(
                *(
                    client.chat.completions.create(
                        model=engine_stub.MODEL, messages=[{"role": "user", "content": PROMPT}]
                    )
                    for _ in range(4)
                )
            )
            assert all(r.choices[0].message.content == "".join(engine_stub.WORDS) for r in rs)
        assert len(_chat_bodies(engine)[before:]) == 5

        before = len(_chat_bodies(engine))
        async with openai.AsyncOpenAI(
            base_url=f"{agent.url}/v1",
            api_key="unused",
            http_client=chrysalis.async_http_client(),
        ) as client:
            with pytest.raises(chrysalis.PolicyRejected):
                await client.chat.completions.create(
                    model=engine_stub.MODEL,
                    messages=[{"role": "user", "content": PROMPT}],
                    stream=True,
                )
        assert _chat_bodies(engine)[before:] == []

    asyncio.run(main())


def test_async_impostor_and_identity(ratls_server: Callable, agent) -> None:
    srv = ratls_server("stolen-cert")

    async def main() -> None:
        async with chrysalis.async_http_client(allow_sim=True, any_image=True) as c:
            with pytest.raises(chrysalis.VerificationFailed, match="handshake signature"):
                await c.post(f"{srv.url}/v1/chat/completions", json={"secret": PROMPT})
            r = await c.get(f"{agent.url}/v1/models")
            assert r.status_code == 200
            ident = chrysalis.identity_of(r)
            assert ident is not None and ident.tee == "tdx"

    asyncio.run(main())
    [report] = srv.connections(1)
    assert "received=0" in report, report


def _big_body() -> bytes:
    # examples/test_server.rs: byte i of GET /big is i % 251, 1 MiB.
    return bytes(i % 251 for i in range(1 << 20))


def test_large_bodies_sync_and_async(ratls_server: Callable) -> None:
    srv = ratls_server("genuine")
    with chrysalis.http_client(allow_sim=True, any_image=True) as c:
        r = c.get(f"{srv.url}/big")
        assert r.status_code == 200 and r.content == _big_body()

    async def main() -> None:
        async with chrysalis.async_http_client(allow_sim=True, any_image=True) as c:
            r = await c.get(f"{srv.url}/big")
            assert r.status_code == 200 and r.content == _big_body()

    asyncio.run(main())
