"""Retry policy: exponential backoff with full jitter on 429/5xx/timeouts/connection errors, the request
that got a Retry-After waits at least that long, no retry on 4xx; and the one-shot retry without an
unsupported optional parameter. A plain loop (tenacity's machinery cost ~0.09 ms of CPU per request, a
tenth of the whole client's at 128 requests/s)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pocketguide.engine.errors import TeacherError
from pocketguide.teachers.base import TeacherRequest
from pocketguide.teachers.limits import retry_after_s

log = logging.getLogger("pocketguide.teachers")

DEFAULT_RETRIES = 4
DEFAULT_INITIAL_S = 1.0
DEFAULT_MAX_S = 60.0
_RNG = random.Random()  # the draws of every request's backoff (a test may hand _Wait its own)
T = TypeVar("T")


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, TeacherError) and exc.retryable


class _Wait:
    """Exponential backoff with full jitter: retry n waits a uniform draw below initial·2^(n-1) (at most
    `maximum`), but never less than the server's Retry-After. A 5xx, a timeout or a dropped connection is
    usually one request's bad luck: its record retries soon (half the cap on average, holding no request
    slot meanwhile), and the draws spread the retries of many failures; a failing server still sees each
    request's waits double, and the circuit breaker stops a stage whose calls mostly fail."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None):
        self.initial, self.maximum = initial, maximum
        self.rng = rng or _RNG

    def cap(self, attempt: int) -> float:
        return min(self.maximum, self.initial * 2 ** (attempt - 1))

    def __call__(self, attempt: int, exc: BaseException) -> float:
        """The wait after failed attempt `attempt` (1 = the first call)."""
        wait = self.rng.uniform(0.0, self.cap(attempt))
        server = retry_after_s(getattr(exc, "headers", None))
        if server is None and getattr(exc, "retry_after", None):
            server = retry_after_s({"retry-after": str(exc.retry_after)})  # type: ignore[union-attr]
        if server is not None:
            wait = max(wait, min(server, 600.0))
        return wait


async def with_retries(call: Callable[[], Awaitable[T]], max_retries: int | None, initial_s: float | None,
                       max_s: float | None, on_wait: Callable[[BaseException, float], None] | None = None) -> T:
    """`await call()` until it succeeds, fails with an error that is not retryable, or `max_retries` retries
    are spent (default 4); the last error is raised as it is. `on_wait` hears of every wait before a retry
    (the error, the seconds)."""
    wait = _Wait(initial_s or DEFAULT_INITIAL_S, max_s or DEFAULT_MAX_S)
    retries = DEFAULT_RETRIES if max_retries is None else max_retries
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except Exception as exc:
            if attempt > retries or not is_retryable(exc):
                raise
            seconds = wait(attempt, exc)
            log.info("teacher call failed (%s), retry %d in %.2fs", getattr(exc, "kind", exc), attempt, seconds)
            if on_wait is not None:
                on_wait(exc, seconds)
        await asyncio.sleep(seconds)


# --- optional parameters an "OpenAI-compatible" server may refuse ------------------------------

OPTIONAL = ("response_format", "seed", "top_p", "repeat_penalty", "temperature", "max_tokens")
_REFUSAL = re.compile(r"unsupported|not supported|does not support|doesn't support|unknown|unrecogni[sz]ed|"
                      r"not allowed|not permitted|extra (inputs|fields)|invalid|unexpected", re.I)


def refused_parameter(exc: TeacherError, request: TeacherRequest) -> str | None:
    """The optional parameter a 400 complains about, if the request sent it."""
    if exc.status != 400:
        return None
    text = getattr(exc, "detail", None) or str(exc)
    if not _REFUSAL.search(text):
        return None
    for name in OPTIONAL:
        if name in text and _sent(request, name):
            return name
    return None


def _sent(request: TeacherRequest, name: str) -> bool:
    if name == "repeat_penalty":
        return request.repeat_penalty is not None or "repeat_penalty" in request.extra_body
    return getattr(request, name, None) is not None


def without(request: TeacherRequest, names: set[str]) -> tuple[TeacherRequest, list[str]]:
    """A copy of the request without `names` (max_tokens is resent as max_completion_tokens)."""
    changes: dict[str, Any] = {}
    notes = []
    extra = dict(request.extra_body)
    for name in sorted(names):
        if not _sent(request, name):
            continue
        if name == "max_tokens":
            extra["max_completion_tokens"] = request.max_tokens
            notes.append("max_tokens sent as max_completion_tokens: the endpoint rejected max_tokens")
        else:
            notes.append(f"{name} dropped: the endpoint rejected it")
        if name == "repeat_penalty":
            extra.pop("repeat_penalty", None)
        changes[name] = None
    if not changes:
        return request, []
    return dataclasses.replace(request, extra_body=extra, **changes), notes
