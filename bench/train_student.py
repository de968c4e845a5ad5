"""The student's training on CPU: the loss paths side by side, or a whole realistic run.

Default (compare): the default student (the embedded SmolLM2-135M) with the default TrainConfig (LoRA r=16)
but a fixed 4 records per micro-batch (batch_tokens null, batch_size 4) on synthetic envelope SFT records
(`--sft FILE`: on those records with the default token-budget micro-batches), `--steps` optimizer steps with
the old loss path (the padded batch through the model's own loss: fp32 logits for vocabulary × sequence) and
with the lean one
(training/loss.py: a sequence at a time, target positions only, chunked), each in a fresh child process so
each peak RSS is its own. Same data, seed and threads (LoRA dropout draws differ: the losses agree within
that noise). Prints per path: peak RSS, mean step time (first step excluded: warm-up), the losses; LAST line:
    peak_rss_mb_old=… peak_rss_mb_new=… step_s_old=… step_s_new=… step_time_ratio=new/old max_loss_diff=…

--prefix: the shared-prompt-prefix change alone, in ONE process, steps interleaved so both see the same load:
each step's micro-batches (default token budget, `--batch-tokens`) backpropagated the per-sequence way (every
sequence runs its whole prompt; the lean path before) and the shared-prefix way (the system message once per
micro-batch), alternating which goes first, no optimizer step between (same weights, same batches). Records:
synthetic answers under the pipeline's own student system prompt (stages.yaml), or `--sft FILE`. Prints per
path mean step time and tokens/s, the process's peak RSS and the loss difference; LAST line:
    tokens_per_step=… step_s_old=… step_s_new=… tokens_per_s_old=… tokens_per_s_new=… peak_rss_mb=… step_time_ratio=new/old

--pipeline: the realistic run instead — synthetic records → `train` stage → before/after eval. Prints step
time, peak RSS, base vs tuned schema-valid rates; the LAST line is the unconstrained schema-valid gain.

    python bench/train_student.py [--steps 6] [--records 48]
    python bench/train_student.py --sft train_sft.jsonl --steps 3   # real records, default micro-batches
    python bench/train_student.py --prefix [--batch-tokens 2048] [--steps 6] [--sft train_sft.jsonl]
    python bench/train_student.py --pipeline [--records 48] [--max-steps N] [--out bench/out/train_student]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
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


def sft_records(path: str) -> list[dict]:
    """Records of an SFT JSONL: `messages` (an assistant turn, or the answer in `target`, as the original
    PocketGuide project's sft/v2 files hold it)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        msgs = [m for m in rec["messages"] if m["role"] != "assistant" or "target" not in rec]
        if "target" in rec:
            target = rec["target"] if isinstance(rec["target"], str) else json.dumps(rec["target"], ensure_ascii=False)
            msgs.append({"role": "assistant", "content": target})
        out.append({"id": str(rec.get("id", len(out))), "parsed": {"messages": msgs}})
    return out


def measure(path: str, steps: int, records: int, seed: int, threads: int, cache: str | None,
            sft_file: str | None = None) -> dict:
    """In this (child) process: load the default student, run `steps` optimizer steps with one loss path."""
    import torch

    from pocketguide.training.config import TrainConfig
    from pocketguide.training.data import tokenize
    from pocketguide.training.loss import PATHS
    from pocketguide.training.model import load_base, offline, prepare_base
    from pocketguide.training.trainer import _optimizer_step, add_lora, lr_at, peak_rss_mb, schedule

    offline()
    torch.set_num_threads(threads)
    if sft_file:  # real records: the default token-budget micro-batches (batch_tokens 2048)
        cfg = TrainConfig(seed=seed, max_steps=steps)
    else:  # i15's comparison: 4 toy records a micro-batch
        cfg = TrainConfig(seed=seed, batch_tokens=None, batch_size=4, max_steps=steps)
    cache_dir = Path(cache or os.environ.get("POCKETGUIDE_MODEL_CACHE") or Path.home() / ".cache/pocketguide/models")
    model, tok = load_base(prepare_base(None, cache_dir), torch.device("cpu"), torch.float32)
    model = add_lora(model, cfg)
    if sft_file:
        train = [tokenize(tok, r["id"], r["parsed"]) for r in sft_records(sft_file)][:records]
    else:
        train = [tokenize(tok, r["id"], r["parsed"]) for r in synthetic.records(records, seed=seed)
                 if r["data"]["split"] == "train"]
    plan = schedule(cfg, train)
    loaded_rss = peak_rss_mb()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    losses, times, tokens = [], [], 0
    for step in range(steps):
        t0 = time.perf_counter()
        batches = [[train[i] for i in micro] for micro in plan[step]]
        loss, n = _optimizer_step(model, optimizer, params, cfg, batches, tok.pad_token_id, torch.device("cpu"),
                                  step, lr_at(cfg, step, steps), backward=PATHS[path][0])
        times.append(time.perf_counter() - t0)
        losses.append(loss)
        tokens += n
    timed = times[1:] or times
    return {"path": path, "peak_rss_mb": round(peak_rss_mb()), "rss_after_load_mb": round(loaded_rss),
            "mean_step_s": sum(timed) / len(timed), "step_s": [round(t, 2) for t in times], "losses": losses,
            "tokens_per_step": tokens / steps, "threads": threads,
            "batch_size": cfg.batch_size or f"≤{cfg.batch_tokens} tokens", "n_train": len(train),
            "records_per_step": sum(len(m) for step in plan[:steps] for m in step) / steps}


def student_system_prompt(repo: Path) -> str:
    """The system message the pipeline's SFT records carry (stages.yaml, stage sft), so the shared prefix is
    as long as a real run's."""
    import yaml

    spec = yaml.safe_load((repo / "stages.yaml").read_text())
    return next(s["options"]["system_prompt"] for s in spec["stages"] if s.get("name") == "sft")


def prefix_records(args: argparse.Namespace) -> list[dict]:
    if args.sft:
        return sft_records(args.sft)
    system = student_system_prompt(Path(__file__).resolve().parents[1])
    out = []
    for r in synthetic.records(args.records, seed=args.seed):
        msgs = [{"role": "system", "content": system}] + [m for m in r["parsed"]["messages"] if m["role"] != "system"]
        out.append({"id": r["id"], "parsed": {"messages": msgs}})
    return out


def measure_prefix(args: argparse.Namespace) -> None:
    """Per-sequence vs shared-prefix lean backward on the same steps, interleaved in this process."""
    import torch

    from pocketguide.training import loss as loss_module
    from pocketguide.training.config import TrainConfig
    from pocketguide.training.data import tokenize
    from pocketguide.training.model import cpu_threads, load_base, offline, prepare_base
    from pocketguide.training.trainer import add_lora, peak_rss_mb, schedule

    offline()
    threads = args.threads or cpu_threads(None)
    torch.set_num_threads(threads)
    cfg = TrainConfig(seed=args.seed, max_steps=args.steps + 1, batch_tokens=args.batch_tokens)
    cache_dir = Path(args.model_cache or os.environ.get("POCKETGUIDE_MODEL_CACHE")
                     or Path.home() / ".cache/pocketguide/models")
    model, tok = load_base(prepare_base(None, cache_dir), torch.device("cpu"), torch.float32)
    model = add_lora(model, cfg)
    train = [tokenize(tok, r["id"], r["parsed"]) for r in prefix_records(args)]
    plan = schedule(cfg, train)
    model.train()
    cpu, share = torch.device("cpu"), loss_module.MIN_SHARED_PREFIX
    times: dict[str, list[float]] = {"old": [], "new": []}
    losses: dict[str, list[float]] = {"old": [], "new": []}
    prefixes, tokens = [], []
    for step in range(args.steps + 1):  # step 0 warms up and is not counted
        groups = [[train[i] for i in micro] for micro in plan[step]]
        prefixes += [loss_module.shared_prefix(g) for g in groups]
        order = ("old", "new") if step % 2 else ("new", "old")
        for path in order:
            loss_module.MIN_SHARED_PREFIX = 1 << 30 if path == "old" else share
            torch.manual_seed(args.seed + step)
            t0 = time.perf_counter()
            out = [loss_module.lean_backward(model, g, tok.pad_token_id, cpu, 1.0 / len(groups)) for g in groups]
            dt = time.perf_counter() - t0
            model.zero_grad(set_to_none=True)
            if step:
                times[path].append(dt)
                losses[path].append(sum(x for x, _ in out) / len(out))
        if step:
            tokens.append(sum(n for _, n in out))
    loss_module.MIN_SHARED_PREFIX = share
    per_step = sum(tokens) / len(tokens)
    old, new = (sum(times[k]) / len(times[k]) for k in ("old", "new"))
    diff = max(abs(a - b) for a, b in zip(losses["old"], losses["new"]))
    lengths = sorted(len(e.input_ids) for e in train)
    print(f"{len(train)} records, p50 {lengths[len(lengths) // 2]} tokens; batch_tokens {args.batch_tokens}: "
          f"{per_step:.0f} tokens/step; shared prefix per micro-batch {prefixes}; {threads} threads")
    for k, name in (("old", "per-sequence (whole prompt each)"), ("new", "shared prefix once per micro-batch")):
        mean = sum(times[k]) / len(times[k])
        print(f"{name}: mean step {mean:.2f}s ({per_step / mean:.0f} tokens/s), steps {[round(t, 2) for t in times[k]]}, "
              f"losses {[round(x, 4) for x in losses[k]]}")
    print(f"max loss difference {diff:.2e} (LoRA dropout draws differ; the tests check equality without it)")
    print(f"tokens_per_step={per_step:.0f} step_s_old={old:.2f} step_s_new={new:.2f} "
          f"tokens_per_s_old={per_step / old:.1f} tokens_per_s_new={per_step / new:.1f} "
          f"peak_rss_mb={peak_rss_mb():.0f} step_time_ratio={new / old:.3f}")


def compare(args: argparse.Namespace) -> None:
    from pocketguide.training.model import cpu_threads

    threads = args.threads or cpu_threads(None)  # chosen once, the same for both paths
    runs = {}
    for loss in ("full", "lean"):
        cmd = [sys.executable, __file__, "--measure", loss, "--steps", str(args.steps), "--records",
               str(args.records), "--seed", str(args.seed), "--threads", str(threads)]
        if args.sft:
            cmd += ["--sft", args.sft]
        if args.model_cache:
            cmd += ["--model-cache", args.model_cache]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode:
            raise SystemExit(f"{loss} path failed:\n{out.stderr[-3000:]}")
        runs[loss] = json.loads(out.stdout.strip().splitlines()[-1])
    for loss, name in (("full", "old (padded batch, model loss, full fp32 logits)"),
                       ("lean", "new (a sequence at a time, target rows, chunked)")):
        r = runs[loss]
        print(f"{name}: peak RSS {r['peak_rss_mb']} MB (after loading {r['rss_after_load_mb']} MB); mean step "
              f"{r['mean_step_s']:.2f}s (steps {r['step_s']}); {r['tokens_per_step']:.0f} tokens/step "
              f"({r['records_per_step']:.1f} records) at batch {r['batch_size']}, {r['threads']} threads; "
              f"losses {[round(x, 4) for x in r['losses']]}")
    old, new = runs["full"], runs["lean"]
    diff = max(abs(a - b) for a, b in zip(old["losses"], new["losses"]))
    print(f"peak_rss_mb_old={old['peak_rss_mb']} peak_rss_mb_new={new['peak_rss_mb']} "
          f"step_s_old={old['mean_step_s']:.2f} step_s_new={new['mean_step_s']:.2f} "
          f"step_time_ratio={new['mean_step_s'] / old['mean_step_s']:.2f} max_loss_diff={diff:.2e}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pipeline", action="store_true", help="the whole train stage with evaluation instead")
    ap.add_argument("--prefix", action="store_true", help="per-sequence vs shared-prefix lean loss, interleaved "
                                                         "in one process")
    ap.add_argument("--batch-tokens", type=int, default=2048, help="--prefix: token budget per micro-batch")
    ap.add_argument("--steps", type=int, default=6, help="compare: optimizer steps per path")
    ap.add_argument("--threads", type=int, help="compare: torch threads (default: the trainer's choice)")
    ap.add_argument("--measure", choices=["full", "lean"], help=argparse.SUPPRESS)  # the child's job
    ap.add_argument("--records", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/out/train_student")
    ap.add_argument("--max-steps", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--eval-limit", type=int)
    ap.add_argument("--modes", default="unconstrained,constrained")
    ap.add_argument("--model-cache", default=None, help="reuse a dequantized base across runs")
    ap.add_argument("--sft", help="compare on these SFT records (JSONL: messages, or messages + target) with the "
                                  "default token-budget micro-batches instead of 4 toy records a step")
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.steps, args.records, args.seed, args.threads, args.model_cache,
                                 args.sft)))
        return
    if args.prefix:
        measure_prefix(args)
        return
    if not args.pipeline:
        compare(args)
        return
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
