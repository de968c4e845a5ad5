"""qa's per-record work (filters, exact-duplicate key, MinHash signature) over 100,000 records: the local
executor (this process) vs Ray tasks on a 2-CPU local Ray, in one run.

Both run exactly the function the qa stage hands to `ctx.map` (pocketguide.ops.qa.record_facts) over the
same batches; the results are compared row by row before any figure is printed. Ray's start-up and the
workers' first imports are timed apart (a warm-up map), since a cluster is started once per run, not once
per stage. Prints both times, and last `ray_speedup=<local seconds / Ray seconds>`.

    python bench/ray_qa.py [--n 100000] [--workers 2] [--batch 1024] [--stage]

--stage also runs the whole qa stage both ways (the LSH itself stays serial on the driver) and prints
`stage_speedup=` before the last line.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from pocketguide import run_stage  # noqa: E402
from pocketguide.engine.executors import Executor  # noqa: E402
from pocketguide.engine.registry import load_builtins  # noqa: E402
from pocketguide.engine.session import RunOptions  # noqa: E402
from pocketguide.engine.spec import ExecutorSpec  # noqa: E402
from pocketguide.executors.ray_executor import RayExecutor, RayOptions, same_priority_workers  # noqa: E402
from pocketguide.ops.content import prompt_of  # noqa: E402
from pocketguide.ops.qa import QAOptions, record_facts  # noqa: E402
from pocketguide.pipelines.pocketguide.synthetic import make_record, perturb  # noqa: E402
from qa_scaling import build  # noqa: E402  (bench/ is on sys.path when run as a script)


def records(n: int, seed: int) -> list[dict]:
    """n envelope records, 2% of them near copies (as in qa_scaling), in the shape qa reads."""
    rng = random.Random(seed)
    base = [make_record(rng, i) for i in range(n - n // 50)]
    return base + [perturb(rng, rng.choice(base), f"near{k}", edits=2) for k in range(n // 50)]


def batches(recs: list[dict], size: int) -> list[list[tuple]]:
    rows = [(r["parsed"], prompt_of(r)) for r in recs]
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def timed_map(executor, work, opts) -> tuple[float, float, list]:
    """Wall seconds, this process's CPU seconds, results."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = list(executor.map(record_facts, work, opts))
    return time.perf_counter() - t0, time.process_time() - c0, out


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x[0] == y[0] and np.array_equal(x[1], y[1]) for x, y in zip(a, b))


def stage_times(n: int, seed: int, workers: int) -> tuple[float, float]:
    times = []
    for spec in (None, ExecutorSpec(name="ray", options={"num_cpus": workers})):
        with tempfile.TemporaryDirectory(prefix="ray-qa-") as tmp:
            build(Path(tmp), n, seed)
            t0 = time.perf_counter()
            run_stage("qa", Path(tmp) / "stages.yaml", options=RunOptions(executor=spec))
            times.append(time.perf_counter() - t0)
    return times[0], times[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray (one task per CPU)")
    ap.add_argument("--batch", type=int, default=1024, help="records per task (qa's batch_size default)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--stage", action="store_true", help="also time the whole qa stage both ways")
    a = ap.parse_args()
    load_builtins()
    opts = QAOptions(max_bucket_ratio=None)
    work = batches(records(a.n, a.seed), a.batch)
    print(f"{a.n} records in {len(work)} batches of {a.batch}; shared machine: figures move with other load")
    list(Executor().map(record_facts, work[:1], opts))  # the same warm-up as Ray's: imports, compiled patterns
    local_s, _, local_out = timed_map(Executor(), work, opts)
    print(f"local executor (this process): {local_s:.2f} s", flush=True)

    import ray

    t0 = time.perf_counter()
    same_priority_workers()  # Ray's workers at this process's priority, like the local run
    ray.init(num_cpus=a.workers, include_dashboard=False, log_to_driver=False)
    list(RayExecutor(RayOptions()).map(record_facts, work[: 2 * a.workers], opts))  # workers import their modules
    print(f"Ray start-up + workers' first imports: {time.perf_counter() - t0:.2f} s (once per run); workers "
          f"at niceness +{os.environ['RAY_worker_niceness']} over this process's {os.nice(0)}", flush=True)
    ray_ex = RayExecutor(RayOptions())  # the connection stays; its per-worker counts start from zero
    ray_s, driver_cpu, ray_out = timed_map(ray_ex, work, opts)
    if not same(local_out, ray_out):
        raise SystemExit("the Ray results differ from the local ones — not printing a speed figure")
    per_worker = dict(ray_ex._map_counts)
    print(f"Ray tasks on {a.workers} workers: {ray_s:.2f} s; identical results; records per worker {per_worker}; "
          f"the driver used {driver_cpu:.2f} s CPU meanwhile (sending batches, receiving results)")
    if a.stage:
        ray.shutdown()
        local_stage, ray_stage = stage_times(a.n, a.seed, a.workers)
        print(f"whole qa stage: local {local_stage:.2f} s, Ray {ray_stage:.2f} s (Ray start-up included)")
        print(f"stage_speedup={local_stage / ray_stage:.2f}")
    elif ray.is_initialized():
        ray.shutdown()
    print(f"ray_speedup={local_s / ray_s:.2f}")


if __name__ == "__main__":
    main()
