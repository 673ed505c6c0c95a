"""A tiny OpenAI-compatible engine for tests and the benchmark.

Loopback only. Answers ``GET /v1/models`` and ``POST /v1/chat/completions``
(non-streaming JSON, or Server-Sent Events when ``"stream": true``) with a
fixed answer of :data:`WORDS`, and records every request it receives (method,
path, body) so that a test can assert that nothing arrived.

Run as a script it prints ``LISTENING 127.0.0.1:PORT`` and serves until killed.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "stub-model"
WORDS = ["Verified", " hello", " from", " the", " stub", "."]


class Engine(ThreadingHTTPServer):
    """The server; ``requests`` lists what arrived, in order."""

    daemon_threads = True
    # The agent keeps connections to the engine alive: HTTP/1.1.
    request_queue_size = 128

    def __init__(self, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def record(self, method: str, path: str, body: bytes) -> None:
        with self.lock:
            self.requests.append({"method": method, "path": path, "body": body})

    def chat_requests(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"].startswith("/v1/chat/")]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body are separate writes: without this, Nagle and delayed
    # ACKs add 40 ms to every answer.
    disable_nagle_algorithm = True
    server: Engine

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _send_json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self.server.record("GET", self.path, b"")
        if self.path.startswith("/v1/models"):
            self._send_json(
                200,
                {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "stub"}]},
            )
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.record("POST", self.path, body)
        if not self.path.startswith("/v1/chat/completions"):
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            self._send_json(400, {"error": {"message": "body is not JSON", "type": "invalid_request_error"}})
            return
        created = int(time.time())
        if not req.get("stream"):
            self._send_json(
                200,
                {
                    "id": "chatcmpl-stub",
                    "object": "chat.completion",
                    "created": created,
                    "model": req.get("model", MODEL),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "".join(WORDS)},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 3, "completion_tokens": len(WORDS), "total_tokens": 3 + len(WORDS)},
                },
            )
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(obj: Any) -> None:
            data = b"data: " + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        for i, word in enumerate(WORDS):
            delta: dict[str, Any] = {"content": word}
            if i == 0:
                delta["role"] = "assistant"
            chunk(
                {
                    "id": "chatcmpl-stub",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": req.get("model", MODEL),
                    "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                }
            )
        chunk(
            {
                "id": "chatcmpl-stub",
                "object": "chat.completion.chunk",
                "created": created,
                "model": req.get("model", MODEL),
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            }
        )
        if (req.get("stream_options") or {}).get("include_usage"):
            # OpenAI's final chunk: no choices, the usage.
            chunk(
                {
                    "id": "chatcmpl-stub",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": req.get("model", MODEL),
                    "choices": [],
                    "usage": {"prompt_tokens": 3, "completion_tokens": len(WORDS), "total_tokens": 3 + len(WORDS)},
                }
            )
        chunk(b"[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def start(port: int = 0) -> Engine:
    """Starts an engine on 127.0.0.1 in a daemon thread."""
    engine = Engine(port)
    threading.Thread(target=engine.serve_forever, name="engine-stub", daemon=True).start()
    return engine


if __name__ == "__main__":
    e = Engine(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(f"LISTENING {e.server_address[0]}:{e.server_address[1]}", flush=True)
    e.serve_forever()
