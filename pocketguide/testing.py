"""A scriptable OpenAI-compatible HTTP server on 127.0.0.1, for tests and benchmarks.

    with FakeOpenAI(reply=lambda req: Reply(text='{"a": 1}')) as server:
        server.base_url  # http://127.0.0.1:PORT/v1
        server.requests  # every request body the server received, in order

`reply` gets the parsed request (a dict) and returns a Reply: text, status, headers, delay, finish_reason,
or a raw body. It runs on the server's event-loop thread: it must not block (use `Reply.delay` to make an
answer slow or hang) and it must be thread-safe if the test reads its state (use the lock).

`FakeOpenAI(reply, limit=RateLimit(requests_per_minute=600))` enforces a provider's limit in front of
`reply`: token buckets per minute for requests and tokens, 429 + Retry-After when exceeded, and
x-ratelimit-* headers on every answer.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
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


def completion(text: str, model: str, finish_reason: str = "stop", usage: dict[str, int] | None = None,
               answer_id: str = "chatcmpl-fake") -> dict:
    return {
        "id": answer_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}],
        "usage": usage or {"prompt_tokens": 10, "completion_tokens": max(1, len(text) // 4),
                           "total_tokens": 10 + max(1, len(text) // 4)},
    }


def _duration(seconds: float) -> str:
    """OpenAI's reset format: '12ms', '1.5s', '6m0s'."""
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    return f"{int(seconds // 60)}m{seconds % 60:.0f}s"


class RateLimit:
    """A provider's rate limit as OpenAI enforces one: a token bucket per minute for requests and one for
    tokens (prompt characters / 4 + max_tokens, charged when the request arrives), each holding at most
    `burst_s` seconds' worth. A request either bucket cannot pay for is answered 429 at once, charged
    nothing, with `retry-after` (whole seconds) and `retry-after-ms` (until it could be paid). Every
    answer carries x-ratelimit-limit-*, x-ratelimit-remaining-* and x-ratelimit-reset-* (until full).
    `admitted` / `limited` count answers (`admitted_tokens` what they were charged); `first` / `last` are
    the monotonic times of the first and last admitted request."""

    def __init__(self, requests_per_minute: float | None = None, tokens_per_minute: float | None = None,
                 burst_s: float = 6.0):
        self.per_minute = {k: v for k, v in (("requests", requests_per_minute), ("tokens", tokens_per_minute)) if v}
        self.capacity = {k: max(1.0, v * burst_s / 60.0) for k, v in self.per_minute.items()}
        self.level = dict(self.capacity)
        self.updated = time.monotonic()
        self.admitted = self.limited = 0
        self.admitted_tokens = 0.0
        self.first: float | None = None
        self.last: float | None = None

    @staticmethod
    def cost(req: dict[str, Any]) -> dict[str, float]:
        chars = sum(len(str(m.get("content") or "")) for m in req.get("messages") or [] if isinstance(m, dict))
        return {"requests": 1.0, "tokens": math.ceil(chars / 4) + float(req.get("max_tokens") or 16)}

    def admit(self, req: dict[str, Any]) -> tuple[bool, dict[str, str]]:
        now = time.monotonic()
        for k, per_minute in self.per_minute.items():
            self.level[k] = min(self.capacity[k], self.level[k] + (now - self.updated) * per_minute / 60.0)
        self.updated = now
        cost = self.cost(req)
        short = {k: cost[k] - self.level[k] for k in self.per_minute if cost[k] > self.level[k]}
        if not short:
            for k in self.per_minute:
                self.level[k] -= cost[k]
            self.admitted += 1
            self.admitted_tokens += cost["tokens"]
            self.first = now if self.first is None else self.first
            self.last = now
        else:
            self.limited += 1
        headers = {}
        for k, per_minute in self.per_minute.items():
            headers[f"x-ratelimit-limit-{k}"] = str(int(per_minute))
            headers[f"x-ratelimit-remaining-{k}"] = str(max(0, int(self.level[k])))
            headers[f"x-ratelimit-reset-{k}"] = _duration((self.capacity[k] - self.level[k]) * 60.0 / per_minute)
        if short:
            wait = max(amount * 60.0 / self.per_minute[k] for k, amount in short.items())
            headers["retry-after"] = str(max(1, math.ceil(wait)))
            headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
        return not short, headers

    def stats(self) -> dict[str, Any]:
        return {"admitted": self.admitted, "limited": self.limited, "admitted_tokens": self.admitted_tokens,
                "admitted_span_s": (self.last - self.first) if self.first is not None else None}


class FakeOpenAI:
    """One asyncio event loop on a background thread serves every connection (HTTP/1.1 keep-alive).

    An asyncio server rather than the stdlib's thread-per-connection one: a `delay` is a timer, not a
    sleeping thread, so 32+ slow requests in flight cost almost nothing, and the client under test (in
    the same process, under the same GIL) is not slowed by dozens of server threads waking up."""

    def __init__(self, reply: Callable[[dict[str, Any]], Reply] | None = None, limit: RateLimit | None = None):
        self.reply = reply or (lambda req: Reply())
        self.limit = limit
        self.requests: list[dict[str, Any]] = []
        self.headers_seen: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the server first"
        return f"http://127.0.0.1:{self._port}/v1"

    def start(self) -> "FakeOpenAI":
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=1024))
                self._port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # surface bind errors in start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=serve, name="fake-openai", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None or loop.is_closed():
            return

        async def shutdown() -> None:
            server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        if self._thread:
            self._thread.join(10)
        self._server = None

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = (lines[0].split(" ") + ["", ""])[:2]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                raw = await reader.readexactly(int(headers.get("content-length") or 0))
                status, ctype, body, extra = await self._answer(method, path, raw, headers)
                reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Status"
                out = [f"HTTP/1.1 {status} {reason}", f"content-type: {ctype}", f"content-length: {len(body)}"]
                out += [f"{k}: {v}" for k, v in extra.items()]
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass  # the client went away (e.g. it timed out on a hang)
        except asyncio.CancelledError:
            pass  # stop(): end quietly (a cancelled stream task makes asyncio log a traceback)
        finally:
            writer.close()

    async def _answer(self, method: str, path: str, raw: bytes, headers: dict[str, str]
                      ) -> tuple[int, str, bytes, dict[str, str]]:
        if method == "GET" and path.rstrip("/").endswith("/models"):
            return 200, "application/json", json.dumps({"object": "list", "data": []}).encode(), {}
        if method == "GET" and path.rstrip("/").endswith("/_stats"):  # for a server in another process
            with self.lock:
                stats = {"requests": len(self.requests), "process_cpu_s": time.process_time(),  # the server's cost
                         **(self.limit.stats() if self.limit else {})}
            return 200, "application/json", json.dumps(stats).encode(), {}
        try:
            req = json.loads(raw or b"{}")
        except ValueError:
            req = {}
        with self.lock:
            self.requests.append(req)
            self.headers_seen.append(headers)
            admitted, limit_headers = self.limit.admit(req) if self.limit else (True, {})
        if not admitted:
            err = {"error": {"message": "Rate limit reached (loopback limit)", "type": "requests",
                             "code": "rate_limit_exceeded"}}
            return 429, "application/json", json.dumps(err).encode(), limit_headers
        try:
            r = self.reply(req)
        except Exception as exc:  # a broken script answers 500, visibly
            r = Reply(status=500, error=f"script error: {exc}")
        if r.delay:
            await asyncio.sleep(r.delay)
        extra = {**limit_headers, **r.headers}
        if r.body is not None:
            return r.status, "text/plain", r.body.encode() if isinstance(r.body, str) else r.body, extra
        if r.status >= 400:
            err = {"error": {"message": r.error or f"error {r.status}", "type": "fake", "code": r.status}}
            return r.status, "application/json", json.dumps(err).encode(), extra
        n = len(self.requests)  # like a real endpoint: each answer has its own ids
        body = completion(r.text, req.get("model", "fake"), r.finish_reason, r.usage, answer_id=f"chatcmpl-fake-{n}")
        return r.status, "application/json", json.dumps(body).encode(), {"x-request-id": f"req_fake_{n}", **extra}

    def count(self, model: str | None = None) -> int:
        """Requests received (for one model, if given)."""
        with self.lock:
            return sum(1 for r in self.requests if model is None or r.get("model") == model)

    def prompts(self) -> list[str]:
        """The last user message of every request received."""
        return [r["messages"][-1]["content"] for r in self.requests if r.get("messages")]


def scripted(*replies: "Reply | Callable[[dict[str, Any]], Reply]",
             then: "Reply | Callable[[dict[str, Any]], Reply] | None" = None) -> Callable[[dict[str, Any]], Reply]:
    """A reply function answering request n with replies[n] (in arrival order, thread-safe), then `then`
    (default: a plain 'ok') for every later request. Each entry is a Reply or a reply function."""
    queue = list(replies)
    lock = threading.Lock()

    def reply(req: dict[str, Any]) -> Reply:
        with lock:
            nxt = queue.pop(0) if queue else then
        if nxt is None:
            return Reply()
        return nxt(req) if callable(nxt) else nxt

    return reply


class Faults:
    """A reply function: every answer after `latency` seconds; a share of 429s (with `Retry-After:
    retry_after` seconds when given) and 500s, drawn with a fixed seed so runs are comparable."""

    def __init__(self, latency: float = 0.0, p429: float = 0.0, p500: float = 0.0, seed: int = 7,
                 text: str = "A short answer of a few words.", retry_after: float | None = None):
        import random

        self.latency, self.p429, self.p500, self.text = latency, p429, p500, text
        self.headers = {"retry-after": f"{retry_after:g}"} if retry_after is not None else {}
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.injected = {"429": 0, "500": 0}

    def __call__(self, req: dict[str, Any]) -> Reply:
        with self.lock:
            x = self.rng.random()
            if x < self.p429:
                self.injected["429"] += 1
                return Reply(status=429, error="rate limited (injected)", delay=self.latency,
                             headers=dict(self.headers))
            if x < self.p429 + self.p500:
                self.injected["500"] += 1
                return Reply(status=500, error="server error (injected)", delay=self.latency)
        return Reply(text=self.text, delay=self.latency)


def main(argv: list[str] | None = None) -> None:
    """`python -m pocketguide.testing --latency 0.25`: serve in this process until stdin closes; the
    first stdout line is the base URL. GET <base>/_stats gives the request count, the process's CPU
    seconds (and, with --rpm or --tpm, the requests admitted and answered 429 by the limit)."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--p429", type=float, default=0.0)
    ap.add_argument("--p500", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--retry-after", type=float, help="Retry-After seconds on the injected 429s")
    ap.add_argument("--rpm", type=float, help="enforce this many requests per minute (429 beyond)")
    ap.add_argument("--tpm", type=float, help="enforce this many tokens per minute (429 beyond)")
    ap.add_argument("--burst-s", type=float, default=6.0, help="seconds' worth the limit's buckets hold")
    args = ap.parse_args(argv)
    limit = RateLimit(args.rpm, args.tpm, args.burst_s) if (args.rpm or args.tpm) else None
    faults = Faults(args.latency, args.p429, args.p500, args.seed, retry_after=args.retry_after)
    with FakeOpenAI(faults, limit=limit) as server:
        print(server.base_url, flush=True)
        sys.stdin.read()  # the parent closes our stdin (or exits) to stop us


if __name__ == "__main__":
    main()
