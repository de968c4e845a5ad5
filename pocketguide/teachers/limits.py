"""Rate limits per model: requests and tokens per minute as token buckets kept in step with the server's
x-ratelimit-* headers, and whole-model pauses (each one counted, with its reason and length).

One `RateLimits` per (endpoint, model) is shared by every stage of a run (see flow.ModelState)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("pocketguide.teachers")
CHARS_PER_TOKEN = 4  # rough, provider-neutral estimate; only used to pace token limits
PAUSE_CAP_S = 600.0  # no server hint holds a model longer than this

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_reset(value: str | None, now_epoch: float | None = None) -> float | None:
    """Seconds until a limit resets: '1s', '6m0s', '250ms', '2' (seconds) or an epoch (s or ms)."""
    if not value:
        return None
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        parts = _DURATION.findall(value)
        if not parts:
            return None
        scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
        return sum(float(n) * scale[u] for n, u in parts)
    now_epoch = time.time() if now_epoch is None else now_epoch
    if number > 1e12:  # epoch milliseconds (OpenRouter)
        return max(0.0, number / 1000.0 - now_epoch)
    if number > 1e9:  # epoch seconds
        return max(0.0, number - now_epoch)
    return max(0.0, number)


def retry_after_s(headers: dict[str, str] | None) -> float | None:
    if not headers:
        return None
    if headers.get("retry-after-ms"):
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000.0)
        except ValueError:
            pass
    return parse_reset(headers.get("retry-after"))


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def exhausted_limit(headers: dict[str, str] | None) -> str | None:
    """The name of a limit the server says is used up (x-ratelimit-remaining-* at 0), if any."""
    for kind in ("requests", "tokens"):
        if _number((headers or {}).get(f"x-ratelimit-remaining-{kind}")) == 0:
            return kind
    if _number((headers or {}).get("x-ratelimit-remaining")) == 0:
        return "requests"
    return None


class TokenBucket:
    """`per_minute` units a minute, refilled continuously. It holds at most a tenth of a minute's worth
    (providers enforce per-second slices too) and never less than one unit; waiters go in turn."""

    def __init__(self, per_minute: float, now: float | None = None):
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute / 10.0)
        self.tokens = self.capacity
        self.updated = time.monotonic() if now is None else now
        self._turn: asyncio.Lock | None = None

    def level(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return self.tokens

    async def take(self, amount: float) -> None:
        amount = min(float(amount), self.capacity)
        if self._turn is None:
            self._turn = asyncio.Lock()
        async with self._turn:
            while (short := amount - self.level()) > 0:
                await asyncio.sleep(short / self.rate)
            self.tokens -= amount

    def sync(self, available: float, now: float, raise_too: bool) -> None:
        """Take the server's count of what is left: lower ours to it, and raise ours to it (never past the
        capacity) when `raise_too` — when we pace by the server's own announced limit."""
        level = self.level(now)
        if available < level or raise_too:
            self.tokens = min(self.capacity, max(0.0, available))


@dataclass
class Ticket:
    """What one request was charged, and how much had been sent before it (to read its answer's headers)."""

    sent_at: float
    requests_before: int
    tokens_before: float
    tokens: float
    paced_s: float = 0.0  # how long this request waited for the buckets (pauses apart)


class RateLimits:
    """Requests and tokens per minute (input, output, and their sum as providers count it).

    Limits come from the settings and from the server: an announced x-ratelimit-limit-* lower than ours
    replaces it, and every answer's x-ratelimit-remaining-* (minus what was sent after that request, plus
    what refilled since) lowers what the bucket believes is left — or sets it, when the bucket paces by
    the server's own announced limit. A pause holds every new request
    to the model; `pauses` counts them by reason, `paused_s` is their union in seconds."""

    def __init__(self, rpm: float | None, input_tpm: float | None, output_tpm: float | None):
        self.configured = {"requests": rpm, "input_tokens": input_tpm, "output_tokens": output_tpm}
        self.limits: dict[str, float] = {k: v for k, v in self.configured.items() if v}
        self.buckets: dict[str, TokenBucket] = {k: TokenBucket(v) for k, v in self.limits.items()}
        self.avg_output_tokens: float | None = None
        self.sent_requests = 0
        self.sent_tokens = 0.0
        self.unanswered: dict[int, Ticket] = {}  # by send order
        self.paused_until = 0.0  # monotonic
        self.last_pause_at = 0.0
        self.paused_s = 0.0
        self.pauses: dict[str, dict[str, float]] = {}

    async def acquire(self, input_tokens: int, output_tokens: int, max_tokens: int | None = None) -> Ticket:
        """Wait out any pause, then take one request and its tokens from every bucket. The `tokens` bucket
        (announced by the server) is charged as OpenAI counts: prompt + max_tokens when it is set."""
        while (wait := self.paused_until - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        tokens = float(input_tokens + (max_tokens or output_tokens))
        started = time.monotonic()
        for name, amount in (("requests", 1), ("input_tokens", input_tokens), ("output_tokens", output_tokens),
                             ("tokens", tokens)):
            bucket = self.buckets.get(name)
            if bucket is not None:
                await bucket.take(amount)
        now = time.monotonic()
        ticket = Ticket(now, self.sent_requests, self.sent_tokens, tokens, now - started)
        self.sent_requests += 1
        self.sent_tokens += tokens
        self.unanswered[ticket.requests_before] = ticket
        return ticket

    def answered(self, ticket: Ticket) -> None:
        self.unanswered.pop(ticket.requests_before, None)

    def pause(self, seconds: float, reason: str) -> float:
        """Hold every new request for `seconds`; returns how many seconds this added to the pause."""
        now = time.monotonic()
        until = now + min(max(0.0, seconds), PAUSE_CAP_S)
        added = until - max(self.paused_until, now)
        if added <= 0:
            return 0.0
        self.paused_until, self.last_pause_at = until, now
        self.paused_s += added
        entry = self.pauses.setdefault(reason, {"pauses": 0, "seconds": 0.0})
        entry["pauses"] += 1
        entry["seconds"] += added
        log.info("pausing requests for %.2fs: %s", added, reason)
        return added

    def estimate_output(self, max_tokens: int | None) -> int:
        if self.avg_output_tokens is not None:
            return int(self.avg_output_tokens) + 1
        return min(max_tokens or 512, 512)

    def observe(self, usage: dict[str, int]) -> None:
        done = usage.get("completion_tokens")
        if done:
            avg = self.avg_output_tokens
            self.avg_output_tokens = float(done) if avg is None else 0.9 * avg + 0.1 * done

    def follow(self, headers: dict[str, str] | None, ticket: Ticket | None) -> tuple[str, float] | None:
        """Follow one answer's x-ratelimit-* headers. Returns (reason, seconds) when the server says a limit
        is used up that no bucket paces (a fixed window, or no announced limit): the caller pauses."""
        if not headers:
            return None
        now = time.monotonic()
        for kind in ("requests", "tokens"):  # OpenAI counts prompt + max completion tokens against "tokens"
            limit = _number(headers.get(f"x-ratelimit-limit-{kind}"))
            if limit and limit < self.limits.get(kind, float("inf")):
                log.info("endpoint announces %s %s/min; tightening", limit, kind)
                self.limits[kind] = limit
                old, self.buckets[kind] = self.buckets.get(kind), TokenBucket(limit, now)
                if old is not None:
                    self.buckets[kind].sync(old.level(now), now, raise_too=False)
            remaining = _number(headers.get(f"x-ratelimit-remaining-{kind}"))
            if remaining is None:
                continue
            bucket = self.buckets.get(kind)
            if bucket is not None and ticket is not None:
                # not in the server's count yet, as far as we know: what went after this request, and what
                # went before it but is still unanswered (it may have reached the server later)
                # Keep one request's worth in hand: the server refilled from when the request reached it,
                # a little after `sent_at`, so the estimate is that much too kind. In the steady state at the
                # limit this costs nothing (the server's bucket idles at one unit instead of zero).
                before = [t for seq, t in self.unanswered.items() if seq < ticket.requests_before]
                if kind == "requests":
                    later, margin = self.sent_requests - ticket.requests_before - 1 + len(before), 1.0
                else:
                    later = self.sent_tokens - ticket.tokens_before - ticket.tokens + sum(t.tokens for t in before)
                    margin = ticket.tokens
                ours = bool(limit) and limit <= self.limits[kind]  # we pace by this very limit: its count rules
                estimate = remaining - later - margin + (now - ticket.sent_at) * bucket.rate
                bucket.sync(estimate, now, raise_too=ours)
            elif bucket is None and remaining <= 0:
                seconds = parse_reset(headers.get(f"x-ratelimit-reset-{kind}")) or 1.0
                return f"x-ratelimit-remaining-{kind}=0 (no announced limit to pace by)", seconds
        if _number(headers.get("x-ratelimit-remaining")) == 0:  # OpenRouter's single fixed window
            return "x-ratelimit-remaining=0 (fixed window)", parse_reset(headers.get("x-ratelimit-reset")) or 1.0
        return None

    def summary(self) -> dict[str, Any]:
        return {"paused_s": round(self.paused_s, 3),
                "pauses": {k: {"pauses": int(v["pauses"]), "seconds": round(v["seconds"], 3)}
                           for k, v in self.pauses.items()}}
