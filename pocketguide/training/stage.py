"""The `train` stage end to end: SFT records → tokenized examples → LoRA training → before/after eval.
Also the library side of `pocketguide eval` (evaluate a saved adapter without training)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pocketguide.engine.store import StageStore, file_sha256
from pocketguide.engine.version import __version__
from pocketguide.training.config import TrainConfig
from pocketguide.training.data import BadRecord, Example, encode
from pocketguide.training.eval_run import evaluate_model, headline, write_report
from pocketguide.training.model import (
    TrainingError,
    cpu_threads,
    load_base,
    missing_extras,
    offline,
    pick_device,
    prepare_base,
    require_extra,
)
from pocketguide.training.trainer import BEST, FINAL, add_lora, fingerprint, loss_curve_png, train


def _setup(pipe: Any, cfg: TrainConfig, threads: int | None = None) -> tuple[Any, Any, Any, Any]:
    """Base model, tokenizer and device; `threads` (the run's --threads) wins over options.threads."""
    offline()
    require_extra()
    import torch

    torch.set_num_threads(cpu_threads(threads or cfg.threads))
    cache = model_cache(pipe, cfg)
    base = prepare_base(pipe.resolve(cfg.base_model) if cfg.base_model else None, cache)
    device, dtype = pick_device(cfg.device)
    model, tok = load_base(base, device, dtype)
    return base, model, tok, device


def model_cache(pipe: Any, cfg: TrainConfig) -> Path:
    """options.model_cache_dir, else $POCKETGUIDE_MODEL_CACHE (shared across projects), else <data_dir>/_models."""
    if cfg.model_cache_dir:
        return pipe.resolve(cfg.model_cache_dir)
    env = os.environ.get("POCKETGUIDE_MODEL_CACHE")
    return Path(env) if env else pipe.data_dir / "_models"


def _examples(ctx: Any, cfg: TrainConfig, tok: Any) -> tuple[list[Example], list[Example]]:
    """Encode every SFT record; unusable ones become rejected records with a reason, never a crash."""
    train_set, val_set = [], []
    roles = {cfg.train_split: "train", cfg.val_split: "val"}
    for rec in ctx.records(cfg.input or ctx.stage.inputs[0]):
        out = ctx.derive(rec, parsed=None)  # the messages stay upstream; ids link back to them
        split = (rec.get("data") or {}).get("split")
        if split is None:
            ctx.reject(out, "missing_split", error="data.split is missing; the sft stage sets it to train/val/test")
            continue
        role = roles.get(split, "held_out")
        if role != "held_out":
            try:
                ex = encode(tok, rec["id"], rec.get("parsed"), cfg.max_seq_length)
            except BadRecord as exc:
                ctx.reject(out, exc.code, error=str(exc))
                continue
            (train_set if role == "train" else val_set).append(ex)
            out["data"].update(prompt_tokens=len(ex.input_ids) - ex.n_target, target_tokens=ex.n_target)
        out["data"]["train_role"] = role
        ctx.accept(out)
    return train_set, val_set


def data_sha256(examples: list[Example]) -> str:
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.id, e.input_ids, e.labels]).encode())
    return h.hexdigest()


def _skip(ctx: Any, reason: str) -> None:
    ctx.note = f"skipped: {reason}"
    ctx.stats_extra["training"] = {"skipped": reason, "n_train": 0}
    ctx.manifest_extra["training"] = {"skipped": reason}


def run_train_stage(ctx: Any, cfg: TrainConfig, stop_after: int | None = None) -> None:
    """What `op: train` does. `stop_after` (tests only) ends training early, as a crash would."""
    source = cfg.input or ctx.stage.inputs[0]
    if not any((r.get("data") or {}).get("split") == cfg.train_split for r in ctx.records(source)):
        # an empty dataset is an outcome to report, not a crash: the stage ends with no adapter
        reason = (f"no training records (data.split == '{cfg.train_split}') in stage '{source}': every upstream "
                  f"record was rejected — see `pocketguide status` and the rejected.jsonl files; a stronger "
                  f"teacher (--teacher/--base-url, or a bigger GGUF via POCKETGUIDE_MODEL) gives data to learn from")
        return _skip(ctx, reason)
    missing = missing_extras()
    if missing:  # SFT rows but no [train] extra: a reported outcome, and the run summary still prints
        return _skip(ctx, f"training needs {', '.join(missing)}, which are not installed — "
                          f"pip install 'pocketguide[train]' and rerun")
    base, model, tok, device = _setup(ctx.pipe, cfg, ctx.run.settings.get("threads"))
    train_set, val_set = _examples(ctx, cfg, tok)
    if not train_set:
        return _skip(ctx, f"no usable training records in stage '{source}' (all were rejected here: too long for "
                          f"max_seq_length, or malformed) — see {ctx.stage.name}/rejected.jsonl")
    data_sha = data_sha256(train_set + val_set)
    fp = fingerprint(cfg, base.sha256, data_sha)
    meta = {"config": cfg.model_dump(mode="json"), "base_model": {"path": str(base.path), "source": base.source,
                                                                   "sha256": base.sha256},
            "data_sha256": data_sha, "pocketguide_version": __version__}
    model = add_lora(model, cfg)
    progress = ctx.run.progress
    hook = getattr(progress, "train_step", None)

    def on_step(row: dict[str, Any]) -> None:
        if hook is not None:
            hook(ctx.stage.name, row)
        elif row["step"] % cfg.eval_every == 0 or row["step"] == row["total"]:
            ctx.message(f"step {row['step']}/{row['total']} loss {row['loss']:.3f} "
                        f"{row['tokens_per_s']:.0f} tok/s eta {row['eta_s']:.0f}s")

    res = train(model, tok, cfg, train_set, val_set, ctx.dir, device, fp, meta, on_step, stop_after)
    if stop_after is not None and res.steps < res.total_steps:
        return
    ctx.write_bytes("loss_curve.png", loss_curve_png(res.history))
    import torch

    summary = {k: v for k, v in res.__dict__.items() if k != "history"}
    summary.update(n_train=len(train_set), n_val=len(val_set), device=str(device), threads=torch.get_num_threads())
    ctx.stats_extra["training"] = summary
    inputs = {n: file_sha256(ctx.input_store(n).records_path) for n in ctx.stage.inputs}
    ctx.manifest_extra["training"] = {
        "base_model": meta["base_model"], "data_sha256": {"examples": data_sha, "inputs": inputs},
        "metrics": summary, "config": meta["config"], "adapters": {"best": BEST, "final": FINAL},
        "fingerprint": fp}
    _evaluate_after_training(ctx, cfg, model, tok, device, base, summary)


def _evaluate_after_training(ctx: Any, cfg: TrainConfig, model: Any, tok: Any, device: Any, base: Any,
                             summary: dict[str, Any]) -> None:
    names = suite_names(ctx.stage, cfg)
    suites = [(name, list(ctx.records(name))) for name in names]
    found = [(name, recs) for name, recs in suites if recs]
    trained = (f"trained {summary['steps']} steps on {summary['n_train']} records, loss "
               f"{summary['first_loss'] or 0:.2f} → {summary['last_loss'] or 0:.2f}")
    if not found:
        note = (f"evaluation skipped: the eval suites ({', '.join(names)}) are empty" if names
                else "evaluation skipped: no eval suite (options.eval.suites)")
        ctx.note = f"{trained}; {note}"
        ctx.stats_extra["eval"] = {"skipped": note}
        ctx.manifest_extra["eval"] = {"skipped": note}
        return
    report = evaluate_model(ctx.pipe, cfg, found, model, tok, device, base, ctx.dir, message=ctx.message,
                            teacher=_teacher(ctx), overrides=ctx.run.teacher)
    write_report(ctx.write_json, ctx.write_bytes, report)
    ctx.note = f"{trained}; {headline(report)}; report: {ctx.dir / 'eval_report.md'}"
    ctx.stats_extra["eval"] = {"headline_suite": report["headline_suite"], "gain_points": report["gain_points"],
                               "summary": {m: {k: {x: y for x, y in v.items() if x != "by_payload_type"}
                                               for k, v in modes.items()} for m, modes in report["summary"].items()}}
    ctx.manifest_extra["eval"] = {"report": "eval_report.json", "gain_points": report["gain_points"],
                                  "suites": {n: s["n_examples"] for n, s in report["suites"].items()}}


def _teacher(ctx: Any) -> dict[str, Any]:
    """Which teacher made the training answers (the run's: pipeline defaults + --teacher/--model)."""
    return ctx.pipe.spec.pipeline.teacher.merged(ctx.run.teacher).facts()


def suite_names(stage: Any, cfg: TrainConfig) -> list[str]:
    """The eval suites: options.eval.suites, else every input after the first (which holds the SFT records)."""
    names = list(stage.inputs[1:]) if cfg.eval.suites is None else list(cfg.eval.suites)
    bad = [n for n in names if n not in stage.inputs]
    if bad:
        raise TrainingError(f"{stage.name}.options.eval.suites: {bad} are not inputs of this stage "
                            f"({', '.join(stage.inputs)}) — add them to inputs or remove them from eval.suites")
    return names


def evaluate_stage(pipe: Any, stage_name: str, cfg: TrainConfig, message: Callable[[str], None] | None = None,
                   threads: int | None = None) -> dict[str, Any]:
    """`pocketguide eval`: evaluate the adapter a finished train stage saved, and rewrite its report."""
    from pocketguide.engine.inputs import input_store

    store = StageStore(pipe.data_dir, stage_name)
    if not ((store.dir / BEST).exists() or (store.dir / FINAL).exists()):
        raise TrainingError(f"stage '{stage_name}' has no adapter yet — run `pocketguide train` first")
    names = suite_names(pipe.stage(stage_name), cfg)
    suites = [(n, list(input_store(pipe, n, False).accepted())) for n in names]
    suites = [(n, recs) for n, recs in suites if recs]
    if not suites:
        raise TrainingError(f"no eval suite with records among {names or '[]'} — run the pipeline first "
                            f"(pocketguide run-all), or name a suite stage in options.eval.suites")
    from peft import PeftModel

    base, model, tok, device = _setup(pipe, cfg, threads)
    saved = store.dir / (BEST if (store.dir / BEST).exists() else FINAL)
    model = PeftModel.from_pretrained(model, str(saved))  # the adapter's own LoRA shape, whatever the YAML says now
    report = evaluate_model(pipe, cfg, suites, model, tok, device, base, store.dir, message=message,
                            teacher=pipe.spec.pipeline.teacher.facts())
    write_report(store.write_json, store.write_bytes, report)
    return report
