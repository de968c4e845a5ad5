"""`--executor ray`: the same stages.yaml on a Ray cluster (the ray extra).

What moves to the cluster, and what stays in this process (the driver):
* per-record stages whose teacher runs a model in-process (the embedded GGUF): Ray actors, each loading
  the model once and serving the records whose id hashes to it (fleet.ActorFleet);
* the CPU-bound part of operations that map batches (`ctx.map`, e.g. qa's filters and MinHash
  signatures): Ray tasks, results in input order;
* everything else — reading inputs, rendering, parsing, gates, the response cache, budgets, rate limits,
  stages whose teacher is a network API (one event loop keeps their limits shared and exact) — and every
  write: workers return results, the driver writes them through the one store. No shared filesystem.

ray is imported on first use, so registering this executor costs nothing when a run does not use it.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import Counter, deque
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from pocketguide.engine.errors import ExecutorError
from pocketguide.engine.executors import FREE, LOCAL_MODEL, OPERATION, OPERATION_MAP, REMOTE_API, Executor
from pocketguide.engine.registry import executor
from pocketguide.executors.fleet import ActorFleet
from pocketguide.executors.worker import run_batch

log = logging.getLogger(__name__)


class RayOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(None, description="the cluster: auto (the one this machine joined with `ray start`), "
                                "ray://head:10001 (Ray Client) or head:6379; unset: RAY_ADDRESS, else a Ray "
                                "started on this machine for the run")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the Ray started for the run (no address only)")
    actors: int | None = Field(None, ge=1, description="actors per local-model teacher, each loading the model "
                               "once; default: the cluster's CPUs // cpus_per_actor")
    cpus_per_actor: float = Field(1.0, gt=0, description="CPUs each actor reserves; its llama.cpp threads "
                                  "default to this (teacher.threads overrides)")
    batch_size: int = Field(4, ge=1, description="records sent to an actor in one call")
    max_inflight_batches: int = Field(2, ge=1, description="batches sent to one actor and not yet answered "
                                      "(back-pressure: the rest wait in the driver)")
    max_worker_retries: int = Field(3, ge=0, description="times a batch lost with its worker is resent")
    ready_timeout_s: float = Field(600.0, gt=0, description="how long actors may take to start and load the model")
    map_inflight: int | None = Field(None, ge=1, description="operation batches in flight at once; default: "
                                     "twice the cluster's CPUs")
    runtime_env: dict[str, Any] | None = Field(None, description="passed to ray.init, e.g. {pip: [...]} or "
                                               "{env_vars: {POCKETGUIDE_MODEL: ...}} (kept out of manifests)")


PLACES = {  # `pocketguide stages`, column "runs on" (docs/scale.md says why)
    FREE: "driver",
    REMOTE_API: "driver (API loop)",  # one event loop keeps an API's rate limits shared and exact
    LOCAL_MODEL: "Ray actors",  # each loads the model once, serves hash(id) mod N
    OPERATION: "driver",
    OPERATION_MAP: "driver + Ray tasks",  # the operation's ctx.map batches
}


def _public_address(address: str | None) -> str | None:
    """The address without any user:password part (it goes into manifests)."""
    if not address or "://" not in address:
        return address
    parts = urlsplit(address)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "") + parts.path


def same_priority_workers() -> None:
    """Workers of a Ray started on this machine run at this process's priority. Ray's default (workers 15
    nicer than the raylet) suits dedicated cluster nodes; on a shared machine it would put a local-model
    stage behind every other job, where the local executor runs at the user's own priority.
    RAY_worker_niceness (an increment), if set, wins."""
    os.environ.setdefault("RAY_worker_niceness", "0")


def _local_info(settings: Any, build: Callable[[Any], Any]) -> dict[str, Any] | None:
    """The teacher's provenance and cache identity, from a copy built here without loading its model
    (providers load on first use), so no actor starts before a record needs one. None when this machine
    cannot build it (no model or runtime here): the workers are asked instead."""
    try:
        teacher = build(settings)
        own = getattr(teacher, "cache_identity", None)
        return {"describe": teacher.describe(), "identity": own() if callable(own) else None}
    except Exception as exc:  # noqa: BLE001 — any failure here only means: ask a worker
        log.info("the teacher cannot be described on the driver (%s: %s); asking a Ray worker", type(exc).__name__, exc)
        return None


@executor("ray", options=RayOptions, requires=("ray",), extra="ray")
class RayExecutor(Executor):
    name = "ray"

    def __init__(self, options: RayOptions | None = None) -> None:
        super().__init__(options or RayOptions())
        self.opts: RayOptions = self.options
        self._ray: Any = None
        self._owns = False  # this executor started (or connected) Ray, so it shuts it down at the end
        self.fleets: dict[str, ActorFleet] = {}
        self._map_counts: Counter[str] = Counter()
        self._reported: Counter[str] = Counter()
        self._reported_lost = 0
        self.run_token = uuid.uuid4().hex[:8]  # names this run's actors apart from other runs on the cluster

    # --- the connection ------------------------------------------------------------------------
    def ray(self) -> Any:
        if self._ray is not None:
            return self._ray
        import ray

        if not ray.is_initialized():
            o = self.opts
            kwargs: dict[str, Any] = {"address": o.address, "include_dashboard": False, "log_to_driver": False,
                                      "logging_level": logging.WARNING}
            if o.runtime_env:
                kwargs["runtime_env"] = o.runtime_env
            if o.num_cpus and not (o.address or os.environ.get("RAY_ADDRESS")):
                kwargs["num_cpus"] = o.num_cpus
            where = _public_address(o.address) or os.environ.get("RAY_ADDRESS") or "a new local Ray"
            if not (o.address or os.environ.get("RAY_ADDRESS")):
                same_priority_workers()
            try:
                ray.init(**kwargs)
            except Exception as exc:  # noqa: BLE001 — ray raises ConnectionError, RuntimeError, ValueError…
                raise ExecutorError(f"could not start or reach Ray ({where}): {type(exc).__name__}: {exc} — start a "
                                    f"cluster with `ray start --head` and pass --address auto, or fix the address") \
                    from None
            self._owns = True
        self._ray = ray
        return ray

    # --- the seams -----------------------------------------------------------------------------
    def host(self, key: str, settings: Any, build: Callable[[Any], Any]) -> ActorFleet:
        if key in self.fleets:
            return self.fleets[key]
        ray, o = self.ray(), self.opts
        actors = o.actors or max(1, int(ray.cluster_resources().get("CPU", 1) // o.cpus_per_actor))
        # each actor's model uses the CPUs it reserved, not every core of its node
        threads = settings.threads or max(1, int(o.cpus_per_actor))
        settings = settings.model_copy(update={"threads": threads})
        fleet = ActorFleet(ray, settings.provider or "local", settings, build, info=_local_info(settings, build),
                           actors=actors, cpus_per_actor=o.cpus_per_actor, batch_size=o.batch_size,
                           max_inflight=o.max_inflight_batches, max_retries=o.max_worker_retries,
                           ready_timeout_s=o.ready_timeout_s,
                           actor_prefix=f"pocketguide-{self.run_token}-teacher{len(self.fleets)}")
        self.fleets[key] = fleet
        return fleet

    def map(self, fn: Callable[..., Any], batches: Iterable[Any], *args: Any) -> Iterator[Any]:
        ray = self.ray()
        for fleet in self.fleets.values():  # stages run one at a time: idle actors give their CPUs back
            fleet.release()
        task = ray.remote(run_batch).options(num_cpus=1)
        limit = self.opts.map_inflight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
        shared = [ray.put(a) for a in args]  # stored once, not shipped with every batch
        pending: deque = deque()
        for batch in batches:
            pending.append(task.remote(fn, batch, *shared))
            if len(pending) >= limit:
                yield self._collect(pending.popleft())
        while pending:
            yield self._collect(pending.popleft())

    def _collect(self, ref: Any) -> Any:
        worker, size, result = self._ray.get(ref)
        self._map_counts[f"task {worker}"] += size
        return result

    def placement(self, work: str) -> str:
        return PLACES.get(work, "driver")

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name,
                             "address": _public_address(self.opts.address or os.environ.get("RAY_ADDRESS"))
                             or "local Ray started for the run"}
        if self._ray is None:
            d["connected"] = False  # nothing in the run has needed the cluster yet
            return d
        if not self._owns:
            d["address"] = "the Ray this process had already joined"
        res = self._ray.cluster_resources()
        d.update(ray_version=self._ray.__version__,
                 nodes=sum(1 for n in self._ray.nodes() if n.get("Alive")),
                 resources={"CPU": res.get("CPU", 0.0), "GPU": res.get("GPU", 0.0),
                            "memory_gb": round(res.get("memory", 0.0) / 2**30, 1)},
                 options=self.opts.model_dump(exclude={"address", "runtime_env"}, exclude_none=True))
        if self.opts.runtime_env:
            d["runtime_env_keys"] = sorted(self.opts.runtime_env)  # values may hold secrets
        return d

    def report(self, stage: str) -> dict[str, Any]:
        """Records per worker (and records lost in flight) since the previous stage's report."""
        counts = Counter(self._map_counts)
        for fleet in self.fleets.values():
            counts.update({f"actor {w}": n for w, n in fleet.counts.items()})
        lost = sum(f.lost for f in self.fleets.values())
        workers, lost_now = counts - self._reported, lost - self._reported_lost
        self._reported, self._reported_lost = counts, lost
        execution = {"name": self.name, "workers": dict(sorted(workers.items())), "lost_in_flight": lost_now}
        stats = {"executor": execution} if workers or lost_now else {}
        return {"stats": stats, "manifest": {"executor": {**self.describe(), **execution}}}

    async def aclose(self) -> None:
        for fleet in self.fleets.values():
            await fleet.aclose()
        self.fleets.clear()
        if self._owns and self._ray is not None and self._ray.is_initialized():
            self._ray.shutdown()
