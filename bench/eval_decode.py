"""The train stage's before/after evaluation, old decoding vs new, on the same held-out prompts in one process.

old: transformers' model.generate on batches of --old-batch (16, the previous default): every row of a batch
     is computed until its longest row ends; constrained mode on every prompt.
new: training/decode.py's greedy loop, rows leave the batch as they end, batches of --batch (all prompts at
     once by default); constrained mode on the first --constrained-limit prompts stratified by payload type.
Both: greedy, the same cap, the base model (and the fine-tuned one with --adapter), unconstrained then
constrained with the draft stage's decoding schema and repeat penalty (stages.yaml), 2 torch threads.
The rows both decode (unconstrained, every prompt; constrained, the subset) must be token-identical: the bench
counts mismatches. Prints per (model, mode) seconds and tokens; LAST line:
    eval_s_old=… eval_s_new=… engine_ratio=… eval_time_ratio=new/old mismatches=…
(engine_ratio: new/old seconds for the same work, i.e. without the constrained subset.)

    python bench/eval_decode.py [--n 16] [--cap 160] [--adapter runs/train/adapter_best] [--prompts heldout.jsonl]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def heldout_records(path: Path | None) -> list[dict]:
    """Held-out prompt records: from a file, else the repo's own plan → heldout stages run in a temp copy."""
    if path:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    from pocketguide.engine.loader import load_pipeline
    from pocketguide.engine.runner import run_stage
    from pocketguide.engine.store import iter_jsonl

    tmp = Path(tempfile.mkdtemp(prefix="eval-bench-"))
    shutil.copy(REPO / "stages.yaml", tmp)
    for d in ("data", "templates"):
        shutil.copytree(REPO / d, tmp / d, ignore=shutil.ignore_patterns("runs"))
    pipe = load_pipeline(tmp / "stages.yaml")
    run_stage("plan", pipe)
    run_stage("heldout", pipe)
    return list(iter_jsonl(next(tmp.rglob("heldout/records.jsonl"))))


def timed(gen, items, schemas, penalty, mode, batch):
    grammars = None
    out, t0 = [], time.perf_counter()
    for i in range(0, len(items), batch):
        part = items[i:i + batch]
        if mode == "constrained":
            grammars = [gen.grammar(it.payload_type, schemas[it.payload_type]) for it in part]
        out += gen.run([it.prompt for it in part], grammars, penalty if mode == "constrained" else None)
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=16, help="held-out prompts (stratified by payload type)")
    ap.add_argument("--cap", type=int, default=160, help="max_new_tokens")
    ap.add_argument("--batch", type=int, default=None, help="new batch size (default: all prompts)")
    ap.add_argument("--old-batch", type=int, default=16)
    ap.add_argument("--constrained-limit", type=int, default=None, help="default: n / 2")
    ap.add_argument("--adapter", type=Path, default=None, help="a trained adapter folder: adds the tuned model")
    ap.add_argument("--prompts", type=Path, default=None, help="a heldout records.jsonl (default: made here)")
    ap.add_argument("--modes", default="unconstrained,constrained")
    args = ap.parse_args()

    import torch

    from pocketguide.engine.loader import load_pipeline
    from pocketguide.training.config import TrainConfig
    from pocketguide.training.eval_run import decoding_profile
    from pocketguide.training.evaluate import stratified_first, suite_items
    from pocketguide.training.generate import Generator
    from pocketguide.training.model import load_base, offline, prepare_base

    offline()
    torch.set_num_threads(2)
    pipe = load_pipeline(REPO / "stages.yaml")
    cfg = TrainConfig.model_validate(pipe.stage("train").options)
    items, _ = suite_items(heldout_records(args.prompts), cfg.eval.system_prompt)
    items = stratified_first(items, args.n)
    limit = args.constrained_limit or max(1, args.n // 2)
    modes = args.modes.split(",")
    types = sorted({i.payload_type for i in items})
    schemas, penalty, _ = decoding_profile(pipe, cfg, types, None) if "constrained" in modes else ({}, None, None)
    model, tok = load_base(prepare_base(None, Path.home() / ".cache/pocketguide/models"), torch.device("cpu"),
                           torch.float32)
    tok.padding_side = "left"
    models = {"base": contextlib.nullcontext}
    if args.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(args.adapter))
        models = {"base": model.disable_adapter, "tuned": contextlib.nullcontext}
    model.eval()
    old, new = Generator(model, tok, "cpu", args.cap, engine="generate"), Generator(model, tok, "cpu", args.cap)
    for t in schemas:  # grammars compiled once, before any timing, shared by both
        old.grammar(t, schemas[t])
    new._compiler, new._grammars = old._compiler, old._grammars
    batch = args.batch or len(items)
    print(f"{len(items)} prompts ({', '.join(types)}), cap {args.cap}, old batch {args.old_batch}, new batch {batch}, "
          f"constrained subset {limit}", flush=True)
    s_old = s_new = s_same = 0.0
    mismatches = 0
    for name, activate in models.items():
        with activate():
            for mode in modes:
                sub = stratified_first(items, limit) if mode == "constrained" else items
                t_old, o_old = timed(old, items, schemas, penalty, mode, args.old_batch)
                t_new, o_new = timed(new, sub, schemas, penalty, mode, batch)
                t_same = t_new if len(sub) == len(items) else timed(new, items, schemas, penalty, mode, batch)[0]
                by_id = {it.id: o for it, o in zip(items, o_old)}
                mismatches += sum(by_id[it.id]["text"] != o["text"] for it, o in zip(sub, o_new))
                s_old, s_new, s_same = s_old + t_old, s_new + t_new, s_same + t_same
                toks = sum(o["new_tokens"] for o in o_old)
                print(f"{name}/{mode}: old {t_old:.1f}s ({len(items)} prompts, {toks} tokens, finished "
                      f"{sum(o['finished'] for o in o_old)}) | new {t_new:.1f}s ({len(sub)} prompts) | new on all "
                      f"{t_same:.1f}s", flush=True)
    print(f"eval_s_old={s_old:.1f} eval_s_new={s_new:.1f} engine_ratio={s_same / s_old:.3f} "
          f"eval_time_ratio={s_new / s_old:.3f} mismatches={mismatches}")


if __name__ == "__main__":
    main()
