"""The `train` stage end to end: SFT records → tokenized examples → LoRA training → before/after eval.
Also the library side of `pocketguide eval` (evaluate a saved adapter without training)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
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
from pocketguide.training.lengths import (
    distribution,
    generation_cap,
    pick_max_seq_length,
    want_checkpointing,
)
from pocketguide.training.model import (
    TrainingError,
    cpu_threads,
    load_base,
    offline,
    pick_device,
    prepare_base,
    require_extra,
)
from pocketguide.training.report import gains, markdown, summarize
from pocketguide.training.trainer import BEST, FINAL, add_lora, fingerprint, loss_curve_png, train


def _setup(pipe: Any, cfg: TrainConfig) -> tuple[Any, Any, Any, Any]:
    offline()
    require_extra()
    import torch

    torch.set_num_threads(cpu_threads(cfg.threads))
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


def run_train_stage(ctx: Any, cfg: TrainConfig, stop_after: int | None = None) -> None:
    """What `op: train` does. `stop_after` (tests only) ends training early, as a crash would."""
    source = cfg.input or ctx.stage.inputs[0]
    if not any((r.get("data") or {}).get("split") == cfg.train_split for r in ctx.records(source)):
        # an empty dataset is an outcome to report, not a crash: the stage ends with no adapter
        reason = (f"no training records (data.split == '{cfg.train_split}') in stage '{source}': every upstream "
                  f"record was rejected — see `pocketguide status` and the rejected.jsonl files; a stronger "
                  f"teacher (--teacher/--base-url, or a bigger GGUF via POCKETGUIDE_MODEL) gives data to learn from")
        ctx.note = f"skipped: {reason}"
        ctx.stats_extra["training"] = {"skipped": reason, "n_train": 0}
        ctx.manifest_extra["training"] = {"skipped": reason}
        return
    base, model, tok, device = _setup(ctx.pipe, cfg)
    cfg, train_set, val_set, lengths = _examples(ctx, cfg, tok)
    ctx.stats_extra["lengths"] = lengths
    if lengths.get("records"):
        t = lengths["total"]
        ctx.message(f"record lengths (prompt + target tokens): p50 {t['p50']}, p95 {t['p95']}, max {t['max']}; "
                    f"max_seq_length {lengths['max_seq_length']} ({lengths['chosen']})")
    if not train_set:
        reason = (f"no usable training records in stage '{source}' (all were rejected here: too long for "
                  f"max_seq_length, or malformed) — see {ctx.stage.name}/rejected.jsonl")
        ctx.note = f"skipped: {reason}"
        ctx.stats_extra["training"] = {"skipped": reason, "n_train": 0}
        ctx.manifest_extra["training"] = {"skipped": reason}
        return
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
    summary = {k: v for k, v in res.__dict__.items() if k != "history"}
    summary.update(n_train=len(train_set), n_val=len(val_set), device=str(device), max_seq_length=cfg.max_seq_length,
                   gradient_checkpointing=ckpt)
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
    suite = list(ctx.records(_suite_input(ctx, cfg))) if cfg.eval.suite else []
    if cfg.eval.suite and not suite:
        note = f"evaluation skipped: the eval suite '{cfg.eval.suite}' is empty (no test-split records)"
        ctx.note = note
        ctx.stats_extra["eval"] = {"skipped": note}
        ctx.manifest_extra["eval"] = {"skipped": note}
    if suite:
        report = evaluate_model(ctx.pipe, cfg, suite, model, tok, device, base, ctx.dir, message=ctx.message,
                                fallback_targets=[e.n_target for e in train_set], train_types=lengths["train_types"])
        ctx.stats_extra["coverage"] = report["coverage"]
        if missing_line(report["coverage"]):
            ctx.note = missing_line(report["coverage"])
        write_report(ctx.write_json, ctx.write_bytes, report)
        ctx.stats_extra["eval"] = {"gain_points": report["gain_points"],
                                   "summary": {m: {k: {x: y for x, y in v.items() if x != "by_payload_type"}
                                                   for k, v in modes.items()} for m, modes in report["summary"].items()}}
        ctx.manifest_extra["eval"] = {"report": "eval_report.json", "gain_points": report["gain_points"]}


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


def _suite_input(ctx: Any, cfg: TrainConfig) -> str:
    name = cfg.eval.suite or ""
    if name not in ctx.stage.inputs:
        raise TrainingError(f"{ctx.stage.name}.options.eval.suite: '{name}' is not one of this stage's inputs "
                            f"({', '.join(ctx.stage.inputs)}) — add it to inputs or set eval.suite: null")
    return name


def _load_adapter_weights(model: Any, adapter_dir: Path) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(adapter_dir / "adapter_model.safetensors")))


def evaluate_model(pipe: Any, cfg: TrainConfig, suite_records: list[dict[str, Any]], model: Any, tok: Any, device: Any,
                   base: Any, stage_dir: Path, message: Callable[[str], None] | None = None,
                   fallback_targets: list[int] | None = None, train_types: dict[str, int] | None = None
                   ) -> dict[str, Any]:
    """`model` is a peft model; the base answers with the adapter disabled, the student with the chosen one.
    The generation cap follows the suite's reference answers (else `fallback_targets`, the training targets)."""
    from pocketguide.training.evaluate import Generator, Schemas, evaluate, suite_items

    ecfg = cfg.eval
    modes, notes = list(ecfg.modes), []
    if "constrained" in modes and importlib.util.find_spec("xgrammar") is None:
        modes.remove("constrained")  # report it, rather than lose the training run's evaluation
        notes.append("constrained mode skipped: xgrammar is not installed — pip install --no-deps xgrammar==0.2.8 "
                     "apache-tvm-ffi==0.1.15.post2")
    items, bad = suite_items(suite_records, ecfg.system_prompt)
    present = {"suite": Counter(str(i.payload_type) for i in items)}
    if train_types is not None:
        present = {"train": Counter(train_types), **present}
    cov = coverage(expected_types(pipe.resolve(ecfg.envelope_schema)), present)
    if ecfg.limit:
        items = items[:ecfg.limit]
    if not items:
        raise TrainingError("the eval suite has no usable records (parsed.messages with a user prompt and a reference)")
    types = sorted({i.payload_type for i in items if i.payload_type})
    schemas = Schemas.load(pipe.resolve(ecfg.envelope_schema), pipe.resolve(ecfg.payload_schemas), types)
    adapter_dir = stage_dir / (BEST if ecfg.adapter == "best" and (stage_dir / BEST).exists() else FINAL)
    _load_adapter_weights(model, adapter_dir)
    tok.padding_side = "left"
    model.eval()
    max_new, chosen, refs = generation_cap(tok, [i.reference for i in items], fallback_targets, ecfg.max_new_tokens)
    gen = Generator(model, tok, device, max_new)
    contexts = {"base": model.disable_adapter, "tuned": contextlib.nullcontext}
    rows = evaluate({m: contexts[m] for m in ecfg.models}, gen, items, schemas, modes, ecfg.batch_size,
                    list(ecfg.gates), on_batch=message)
    summary = summarize(rows)
    notes += [f"suite record {r.get('id')} skipped: {code}" for r, code, _ in bad]
    if "constrained" in modes:
        notes.append("constrained = xgrammar JSON-schema grammar (envelope with the expected payload type's schema), "
                     "compact whitespace")
    if missing_line(cov):
        notes.append(missing_line(cov))
    capped = [r for r in rows if not r["finished"]]
    if capped:
        notes.append(f"{len(capped)} of {len(rows)} answers stopped at max_new_tokens {max_new} without finishing "
                     f"(finished rate beside every schema-valid rate): a cut answer is a length problem, not "
                     f"necessarily a wrong one")
    return {"n_examples": len(items), "max_new_tokens": max_new, "max_new_tokens_chosen": chosen,
            "reference_tokens": distribution(refs), "coverage": cov, "batch_size": ecfg.batch_size,
            "greedy": True, "models": list(ecfg.models), "modes": modes, "payload_types": types,
            "adapter": {"path": str(adapter_dir), **_adapter_meta(adapter_dir)},
            "base_model": {"path": str(base.path), "sha256": base.sha256}, "device": str(device),
            "schemas": schemas.paths, "summary": summary, "gain_points": gains(summary), "notes": notes,
            "examples": rows}


def _adapter_meta(adapter_dir: Path) -> dict[str, Any]:
    p = adapter_dir / "training_config.json"
    meta = json.loads(p.read_text()) if p.exists() else {}
    return {"step": meta.get("step"), "val_loss": meta.get("val_loss")}


def write_report(write_json: Callable[[str, Any], None], write_bytes: Callable[[str, bytes], None],
                 report: dict[str, Any]) -> None:
    write_json("eval_report.json", report)
    write_bytes("eval_report.md", markdown(report).encode())


def evaluate_stage(pipe: Any, stage_name: str, cfg: TrainConfig, message: Callable[[str], None] | None = None
                   ) -> dict[str, Any]:
    """`pocketguide eval`: evaluate the adapter a finished train stage saved, and rewrite its report."""
    from pocketguide.engine.inputs import input_store

    store = StageStore(pipe.data_dir, stage_name)
    if not ((store.dir / BEST).exists() or (store.dir / FINAL).exists()):
        raise TrainingError(f"stage '{stage_name}' has no adapter yet — run `pocketguide train` first")
    if not cfg.eval.suite:
        raise TrainingError("options.eval.suite is null — name the eval suite stage to evaluate on")
    from peft import PeftModel

    base, model, tok, device = _setup(pipe, cfg)
    saved = store.dir / (BEST if (store.dir / BEST).exists() else FINAL)
    model = PeftModel.from_pretrained(model, str(saved))  # the adapter's own LoRA shape, whatever the YAML says now
    records = list(input_store(pipe, cfg.eval.suite, False).accepted())
    lengths = (read_json(store.dir / "stats.json") or {}).get("lengths") or {}
    target = lengths.get("target") or {}
    report = evaluate_model(pipe, cfg, records, model, tok, device, base, store.dir, message=message,
                            fallback_targets=[target["max"]] if target.get("max") else None,
                            train_types=lengths.get("train_types"))
    write_report(store.write_json, store.write_bytes, report)
    return report
