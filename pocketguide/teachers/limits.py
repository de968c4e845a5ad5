"""Per-model flow control: rate limits (aiolimiter), adaptive concurrency, and a circuit breaker.

One `ModelState` per (endpoint, model) is shared by every stage of a run, so two stages that use the
same model share its limits."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiolimiter import AsyncLimiter

log = logging.getLogger("pocketguide.teachers")
CHARS_PER_TOKEN = 4  # rough, provider-neutral estimate; only used to pace token limits


def _bucket(per_minute: float) -> AsyncLimiter:
    """A leaky bucket that admits `per_minute` evenly: a burst of at most a tenth of a minute's worth
    (providers enforce per-second slices too), and never less than one unit."""
    period = max(6.0, 60.0 / per_minute)
    return AsyncLimiter(per_minute * period / 60.0, period)


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


class RateLimits:
    """Requests, input tokens and output tokens per minute; tightened by x-ratelimit-* headers."""

    def __init__(self, rpm: float | None, input_tpm: float | None, output_tpm: float | None):
        self.configured = {"requests": rpm, "input_tokens": input_tpm, "output_tokens": output_tpm}
        self.limits: dict[str, float] = {k: v for k, v in self.configured.items() if v}
        self.buckets: dict[str, AsyncLimiter] = {k: _bucket(v) for k, v in self.limits.items()}
        self.paused_until = 0.0  # monotonic; set by Retry-After and exhausted x-ratelimit-remaining-*
        self.avg_output_tokens: float | None = None

    async def acquire(self, input_tokens: int, output_tokens: int) -> None:
        while (wait := self.paused_until - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        for name, amount in (("requests", 1), ("input_tokens", input_tokens), ("output_tokens", output_tokens),
                             ("tokens", input_tokens + output_tokens)):
            bucket = self.buckets.get(name)
            if bucket is not None:
                await bucket.acquire(min(float(amount), bucket.max_rate))

    def pause(self, seconds: float | None) -> None:
        if seconds:
            self.paused_until = max(self.paused_until, time.monotonic() + min(seconds, 600.0))

    def estimate_output(self, max_tokens: int | None) -> int:
        if self.avg_output_tokens is not None:
            return int(self.avg_output_tokens) + 1
        return min(max_tokens or 512, 512)

    def observe(self, usage: dict[str, int]) -> None:
        done = usage.get("completion_tokens")
        if done:
            avg = self.avg_output_tokens
            self.avg_output_tokens = float(done) if avg is None else 0.9 * avg + 0.1 * done

    def tighten(self, headers: dict[str, str] | None) -> None:
        """Follow the provider: a lower announced limit replaces ours; an exhausted one pauses us."""
        if not headers:
            return
        for kind in ("requests", "tokens"):  # OpenAI counts prompt + max completion tokens against "tokens"
            name = kind
            limit = _number(headers.get(f"x-ratelimit-limit-{kind}"))
            if limit and limit < self.limits.get(name, float("inf")):
                log.info("endpoint announces %s %s/min; tightening", limit, kind)
                self.limits[name] = limit
                self.buckets[name] = _bucket(limit)
            remaining = _number(headers.get(f"x-ratelimit-remaining-{kind}"))
            if remaining is not None and remaining <= 0:
                self.pause(parse_reset(headers.get(f"x-ratelimit-reset-{kind}")) or 1.0)
        if _number(headers.get("x-ratelimit-remaining")) == 0:  # OpenRouter's single-window form
            self.pause(parse_reset(headers.get("x-ratelimit-reset")) or 1.0)


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


class AdaptiveConcurrency:
    """In-flight cap per model: halved on a 429 (once per burst), back up by one per success.

    A burst is every 429 from requests that started before the last cut: they were sent under the
    old limit, so they say nothing new about the current one."""

    def __init__(self, ceiling: int):
        self.ceiling = max(1, ceiling)
        self.limit = float(self.ceiling)
        self.in_flight = 0
        self.last_cut = 0.0
        self.cuts = 0
        self._cond: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    async def acquire(self) -> float:
        cond = self._condition()
        async with cond:
            await cond.wait_for(lambda: self.in_flight < int(self.limit))
            self.in_flight += 1
        return time.monotonic()

    async def release(self) -> None:
        cond = self._condition()
        async with cond:
            self.in_flight -= 1
            cond.notify_all()

    def throttled(self, started: float) -> None:
        if started < self.last_cut:
            return
        self.limit = max(1.0, min(self.limit, self.in_flight) / 2)
        self.last_cut = time.monotonic()
        self.cuts += 1
        log.info("rate limited: in-flight cap cut to %d", int(self.limit))

    def succeeded(self) -> None:
        if self.limit < self.ceiling:
            self.limit = min(float(self.ceiling), self.limit + 1)


class CircuitBreaker:
    """Opens (for the rest of the run) when more than `error_rate` of the last `window` calls failed,
    once at least min(window, 20) calls have been seen."""

    def __init__(self, window: int = 100, error_rate: float = 0.5):
        self.window = deque(maxlen=window)
        self.error_rate = error_rate
        self.min_calls = min(window, 20)
        self.opened = False

    def record(self, ok: bool) -> None:
        self.window.append(ok)
        if not ok and len(self.window) >= self.min_calls:
            failures = self.window.count(False)
            if failures / len(self.window) > self.error_rate:
                self.opened = True

    def summary(self) -> dict[str, Any]:
        return {"open": self.opened, "recent_calls": len(self.window),
                "recent_errors": self.window.count(False)}


@dataclass
class ModelState:
    """Everything shared about one model on one endpoint during a run."""

    endpoint: str
    model: str
    limits: RateLimits
    concurrency: AdaptiveConcurrency
    breaker: CircuitBreaker
    dropped_params: set[str] = field(default_factory=set)  # optional parameters the endpoint rejected
    last_errors: deque = field(default_factory=lambda: deque(maxlen=3))
    calls: int = 0
    throttled: int = 0

    def summary(self) -> dict[str, Any]:
        return {"model": self.model, "calls": self.calls, "rate_limited": self.throttled,
                "concurrency_limit": int(self.concurrency.limit), "concurrency_cuts": self.concurrency.cuts,
                "limits_per_minute": dict(self.limits.limits), "dropped_params": sorted(self.dropped_params),
                "circuit": self.breaker.summary()}
