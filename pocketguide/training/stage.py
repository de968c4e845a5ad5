"""The `train` stage end to end: SFT records → tokenized examples → LoRA training → before/after eval.
Also the library side of `pocketguide eval` (evaluate a saved adapter without training)."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pocketguide.engine.store import StageStore, file_sha256, read_json
from pocketguide.engine.version import __version__
from pocketguide.training.config import TrainConfig
from pocketguide.training.coverage import coverage, expected_types, missing_line
from pocketguide.training.data import BadRecord, Example, check_length, tokenize
from pocketguide.training.eval_run import evaluate_model, headline, write_report
from pocketguide.training.lengths import distribution, pick_max_seq_length, want_checkpointing
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


def _examples(ctx: Any, cfg: TrainConfig, tok: Any) -> tuple[TrainConfig, list[Example], list[Example], dict]:
    """Tokenize every SFT record, measure the lengths, resolve max_seq_length, then keep or reject each
    record: unusable ones become rejected records with a reason, never a crash. Returns the config with
    max_seq_length resolved, the train and val examples, and the length report."""
    roles = {cfg.train_split: "train", cfg.val_split: "val"}
    rows: list[tuple[dict, dict, str, Example | BadRecord | None]] = []
    for rec in ctx.records(cfg.input or ctx.stage.inputs[0]):
        out = ctx.derive(rec, parsed=None)  # the messages stay upstream; ids link back to them
        split = (rec.get("data") or {}).get("split")
        if split is None:
            ctx.reject(out, "missing_split", error="data.split is missing; the sft stage sets it to train/val/test")
            continue
        role = roles.get(split, "held_out")
        ex: Example | BadRecord | None = None
        if role != "held_out":
            try:
                ex = tokenize(tok, rec["id"], rec.get("parsed"))
            except BadRecord as exc:
                ex = exc
        rows.append((rec, out, role, ex))
    measured = [ex for _, _, _, ex in rows if isinstance(ex, Example)]
    if not measured:
        return cfg, [], [], {"n": 0}
    limit, how = pick_max_seq_length([len(e.input_ids) for e in measured], cfg.length_coverage, cfg.max_seq_length)
    cfg = cfg.model_copy(update={"max_seq_length": limit})
    train_set, val_set = [], []
    for rec, out, role, ex in rows:
        if isinstance(ex, Example):
            try:
                ex = check_length(ex, limit)
            except BadRecord as exc:
                ex = exc
        if isinstance(ex, BadRecord):
            ctx.reject(out, ex.code, error=str(ex))
            continue
        if ex is not None:
            (train_set if role == "train" else val_set).append(ex)
            out["data"].update(prompt_tokens=len(ex.input_ids) - ex.n_target, target_tokens=ex.n_target)
        out["data"]["train_role"] = role
        ctx.accept(out)
    types = Counter(str((rec.get("data") or {}).get("payload_type")) for rec, _, role, ex in rows
                    if role == "train" and isinstance(ex, Example) and len(ex.input_ids) <= limit)
    report = {"records": len(measured), "max_seq_length": limit, "chosen": how, "train_types": dict(types),
              "kept": sum(1 for e in measured if len(e.input_ids) <= limit),
              "total": distribution([len(e.input_ids) for e in measured]),
              "prompt": distribution([len(e.input_ids) - e.n_target for e in measured]),
              "target": distribution([e.n_target for e in measured])}
    return cfg, train_set, val_set, report


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
    cfg, train_set, val_set, lengths = _examples(ctx, cfg, tok)
    ctx.stats_extra["lengths"] = lengths
    if lengths.get("records"):
        t = lengths["total"]
        ctx.message(f"record lengths (prompt + target tokens): p50 {t['p50']}, p95 {t['p95']}, max {t['max']}; "
                    f"max_seq_length {lengths['max_seq_length']} ({lengths['chosen']})")
    if not train_set:
        return _skip(ctx, f"no usable training records in stage '{source}' (all were rejected here: too long for "
                          f"max_seq_length, or malformed) — see {ctx.stage.name}/rejected.jsonl")
    data_sha = data_sha256(train_set + val_set)
    fp = fingerprint(cfg, base.sha256, data_sha)
    meta = {"config": cfg.model_dump(mode="json"), "base_model": {"path": str(base.path), "source": base.source,
                                                                   "sha256": base.sha256},
            "data_sha256": data_sha, "pocketguide_version": __version__}
    model = add_lora(model, cfg)
    ckpt = _checkpointing(model, cfg, train_set, device)
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
    if ckpt["on"]:  # generation needs the KV cache back
        model.gradient_checkpointing_disable()
        model.config.use_cache = True
    ctx.write_bytes("loss_curve.png", loss_curve_png(res.history))
    import torch

    summary = {k: v for k, v in res.__dict__.items() if k != "history"}
    summary.update(n_train=len(train_set), n_val=len(val_set), device=str(device), threads=torch.get_num_threads(),
                   max_seq_length=cfg.max_seq_length, gradient_checkpointing=ckpt)
    ctx.stats_extra["training"] = summary
    inputs = {n: file_sha256(ctx.input_store(n).records_path) for n in ctx.stage.inputs}
    ctx.manifest_extra["training"] = {
        "base_model": meta["base_model"], "data_sha256": {"examples": data_sha, "inputs": inputs},
        "metrics": summary, "config": meta["config"], "adapters": {"best": BEST, "final": FINAL},
        "fingerprint": fp}
    train_cov = coverage(expected_types(ctx.pipe.resolve(cfg.eval.envelope_schema)),
                         {"train": Counter(lengths["train_types"])})
    ctx.stats_extra["coverage"] = train_cov
    if missing_line(train_cov):
        ctx.note = missing_line(train_cov)
    _evaluate_after_training(ctx, cfg, model, tok, device, base, summary, lengths, [e.n_target for e in train_set])


def _evaluate_after_training(ctx: Any, cfg: TrainConfig, model: Any, tok: Any, device: Any, base: Any,
                             summary: dict[str, Any], lengths: dict[str, Any], targets: list[int]) -> None:
    names = suite_names(ctx.stage, cfg)
    suites = [(name, list(ctx.records(name))) for name in names]
    found = [(name, recs) for name, recs in suites if recs]
    trained = (f"trained {summary['steps']} steps on {summary['n_train']} records, loss "
               f"{summary['first_loss'] or 0:.2f} → {summary['last_loss'] or 0:.2f}")
    if not found:
        note = (f"evaluation skipped: the eval suites ({', '.join(names)}) are empty" if names
                else "evaluation skipped: no eval suite (options.eval.suites)")
        ctx.note = f"{trained}; {note}" + (f"; {ctx.note}" if ctx.note else "")
        ctx.stats_extra["eval"] = {"skipped": note}
        ctx.manifest_extra["eval"] = {"skipped": note}
        return
    report = evaluate_model(ctx.pipe, cfg, found, model, tok, device, base, ctx.dir, message=ctx.message,
                            teacher=_teacher(ctx), overrides=ctx.run.teacher, fallback_targets=targets,
                            train_types=lengths["train_types"])
    write_report(ctx.write_json, ctx.write_bytes, report)
    ctx.stats_extra["coverage"] = report["coverage"]
    missing = missing_line(report["coverage"])
    ctx.note = (f"{trained}; {headline(report)}; report: {ctx.dir / 'eval_report.md'}"
                + (f"; {missing}" if missing else ""))
    ctx.stats_extra["eval"] = {"headline_suite": report["headline_suite"], "gain_points": report["gain_points"],
                               "summary": {m: {k: {x: y for x, y in v.items() if x != "by_payload_type"}
                                               for k, v in modes.items()} for m, modes in report["summary"].items()}}
    ctx.manifest_extra["eval"] = {"report": "eval_report.json", "gain_points": report["gain_points"],
                                  "suites": {n: s["n_examples"] for n, s in report["suites"].items()}}


def _teacher(ctx: Any) -> dict[str, Any]:
    """Which teacher made the training answers (the run's: pipeline defaults + --teacher/--model)."""
    return ctx.pipe.spec.pipeline.teacher.merged(ctx.run.teacher).facts()


def _checkpointing(model: Any, cfg: TrainConfig, train_set: list[Example], device: Any) -> dict[str, Any]:
    """Turn gradient checkpointing on where memory needs it: the activations held at once are the longest
    sequence's on the lean loss path (it runs a micro-batch one sequence at a time), the largest padded
    micro-batch's on the full-logits path."""
    from pocketguide.training.loss import path_for

    longest = max(len(e.input_ids) for e in train_set)
    if path_for(model)[0] == "lean":
        held = longest
    elif cfg.batch_tokens is None:
        held = longest * (cfg.batch_size or 1)
    else:
        held = max(longest, min(cfg.batch_tokens, longest * (cfg.batch_size or len(train_set))))
    dtype_bytes = next(model.parameters()).element_size()
    on, why = want_checkpointing(cfg.gradient_checkpointing, model.config, held, device, dtype_bytes)
    if on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    return {"on": on, "why": why, "tokens_held": held}


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
    lengths = (read_json(store.dir / "stats.json") or {}).get("lengths") or {}
    target = lengths.get("target") or {}
    report = evaluate_model(pipe, cfg, suites, model, tok, device, base, store.dir, message=message,
                            teacher=pipe.spec.pipeline.teacher.facts(),
                            fallback_targets=[target["max"]] if target.get("max") else None,
                            train_types=lengths.get("train_types"))
    write_report(store.write_json, store.write_bytes, report)
    return report
