"""Realistic CPU training run: synthetic envelope SFT records → `train` stage (LoRA on the embedded
SmolLM2-135M) → before/after eval. Prints step time, peak RSS, base vs tuned schema-valid rates;
the LAST line is the unconstrained schema-valid gain in points.

    python bench/train_student.py [--records 48] [--max-steps N] [--out bench/out/train_student]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pocketguide.training import synthetic

PIPELINE = """\
pipeline: {{name: train-bench, data_dir: runs}}
stages:
  - name: sft
    source: data/sft.jsonl
    template: messages.j2
    mode: copy
    parser: json
    facets: [payload_type, split]
  - name: eval_suite
    source: data/suite.jsonl
    template: messages.j2
    mode: copy
    parser: json
    facets: [payload_type]
  - name: train
    op: train
    inputs: [sft, eval_suite]
    options:
{options}
"""


def write_project(root: Path, n: int, seed: int, options: dict, repo: Path) -> Path:
    """A project folder: SFT records (train/val/test) and an eval suite made of the test split."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "templates").mkdir(exist_ok=True)
    recs = synthetic.records(n, seed=seed)
    # the suite: held-out prompts of every payload type, drawn from test plus extra unseen ones
    suite = [r for r in recs if r["data"]["split"] == "test"]
    suite += [r for r in synthetic.records(8, seed=seed + 1000)][: max(0, 8 - len(suite))]
    flat = lambda r: {"id": r["id"] if r in recs else "suite_" + r["id"], **r["data"], **r["parsed"]}
    (root / "data/sft.jsonl").write_text("".join(json.dumps(flat(r)) + "\n" for r in recs))
    (root / "data/suite.jsonl").write_text("".join(json.dumps(flat(r)) + "\n" for r in suite))
    (root / "templates/messages.j2").write_text('{{ {"messages": source.messages} | tojson }}')
    schemas = repo / "data/schemas"
    if not (schemas / "envelope.v0.json").exists():  # before the pipeline's contracts exist: a stand-in copy
        synthetic.write_schemas(root / "schemas")
        options.setdefault("eval", {}).update(envelope_schema="schemas/envelope.v0.json",
                                              payload_schemas="schemas/payload.{type}.v1.json")
    else:
        options.setdefault("eval", {}).update(envelope_schema=str(schemas / "envelope.v0.json"),
                                              payload_schemas=str(schemas / "payload.{type}.v1.json"))
    body = "\n".join("      " + line for line in json.dumps(options, indent=2).splitlines())
    (root / "stages.yaml").write_text(PIPELINE.format(options=body))
    return root / "stages.yaml"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/out/train_student")
    ap.add_argument("--max-steps", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--eval-limit", type=int)
    ap.add_argument("--modes", default="unconstrained,constrained")
    ap.add_argument("--model-cache", default=None, help="reuse a dequantized base across runs")
    args = ap.parse_args()
    repo = Path(__file__).resolve().parents[1]
    root = Path(args.out).resolve()
    opts: dict = {"eval": {"modes": args.modes.split(",")}}
    if args.max_steps:
        opts["max_steps"] = args.max_steps
    if args.lr:
        opts["lr"] = args.lr
    if args.eval_limit:
        opts["eval"]["limit"] = args.eval_limit
    if args.model_cache:
        opts["model_cache_dir"] = str(Path(args.model_cache).resolve())
    path = write_project(root, args.records, args.seed, opts, repo)
    from pocketguide.engine.pipeline import run_pipeline
    from pocketguide.engine.session import RunOptions

    class Echo:
        def stage_started(self, *a): pass
        def record_done(self, *a): pass
        def stage_finished(self, stage, result): print(f"[{stage}] done in {result.elapsed_s:.1f}s", flush=True)
        def message(self, text): print(text, flush=True)

    t0 = time.time()
    res = run_pipeline(path, options=RunOptions(progress=Echo()))
    if not res.ok:
        raise SystemExit(f"stopped: {res.stopped}")
    stage_dir = root / "runs/train"
    stats = json.loads((stage_dir / "stats.json").read_text())
    tr, report = stats["training"], json.loads((stage_dir / "eval_report.json").read_text())
    print(f"wall {time.time() - t0:.0f}s; train {tr['n_train']} val {tr['n_val']} records; steps {tr['steps']}; "
          f"mean step {tr['mean_step_s']}s; {tr['tokens_per_s']} tok/s; peak RSS {tr['peak_rss_mb']} MB; "
          f"loss {tr['first_loss']} → {tr['last_loss']}; best val {tr['best_val_loss']} @ {tr['best_step']}")
    print((stage_dir / "eval_report.md").read_text())
    s = report["summary"]
    for mode in report["modes"]:
        b, t = s["base"][mode]["schema_valid_rate"], s["tuned"][mode]["schema_valid_rate"]
        print(f"{mode}: base {b:.2f} tuned {t:.2f}")
    gain = report["gain_points"]["unconstrained"]["schema_valid_rate"]
    print(f"unconstrained_schema_valid_gain_points={gain:+.1f}")


if __name__ == "__main__":
    main()
