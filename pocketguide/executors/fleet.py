"""A local-model teacher served by Ray actors, seen from the driver as one Teacher.

Each actor loads the model once (worker.TeacherWorker) and serves one shard of the records: a request
goes to actor hash(record id) mod N. Per actor, at most `max_inflight` batches of up to `batch_size`
requests are sent at a time; the rest wait in the driver (back-pressure), where the runner's own
concurrency cap bounds them. The driver's ManagedTeacher wraps this object like any provider, so the
response cache, budget, rate limits, retries and circuit breaker stay in the driver, exact and shared.

A batch lost with its actor (killed, node gone) is resent to a replacement actor: a lost worker costs
its in-flight records a second generation, nothing else — they were never written, so nothing is
duplicated, and every record still comes back to the driver, which writes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from typing import Any, Callable

from pocketguide.engine.errors import ExecutorError, StageStopped, TeacherConfigError, TeacherError
from pocketguide.executors.worker import TeacherWorker

log = logging.getLogger(__name__)


def shard_of(key: str, n: int) -> int:
    """The actor serving `key` (a record id): a stable hash, the same in every process and run."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % n


class ActorFleet:
    """The Teacher interface over N actors; `counts` says how many records each worker answered."""

    def __init__(self, ray: Any, name: str, settings: Any, build: Callable[[Any], Any], *, actors: int,
                 cpus_per_actor: float, batch_size: int, max_inflight: int, max_retries: int,
                 ready_timeout_s: float, actor_prefix: str, info: dict[str, Any] | None = None) -> None:
        self.ray, self.name, self.settings, self.build = ray, name, settings, build
        self.actor_prefix = actor_prefix  # actors are named <prefix>-<shard>-<start>: `ray list actors` shows them
        self.n, self.batch_size, self.max_inflight, self.max_retries = actors, batch_size, max_inflight, max_retries
        self.max_concurrency = actors * batch_size * max_inflight  # what the runner may keep in flight
        self.ready_timeout_s = ready_timeout_s
        self._remote, self._cpus, self._starts = ray.remote(TeacherWorker), cpus_per_actor, 0
        self._actors: list[Any] = [None] * actors
        self._queues: list[asyncio.Queue | None] = [None] * actors
        self._tasks: set[asyncio.Task] = set()
        self._inflight = 0  # batches sent and not yet answered
        self._started: asyncio.Task | None = None
        self.counts: Counter[str] = Counter()
        self.lost = 0  # records that were in flight on a worker when it died
        if info is None:  # this machine cannot build the teacher (no model here): ask the workers now
            info = self._start_now()
        self._info = info
        identity = info.get("identity")
        # the same cache identity as the in-process teacher: a local run's answers are reused, and vice versa
        self.cache_identity = (lambda: identity) if identity else None

    # --- actors -------------------------------------------------------------------------------
    def _new_actor(self, shard: int) -> Any:
        self._starts += 1
        # max_restarts=0: a lost actor is replaced here, by a fresh one that the lost batch is resent to
        return self._remote.options(num_cpus=self._cpus, max_restarts=0, name=f"{self.actor_prefix}-{shard}-"
                                    f"{self._starts}").remote(self.build, self.settings)

    def _ready_refs(self) -> list[Any]:
        for shard in range(self.n):
            if self._actors[shard] is None:
                self._actors[shard] = self._new_actor(shard)
        return [a.ready.remote() for a in self._actors]

    def _start_now(self) -> dict[str, Any]:
        try:
            infos = self.ray.get(self._ready_refs(), timeout=self.ready_timeout_s)
        except self.ray.exceptions.GetTimeoutError:
            raise ExecutorError(self._timeout_message()) from None
        problem = self._problem(infos, None)
        if problem:
            raise TeacherConfigError(problem)
        return infos[0]

    async def _start(self) -> None:
        """Start every actor (models load in parallel) when the first record needs one; a resumed stage with
        nothing left to do starts none. A worker that cannot load the model stops the stage, cleanly."""
        try:
            infos = await asyncio.wait_for(asyncio.gather(*self._ready_refs()), self.ready_timeout_s)
        except asyncio.TimeoutError:
            raise StageStopped(self._timeout_message()) from None
        problem = self._problem(infos, self._info.get("identity"))
        if problem:
            raise StageStopped(problem)

    def _problem(self, infos: list[dict[str, Any]], expected: Any) -> str | None:
        for info in infos:
            if "error" in info:
                return f"the {self.name} teacher could not start on Ray worker {info['worker']}: {info['error']}"
            if expected is not None and info.get("identity") != expected:
                return (f"Ray worker {info['worker']} loads a different model than this machine "
                        f"({info.get('identity')} vs {expected}) — give teacher.model_path a file that is the same "
                        f"on every node, so cached answers and provenance stay true")
        return None

    def _timeout_message(self) -> str:
        return (f"the Ray actors for the {self.name} teacher did not start within {self.ready_timeout_s:.0f} s (the "
                f"cluster has {self.ray.available_resources().get('CPU', 0)} CPUs free, each actor needs "
                f"{self._cpus}) — lower executor option `actors`, or add nodes")

    def _actor(self, shard: int) -> Any:
        if self._actors[shard] is None:  # released (an operation needed the CPUs) or replaced after a loss
            self._actors[shard] = self._new_actor(shard)
        return self._actors[shard]

    def _replace(self, shard: int, dead: Any) -> None:
        if self._actors[shard] is dead:
            self._actors[shard] = None

    def release(self) -> None:
        """Stop the actors (their CPUs go back to the cluster); they start again on the next request."""
        if self._inflight or any(q is not None and not q.empty() for q in self._queues):
            return  # busy: never drop work in flight
        for task in list(self._tasks):  # the idle dispatchers; the next request starts new ones
            task.cancel()
        self._queues = [None] * self.n
        for shard, actor in enumerate(self._actors):
            if actor is not None:
                self.ray.kill(actor)
                self._actors[shard] = None

    # --- the Teacher interface ----------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        served = {"executor": "ray", "actors": self.n, "batch_size": self.batch_size,
                  "max_inflight_batches": self.max_inflight}
        return {**self._info["describe"], "served_by": served}

    async def generate(self, request: Any) -> Any:
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        await asyncio.shield(self._started)  # every caller waits for the one start, and sees its failure
        key = request.shard_key or str(request.messages)
        shard = shard_of(key, self.n)
        if self._queues[shard] is None:
            self._queues[shard] = asyncio.Queue()
            self._spawn(self._dispatch(shard))
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queues[shard].put_nowait((request, future))
        return await future

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self.ray.is_initialized():
            for actor in self._actors:
                if actor is not None:
                    self.ray.kill(actor)
        self._actors = [None] * self.n

    # --- dispatch ---------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dispatch(self, shard: int) -> None:
        """Send the shard's waiting requests in batches, at most `max_inflight` batches at a time."""
        queue = self._queues[shard]
        slots = asyncio.Semaphore(self.max_inflight)
        while True:
            await slots.acquire()
            batch = [await queue.get()]
            while len(batch) < self.batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            self._spawn(self._send(shard, batch, slots))

    async def _send(self, shard: int, batch: list[tuple[Any, asyncio.Future]], slots: asyncio.Semaphore) -> None:
        self._inflight += 1
        try:
            results = await self._call(shard, [r for r, _ in batch])
            for (_, future), res in zip(batch, results):
                if future.done():
                    continue
                if res[0] == "ok":
                    future.set_result(res[1])
                else:
                    future.set_exception(TeacherError(res[1], res[2], retryable=res[3], status=res[4]))
        except Exception as exc:  # noqa: BLE001 — every waiting record gets an answer or a typed error
            err = exc if isinstance(exc, TeacherError) else TeacherError(
                "worker_failed", f"Ray worker failed: {type(exc).__name__}: {exc}"[:500])
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
        finally:
            self._inflight -= 1
            slots.release()

    async def _call(self, shard: int, requests: list[Any]) -> list[tuple[Any, ...]]:
        """One batch on the shard's actor; resent to a fresh actor when the worker dies under it."""
        lost_errors = (self.ray.exceptions.RayActorError, self.ray.exceptions.WorkerCrashedError,
                       self.ray.exceptions.NodeDiedError)
        for attempt in range(self.max_retries + 1):
            actor = self._actor(shard)
            try:
                worker, results = await actor.generate_batch.remote(requests)
            except lost_errors as exc:
                self.lost += len(requests)
                self._replace(shard, actor)
                log.warning("Ray worker for shard %d of the %s teacher was lost with %d record(s) in flight "
                            "(%s); %s", shard, self.name, len(requests), type(exc).__name__,
                            "resending them" if attempt < self.max_retries else "giving up")
                continue
            self.counts[worker] += len(requests)
            return results
        raise TeacherError("worker_lost", f"the Ray worker serving these records died {self.max_retries + 1} times "
                           f"— check the cluster (ray status); rerun to resume", retryable=False)
