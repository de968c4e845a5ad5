"""QA stage scaling: 10,000 vs 100,000 synthetic records with planted exact and near duplicates.

Writes a `dataset` stage output directly (so only qa is timed), runs the real qa stage through the
runner, and prints both times (wall and CPU), the recall of planted near duplicates and, last,
`growth_ratio=<cpu(100k) / cpu(10k)>` (10x the data: ~10 means linear; aim <= 12). The ratio uses
the process's CPU seconds because the stage is single-threaded and wall time on a shared machine
moves with other people's load; the wall-clock ratio is printed too.

    python bench/qa_scaling.py [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pocketguide import run_stage  # noqa: E402
from pocketguide.engine.registry import load_builtins  # noqa: E402
from pocketguide.engine.store import dumps_line, iter_jsonl  # noqa: E402
from pocketguide.pipelines.pocketguide.synthetic import make_record, perturb  # noqa: E402

STAGES = """\
pipeline: {name: qa-bench, data_dir: runs}
stages:
  - {name: dataset, source: source.jsonl, mode: copy, copy_from: source.envelope, parser: json}
  - {name: qa, inputs: [dataset], op: qa, options: {threshold: 0.85, max_bucket_ratio: null}}
"""


def build(root: Path, n: int, seed: int) -> dict[str, str]:
    """n records: 97% unique, 1% exact copies, 2% near copies (1-2 words changed); returns near id → original."""
    rng = random.Random(seed)
    n_exact, n_near = n // 100, n // 50
    base = [make_record(rng, i) for i in range(n - n_exact - n_near)]
    extra, near = [], {}
    for k in range(n_exact):
        src = rng.choice(base)
        extra.append(dict(src, id=f"{src['id']}_x{k}"))
    for k in range(n_near):
        src = rng.choice(base)
        dup = perturb(rng, src, f"{src['id']}_n{k}", edits=rng.choice([1, 2]))
        extra.append(dup)
        near[dup["id"]] = src["id"]  # (copies of one original are also each other's duplicates)
    recs = base + extra
    tail = recs[len(base) // 2:]  # planted copies land after their originals' half, interleaved
    rng.shuffle(tail)
    recs[len(base) // 2:] = tail
    (root / "runs" / "dataset").mkdir(parents=True)
    (root / "source.jsonl").write_text("")
    (root / "stages.yaml").write_text(STAGES)
    with open(root / "runs" / "dataset" / "records.jsonl", "wb") as fh:
        fh.writelines(dumps_line(r) for r in recs)
    return near


def _origin(rid: str) -> str:
    """Planted copies are named <original id>_x<k> (exact) or _n<k> (near)."""
    head, _, tail = rid.rpartition("_")
    return head if tail[:1] in ("x", "n") and tail[1:].isdigit() else rid


def run(n: int, seed: int) -> tuple[float, float, float, int]:
    with tempfile.TemporaryDirectory(prefix="qa-bench-") as tmp:
        root = Path(tmp)
        near = build(root, n, seed)
        t0, c0 = time.perf_counter(), time.process_time()
        run_stage("qa", root / "stages.yaml")
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        keeper = {}  # rejected near duplicate → the record kept for its cluster
        for rec in iter_jsonl(root / "runs" / "qa" / "rejected.jsonl"):
            if rec.get("duplicate_of"):
                keeper[rec["id"]] = rec["duplicate_of"]
        # a planted pair is found when both sides end in one cluster (whichever came first is kept;
        # an original may itself be dropped as the exact copy of an earlier planted copy)
        found = sum(keeper.get(c, c) == keeper.get(o, o) for c, o in near.items())
        false_pos = sum(1 for r, k in keeper.items() if _origin(r) != _origin(k))
        return elapsed, cpu, found / max(1, len(near)), false_pos


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs=2, default=[10_000, 100_000])
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    small, large = a.sizes
    load_builtins()  # imports (numpy, datasketch) happen before either timing, not inside the first
    results = {}
    for n in (small, large):
        wall, cpu, recall, fp = results[n] = run(n, a.seed)
        print(f"qa n={n}: {wall:.2f}s wall, {cpu:.2f}s cpu  near-dup recall={recall:.4f}  "
              f"unexpected near-dups={fp}", flush=True)
    wall_ratio = results[large][0] / results[small][0]
    print(f"wall_growth_ratio={wall_ratio:.2f} (wall time moves with other load on a shared machine)")
    print(f"recall={min(results[small][2], results[large][2]):.4f}")
    print(f"growth_ratio={results[large][1] / results[small][1]:.2f}")


if __name__ == "__main__":
    main()
