"""A scriptable OpenAI-compatible HTTP server on 127.0.0.1, for tests and benchmarks.

    with FakeOpenAI(reply=lambda req: Reply(text='{"a": 1}')) as server:
        server.base_url  # http://127.0.0.1:PORT/v1
        server.requests  # every request body the server received, in order

`reply` gets the parsed request (a dict) and returns a Reply: text, status, headers, delay, finish_reason,
or a raw body. It runs on the server's threads, so it must be thread-safe (use the lock if it keeps state).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass
class Reply:
    text: str = "ok"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (a hang: more than the client's timeout)
    finish_reason: str = "stop"
    body: bytes | str | None = None  # raw body instead of a chat completion (e.g. non-JSON garbage)
    error: str | None = None  # error message for status >= 400
    usage: dict[str, int] | None = None


def completion(text: str, model: str, finish_reason: str = "stop", usage: dict[str, int] | None = None) -> dict:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
        "usage": usage or {"prompt_tokens": 10, "completion_tokens": max(1, len(text) // 4),
                           "total_tokens": 10 + max(1, len(text) // 4)},
    }


class FakeOpenAI:
    def __init__(self, reply: Callable[[dict[str, Any]], Reply] | None = None):
        self.reply = reply or (lambda req: Reply())
        self.requests: list[dict[str, Any]] = []
        self.headers_seen: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> "FakeOpenAI":
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                try:
                    req = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    req = {}
                with fake.lock:
                    fake.requests.append(req)
                    fake.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
                try:
                    r = fake.reply(req)
                except Exception as exc:  # a broken script answers 500, visibly
                    r = Reply(status=500, error=f"script error: {exc}")
                if r.delay:
                    time.sleep(r.delay)
                if r.body is not None:
                    body = r.body.encode() if isinstance(r.body, str) else r.body
                    ctype = "text/plain"
                elif r.status >= 400:
                    body = json.dumps({"error": {"message": r.error or f"error {r.status}", "type": "fake",
                                                 "code": r.status}}).encode()
                    ctype = "application/json"
                else:
                    body = json.dumps(completion(r.text, req.get("model", "fake"), r.finish_reason, r.usage)).encode()
                    ctype = "application/json"
                try:
                    self.send_response(r.status)
                    self.send_header("content-type", ctype)
                    self.send_header("content-length", str(len(body)))
                    for k, v in r.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.request_queue_size = 256
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def prompts(self) -> list[str]:
        """The last user message of every request received."""
        return [r["messages"][-1]["content"] for r in self.requests if r.get("messages")]
