"""The `train` stage end to end: SFT records → tokenized examples → LoRA training → before/after eval.
Also the library side of `pocketguide eval` (evaluate a saved adapter without training)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pocketguide.engine.store import StageStore, file_sha256
from pocketguide.engine.version import __version__
from pocketguide.training.config import TrainConfig
from pocketguide.training.data import BadRecord, Example, encode
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
    train_set, val_set = _examples(ctx, cfg, tok)
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
    summary = {k: v for k, v in res.__dict__.items() if k != "history"}
    summary.update(n_train=len(train_set), n_val=len(val_set), device=str(device))
    ctx.stats_extra["training"] = summary
    inputs = {n: file_sha256(ctx.input_store(n).records_path) for n in ctx.stage.inputs}
    ctx.manifest_extra["training"] = {
        "base_model": meta["base_model"], "data_sha256": {"examples": data_sha, "inputs": inputs},
        "metrics": summary, "config": meta["config"], "adapters": {"best": BEST, "final": FINAL},
        "fingerprint": fp}
    suite = list(ctx.records(_suite_input(ctx, cfg))) if cfg.eval.suite else []
    if cfg.eval.suite and not suite:
        note = f"evaluation skipped: the eval suite '{cfg.eval.suite}' is empty (no test-split records)"
        ctx.note = note
        ctx.stats_extra["eval"] = {"skipped": note}
        ctx.manifest_extra["eval"] = {"skipped": note}
    if suite:
        report = evaluate_model(ctx.pipe, cfg, suite, model, tok, device, base, ctx.dir, message=ctx.message)
        write_report(ctx.write_json, ctx.write_bytes, report)
        ctx.stats_extra["eval"] = {"gain_points": report["gain_points"],
                                   "summary": {m: {k: {x: y for x, y in v.items() if x != "by_payload_type"}
                                                   for k, v in modes.items()} for m, modes in report["summary"].items()}}
        ctx.manifest_extra["eval"] = {"report": "eval_report.json", "gain_points": report["gain_points"]}


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
                   base: Any, stage_dir: Path, message: Callable[[str], None] | None = None) -> dict[str, Any]:
    """`model` is a peft model; the base answers with the adapter disabled, the student with the chosen one."""
    from pocketguide.training.evaluate import Generator, Schemas, evaluate, suite_items

    ecfg = cfg.eval
    modes, notes = list(ecfg.modes), []
    if "constrained" in modes and importlib.util.find_spec("xgrammar") is None:
        modes.remove("constrained")  # report it, rather than lose the training run's evaluation
        notes.append("constrained mode skipped: xgrammar is not installed — pip install --no-deps xgrammar==0.2.8 "
                     "apache-tvm-ffi==0.1.15.post2")
    items, bad = suite_items(suite_records, ecfg.system_prompt)
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
    gen = Generator(model, tok, device, ecfg.max_new_tokens)
    contexts = {"base": model.disable_adapter, "tuned": contextlib.nullcontext}
    rows = evaluate({m: contexts[m] for m in ecfg.models}, gen, items, schemas, modes, ecfg.batch_size,
                    list(ecfg.gates), on_batch=message)
    summary = summarize(rows)
    notes += [f"suite record {r.get('id')} skipped: {code}" for r, code, _ in bad]
    if "constrained" in modes:
        notes.append("constrained = xgrammar JSON-schema grammar (envelope with the expected payload type's schema), "
                     "compact whitespace")
    return {"n_examples": len(items), "max_new_tokens": ecfg.max_new_tokens, "batch_size": ecfg.batch_size,
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
    report = evaluate_model(pipe, cfg, records, model, tok, device, base, store.dir, message=message)
    write_report(store.write_json, store.write_bytes, report)
    return report
