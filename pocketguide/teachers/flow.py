"""Per-model flow control besides the rate limits: the adaptive in-flight cap, the circuit breaker, the
watch that tells a shared limit from a sparse 429, and what a stage's requests met (for its stats)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pocketguide.teachers.limits import RateLimits

log = logging.getLogger("pocketguide.teachers")


class AdaptiveConcurrency:
    """In-flight cap per model: halved when 429s show a shared limit (once per burst), back up by one per
    success. A burst is every 429 from requests that started before the last cut: they were sent under
    the old limit, so they say nothing new about the current one. Waiters are served in turn."""

    def __init__(self, ceiling: int):
        self.ceiling = max(1, ceiling)
        self.limit = float(self.ceiling)
        self.in_flight = 0
        self.last_cut = 0.0
        self.cuts = 0
        self._waiters: deque[asyncio.Future] = deque()

    async def acquire(self, first: bool = False) -> float:
        """A slot, in turn; `first` (a retry: its record has waited already) goes ahead of new requests."""
        if self.in_flight < int(self.limit) and not self._waiters:
            self.in_flight += 1
            return time.monotonic()
        turn = asyncio.get_running_loop().create_future()
        if first:
            self._waiters.appendleft(turn)
        else:
            self._waiters.append(turn)
        try:
            await turn  # whoever frees a slot counts us in before waking us
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.in_flight -= 1  # the slot came with the cancellation: hand it on
                self._wake()
            elif turn in self._waiters:
                self._waiters.remove(turn)
            raise
        return time.monotonic()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < int(self.limit):
            turn = self._waiters.popleft()
            if not turn.done():
                self.in_flight += 1
                turn.set_result(None)

    async def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def throttled(self, started: float) -> bool:
        """A shared limit was hit by a request started at `started`; True when this cut the cap."""
        if started < self.last_cut:
            return False
        self.limit = max(1.0, min(self.limit, self.in_flight) / 2)
        self.last_cut = time.monotonic()
        self.cuts += 1
        log.info("rate limited: in-flight cap cut to %d", int(self.limit))
        return True

    def succeeded(self) -> None:
        if self.limit < self.ceiling:
            self.limit = min(float(self.ceiling), self.limit + 1)
            self._wake()


class CircuitBreaker:
    """Opens (for the rest of the run) when more than `error_rate` of the last `window` calls failed,
    once at least min(window, 20) calls have been seen. A 429 is flow control, not a failure: not counted."""

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


class ThrottleWatch:
    """The last `window` answers of a model: a 429 shows a limit shared by all its requests when at least
    `burst` of them were 429s. A sparse 429 (one server's hiccup) only delays the request that got it."""

    def __init__(self, window: int = 20, burst: int = 6):
        self.answers: deque[bool] = deque(maxlen=window)
        self.burst = burst

    def record(self, throttled: bool) -> int:
        """Adds one answer; returns how many of the window's answers were 429s."""
        self.answers.append(throttled)
        return self.answers.count(True) if throttled else 0

    def is_burst(self, count: int) -> bool:
        return count >= self.burst


@dataclass
class ModelState:
    """Everything shared about one model on one endpoint during a run."""

    endpoint: str
    model: str
    limits: RateLimits
    concurrency: AdaptiveConcurrency
    breaker: CircuitBreaker
    watch: ThrottleWatch = field(default_factory=ThrottleWatch)
    dropped_params: set[str] = field(default_factory=set)  # optional parameters the endpoint rejected
    last_errors: deque = field(default_factory=lambda: deque(maxlen=3))
    calls: int = 0
    throttled: int = 0

    def summary(self) -> dict[str, Any]:
        return {"model": self.model, "calls": self.calls, "rate_limited": self.throttled,
                "concurrency_limit": int(self.concurrency.limit), "concurrency_cuts": self.concurrency.cuts,
                "limits_per_minute": dict(self.limits.limits), "dropped_params": sorted(self.dropped_params),
                "circuit": self.breaker.summary(), **self.limits.summary()}


@dataclass
class StageFlow:
    """What one stage's requests met: 429 answers, the waits for the rate limits (summed per request),
    the per-request waits the server asked for, and the whole-model pauses (seconds added to the pause,
    by reason). Goes into stats.json."""

    rate_limited: int = 0
    paced_s: float = 0.0  # summed over requests: waits for the requests/tokens-per-minute buckets
    limits_per_minute: dict[str, float] = field(default_factory=dict)  # the limits in force at the end
    retry_after_waits: int = 0
    retry_after_wait_s: float = 0.0
    concurrency_cuts: int = 0
    paused_s: float = 0.0
    pauses: dict[str, dict[str, float]] = field(default_factory=dict)

    def paused(self, reason: str, seconds: float) -> None:
        if seconds <= 0:
            return
        self.paused_s += seconds
        entry = self.pauses.setdefault(reason, {"pauses": 0, "seconds": 0.0})
        entry["pauses"] += 1
        entry["seconds"] += seconds

    def summary(self) -> dict[str, Any]:
        return {"rate_limited": self.rate_limited, "paced_s": round(self.paced_s, 3),
                "limits_per_minute": dict(self.limits_per_minute), "retry_after_waits": self.retry_after_waits,
                "retry_after_wait_s": round(self.retry_after_wait_s, 3), "concurrency_cuts": self.concurrency_cuts,
                "paused_s": round(self.paused_s, 3),
                "pauses": {k: {"pauses": int(v["pauses"]), "seconds": round(v["seconds"], 3)}
                           for k, v in self.pauses.items()}}
