"""An embedded-teacher stage of 24 records on 1 vs 2 Ray actors (one llama.cpp thread each), in one run.

Each run is a real `llm` stage through the runner (render → actors → parse → store) in a fresh data dir
(so nothing comes from the response cache), on a 2-CPU local Ray started once. The stage time includes
starting the actors and loading the model (it happens once per actor per run); the steady generation rate
(completion tokens/s over the stage) is printed too. Records go to actor hash(id) mod N, so on 2 actors
the split of 24 ids is printed: the stage ends when the busier actor does. Last line
`ray_generation_speedup=<stage seconds on 1 actor / on 2 actors>`.

    python bench/ray_generation.py [--n 24] [--max-tokens 48] [--local]

--local also runs the stage on the local executor (in-process, one thread) for the Ray overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pocketguide import run_stage  # noqa: E402
from pocketguide.engine.registry import load_builtins  # noqa: E402
from pocketguide.engine.session import RunOptions  # noqa: E402
from pocketguide.engine.spec import ExecutorSpec  # noqa: E402
from pocketguide.executors.fleet import shard_of  # noqa: E402
from pocketguide.executors.ray_executor import same_priority_workers  # noqa: E402

CITIES = ["Lisbon", "Kyoto", "Oslo", "Lima", "Rome", "Cairo", "Hanoi", "Quito", "Dakar", "Perth", "Sofia", "Porto"]
STAGES = """
pipeline:
  name: ray-generation-bench
  data_dir: runs
  concurrency: 16
  teacher: {{provider: embedded, threads: 1, max_tokens: {max_tokens}, temperature: 0.7, seed: 7}}
stages:
  - {{name: draft, source: src.jsonl, template: ask.j2, mode: llm, allow_truncated: true}}
"""


def project(root: Path, n: int, max_tokens: int) -> Path:
    (root / "templates").mkdir(parents=True)
    (root / "templates" / "ask.j2").write_text("Give a first-time visitor to {{ source.city }} three tips for "
                                               "{{ source.topic }}, in one sentence each.")
    topics = ["getting around", "eating well"]
    (root / "src.jsonl").write_text("".join(json.dumps({"id": f"r{i:02d}", "city": CITIES[i % len(CITIES)],
                                                        "topic": topics[i // len(CITIES) % 2]}) + "\n"
                                            for i in range(n)))
    (root / "stages.yaml").write_text(STAGES.format(max_tokens=max_tokens))
    return root / "stages.yaml"


def run(n: int, max_tokens: int, actors: int | None) -> tuple[float, int, dict]:
    executor = None if actors is None else ExecutorSpec(name="ray", options={"actors": actors})
    with tempfile.TemporaryDirectory(prefix="ray-gen-") as tmp:
        path = project(Path(tmp), n, max_tokens)
        t0 = time.perf_counter()
        result = run_stage("draft", path, options=RunOptions(executor=executor))
        elapsed = time.perf_counter() - t0
        tokens = sum(int(((r.get("teacher") or {}).get("usage") or {}).get("completion_tokens") or 0)
                     for name in ("records.jsonl", "rejected.jsonl")
                     for r in map(json.loads, (Path(tmp) / "runs" / "draft" / name).read_text().splitlines()))
    assert result.new_accepted + result.new_rejected == n, result
    return elapsed, tokens, (result.stats.get("executor") or {}).get("workers", {})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--local", action="store_true", help="also run on the local executor (one thread)")
    a = ap.parse_args()
    load_builtins()
    split = [sum(shard_of(f"r{i:02d}", 2) == s for i in range(a.n)) for s in (0, 1)]
    print(f"{a.n} records, max_tokens {a.max_tokens}, 1 llama.cpp thread per actor; on 2 actors the ids split "
          f"{split[0]}/{split[1]}; shared 2-core machine: figures move with other load")
    if a.local:
        s, tok, _ = run(a.n, a.max_tokens, None)
        print(f"local executor (in-process, 1 thread): {s:.1f} s, {tok} tokens, {tok / s:.1f} tok/s", flush=True)
    import ray

    t0 = time.perf_counter()
    same_priority_workers()  # Ray's workers at this process's priority, like the local run
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    print(f"Ray start-up: {time.perf_counter() - t0:.1f} s (once per run); workers at niceness "
          f"+{os.environ['RAY_worker_niceness']} over this process's {os.nice(0)}", flush=True)
    times = {}
    for actors in (1, 2):
        s, tok, workers = run(a.n, a.max_tokens, actors)
        times[actors] = s
        print(f"{actors} actor(s): {s:.1f} s (actor start + model load included), {tok} tokens, {tok / s:.1f} tok/s; "
              f"records per worker {workers}", flush=True)
    ray.shutdown()
    print(f"ray_generation_speedup={times[1] / times[2]:.2f}")


if __name__ == "__main__":
    main()
