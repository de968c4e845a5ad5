"""Retry policy (tenacity): exponential backoff with full jitter on 429/5xx/timeouts/connection errors,
the request that got a Retry-After waits at least that long, no retry on 4xx; and the one-shot retry
without an unsupported optional parameter."""

from __future__ import annotations

import dataclasses
import logging
import random
import re
from collections.abc import Callable
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from pocketguide.engine.errors import TeacherError
from pocketguide.teachers.base import TeacherRequest
from pocketguide.teachers.limits import retry_after_s

log = logging.getLogger("pocketguide.teachers")

DEFAULT_RETRIES = 4
DEFAULT_INITIAL_S = 1.0
DEFAULT_MAX_S = 60.0
_RNG = random.Random()  # the draws of every request's backoff (a test may hand _Wait its own)


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

    def __call__(self, state: RetryCallState) -> float:
        wait = self.rng.uniform(0.0, self.cap(state.attempt_number))
        exc = state.outcome.exception() if state.outcome else None
        server = retry_after_s(getattr(exc, "headers", None))
        if server is None and getattr(exc, "retry_after", None):
            server = retry_after_s({"retry-after": str(exc.retry_after)})  # type: ignore[union-attr]
        if server is not None:
            wait = max(wait, min(server, 600.0))
        return wait


def _before_sleep(on_wait: Callable[[BaseException | None, float], None] | None
                  ) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.info("teacher call failed (%s), retry %d in %.2fs", getattr(exc, "kind", exc), state.attempt_number,
                 wait)
        if on_wait is not None:
            on_wait(exc, wait)

    return before_sleep


def retrying(max_retries: int | None, initial_s: float | None, max_s: float | None,
             on_wait: Callable[[BaseException | None, float], None] | None = None) -> AsyncRetrying:
    """`async for attempt in retrying(...): with attempt: ...` — a fresh policy per request. `on_wait`
    hears of every wait before a retry (the error, the seconds)."""
    return AsyncRetrying(
        stop=stop_after_attempt((DEFAULT_RETRIES if max_retries is None else max_retries) + 1),
        wait=_Wait(initial_s or DEFAULT_INITIAL_S, max_s or DEFAULT_MAX_S),
        retry=retry_if_exception(is_retryable),
        before_sleep=_before_sleep(on_wait),
        reraise=True,
    )


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
