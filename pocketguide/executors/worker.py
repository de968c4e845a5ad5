"""What runs inside Ray's worker processes. Plain Python (no ray import at module level): the executor
wraps these with ray.remote when a run uses it.

* TeacherWorker: an actor that builds one teacher (loading its model once) and answers batches of
  requests with results, never raising for a single request's failure.
* run_batch: the task body of `ctx.map`: fn(batch, *args), tagged with the worker that ran it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any, Callable

from pocketguide.engine.errors import TeacherError


def worker_label() -> str:
    """host:pid of this worker process (the run summary counts records per worker)."""
    return f"{socket.gethostname()}:{os.getpid()}"


class TeacherWorker:
    """One model, loaded once, serving the batches of one shard of the pending records."""

    def __init__(self, build: Callable[[Any], Any], settings: Any) -> None:
        self.label = worker_label()
        self.error: str | None = None
        self.teacher: Any = None
        started = time.perf_counter()
        try:
            self.teacher = build(settings)
            load = getattr(self.teacher, "load", None)
            if callable(load):
                load()
        except Exception as exc:  # noqa: BLE001 — reported by ready(), turned into a typed error on the driver
            self.error = f"{type(exc).__name__}: {exc}"
        self.load_s = round(time.perf_counter() - started, 3)

    def ready(self) -> dict[str, Any]:
        """What the driver needs before the first request: the teacher's provenance and cache identity."""
        if self.error is not None:
            return {"error": self.error, "worker": self.label}
        own = getattr(self.teacher, "cache_identity", None)
        return {"worker": self.label, "load_s": self.load_s, "describe": self.teacher.describe(),
                "identity": own() if callable(own) else None,
                "max_concurrency": getattr(self.teacher, "max_concurrency", None)}

    async def generate_batch(self, requests: list[Any]) -> tuple[str, list[tuple[Any, ...]]]:
        """("ok", TeacherResponse) or ("error", kind, message, retryable, status) per request, in order."""
        if self.teacher is None:
            return self.label, [("error", "worker_config", str(self.error), False, None)] * len(requests)
        slots = getattr(self.teacher, "max_concurrency", None) or 1
        if slots > 1:  # a model with several decoding slots (n_parallel) answers the batch at once
            return self.label, list(await asyncio.gather(*(self._one(r) for r in requests)))
        return self.label, [await self._one(r) for r in requests]  # in order, one at a time

    async def _one(self, request: Any) -> tuple[Any, ...]:
        try:
            return ("ok", await self.teacher.generate(request))
        except TeacherError as exc:
            return ("error", exc.kind, str(exc), exc.retryable, exc.status)
        except Exception as exc:  # noqa: BLE001 — one request's failure must not lose the batch
            return ("error", "runtime", f"{type(exc).__name__}: {exc}"[:500], False, None)


def run_batch(fn: Callable[..., Any], batch: Any, *args: Any) -> tuple[str, int, Any]:
    """The task body of ctx.map: (worker, records in the batch, fn(batch, *args))."""
    size = len(batch) if hasattr(batch, "__len__") else 1
    return worker_label(), size, fn(batch, *args)
