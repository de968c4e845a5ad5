"""A plain torch loop with LoRA (peft): seeded batches, warmup + cosine, best-on-val and final adapters,
resumable checkpoints, a metrics JSONL and a loss-curve PNG. CPU fp32 or CUDA bf16, one code path."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import resource
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pocketguide.engine.store import atomic_write_bytes, atomic_write_json, dumps_line, iter_jsonl
from pocketguide.training.config import TrainConfig
from pocketguide.training.data import Example
from pocketguide.training.lengths import plan_steps
from pocketguide.training.loss import PATHS, lean_backward, lean_val_sums, path_for

logger = logging.getLogger("pocketguide.training")
CKPT_DIR = "checkpoints"
BEST, FINAL = "adapter_best", "adapter_final"
METRICS = "metrics.jsonl"


@dataclass
class TrainResult:
    steps: int
    total_steps: int
    resumed_from: int
    best_step: int | None
    best_val_loss: float | None
    first_loss: float | None
    last_loss: float | None
    final_val_loss: float | None
    mean_step_s: float | None
    tokens_per_s: float | None
    peak_rss_mb: float
    history: list[dict[str, Any]] = field(default_factory=list)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def schedule(cfg: TrainConfig, train_set: list[Example]) -> list[list[list[int]]]:
    """Every optimizer step's micro-batches (record indices): a pure function of the config and the records."""
    return plan_steps([len(e.input_ids) for e in train_set], cfg.batch_tokens, cfg.batch_size, cfg.seed,
                      cfg.grad_accum, cfg.max_steps, cfg.epochs)


def fingerprint(cfg: TrainConfig, base_sha: str, data_sha: str) -> str:
    """What a checkpoint must match to be resumed: hyperparameters, base weights, training data."""
    blob = json.dumps({"hp": cfg.hyperparameters(), "base": base_sha, "data": data_sha}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    """Linear warmup, then cosine decay to 10% of the peak (step counts from 0)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / (cfg.warmup_steps + 1)
    span = max(1, total - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def add_lora(model: Any, cfg: TrainConfig) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(cfg.seed)  # LoRA A matrices are random: same seed, same init
    lcfg = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=list(cfg.target_modules),
                      bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, lcfg)


def save_adapter(model: Any, target: Path, meta: dict[str, Any]) -> None:
    """Write into a temp folder, then swap it in: a crash leaves the old adapter or the new one."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    atomic_write_json(tmp / "training_config.json", meta)
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def val_batches(cfg: TrainConfig, val: list[Example]) -> list[list[Example]]:
    """The val split once, in order, in micro-batches of the training budget."""
    out, batch, width = [], [], 0
    for e in val:
        w = max(width, len(e.input_ids))
        if batch and ((cfg.batch_size and len(batch) >= cfg.batch_size) or
                      (cfg.batch_tokens and w * (len(batch) + 1) > cfg.batch_tokens)):
            out.append(batch)
            batch, w = [], len(e.input_ids)
        batch.append(e)
        width = w
    return out + ([batch] if batch else [])


def val_loss(model: Any, val: list[Example], cfg: TrainConfig, pad_id: int, device: Any,
             sums: Callable[..., tuple[float, int]] = lean_val_sums) -> float | None:
    """Mean loss per target token over the whole val split (not a mean of batch means)."""
    import torch

    if not val:
        return None
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for group in val_batches(cfg, val):
            s, n = sums(model, group, pad_id, device)
            total += s
            count += n
    model.train()
    return total / max(1, count)


class Checkpoints:
    """checkpoints/step-N/ (adapter + optimizer state) and latest.json naming the newest whole one."""

    def __init__(self, root: Path, fp: str):
        self.root, self.fp = root / CKPT_DIR, fp

    def latest(self) -> dict[str, Any] | None:
        p = self.root / "latest.json"
        if not p.exists():
            return None
        info = json.loads(p.read_text())
        if info.get("fingerprint") != self.fp or not (self.root / info["dir"]).exists():
            return None  # other data or settings: start over rather than resume something else
        return info

    def save(self, model: Any, optimizer: Any, step: int, state: dict[str, Any]) -> None:
        import torch

        name = f"step-{step:06d}"
        d = self.root / name
        shutil.rmtree(d, ignore_errors=True)
        model.save_pretrained(str(d))
        torch.save({"optimizer": optimizer.state_dict(), **state}, d / "trainer_state.pt")
        atomic_write_json(self.root / "latest.json", {"step": step, "dir": name, "fingerprint": self.fp})
        for old in self.root.glob("step-*"):  # keep only the newest
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)

    def restore(self, model: Any, optimizer: Any, info: dict[str, Any]) -> dict[str, Any]:
        import torch
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        d = self.root / info["dir"]
        set_peft_model_state_dict(model, load_file(str(d / "adapter_model.safetensors")))
        state = torch.load(d / "trainer_state.pt", weights_only=False)
        optimizer.load_state_dict(state.pop("optimizer"))
        return state


def _metrics_log(out_dir: Path, keep_until: int) -> Any:
    """Open metrics.jsonl for appending, first dropping lines past the step we resume from."""
    path = out_dir / METRICS
    kept = [r for r in iter_jsonl(path) if r.get("step", 0) <= keep_until]
    atomic_write_bytes(path, b"".join(dumps_line(r) for r in kept))
    return open(path, "ab")


def train(model: Any, tok: Any, cfg: TrainConfig, train_set: list[Example], val_set: list[Example], out_dir: Path,
          device: Any, fp: str, meta: dict[str, Any], on_step: Callable[[dict[str, Any]], None] | None = None,
          stop_after: int | None = None) -> TrainResult:
    """Train `model` (already wrapped by add_lora) and write adapters, checkpoints and metrics into out_dir.
    `stop_after` ends the loop early without the final save (tests use it to simulate a crash)."""
    import torch

    plan = schedule(cfg, train_set)
    total = len(plan)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    ck = Checkpoints(out_dir, fp)
    info = ck.latest()
    state: dict[str, Any] = {"step": 0, "best_val": None, "best_step": None, "history": []}
    if info:
        state = ck.restore(model, optimizer, info)
    start = state["step"]
    log = _metrics_log(out_dir, start)
    pad = tok.pad_token_id
    path, why = path_for(model)  # the lean loss where the model allows it (loss.py)
    if why:
        logger.info("training with the full-logits loss: %s", why)
    backward, sums = PATHS[path]
    model.train()
    step_times: list[float] = []
    tok_rates: list[float] = []
    try:
        for step in range(start, total):
            if stop_after is not None and step >= stop_after:
                return _result(state, total, start, step_times, tok_rates)
            t0 = time.perf_counter()
            lr = lr_at(cfg, step, total)
            batches = [[train_set[i] for i in micro] for micro in plan[step]]
            loss_sum, tokens = _optimizer_step(model, optimizer, params, cfg, batches, pad, device, step, lr,
                                               backward)
            dt = time.perf_counter() - t0
            step_times.append(dt)
            tok_rates.append(tokens / dt)
            row = {"step": step + 1, "loss": round(loss_sum, 5), "lr": lr, "tokens": tokens,
                   "step_s": round(dt, 3), "tokens_per_s": round(tokens / dt, 1), "peak_rss_mb": round(peak_rss_mb())}
            done = step + 1
            if done % cfg.eval_every == 0 or done == total:
                row["val_loss"] = val_loss(model, val_set, cfg, pad, device, sums)
                better = row["val_loss"] is not None and (state["best_val"] is None or row["val_loss"] < state["best_val"])
                if better or (row["val_loss"] is None and done == total):
                    state["best_val"], state["best_step"] = row["val_loss"], done
                    save_adapter(model, out_dir / BEST, {**meta, "step": done, "val_loss": row["val_loss"]})
            state["history"].append(row)
            state["step"] = done
            log.write(dumps_line(row))
            log.flush()
            if done % cfg.save_every == 0 or done == total:
                ck.save(model, optimizer, done, state)
            if on_step:
                on_step({**row, "total": total, "eta_s": (total - done) * (sum(step_times) / len(step_times))})
    finally:
        log.close()
    if start < total or not (out_dir / FINAL).exists():
        save_adapter(model, out_dir / FINAL, {**meta, "step": total})
    return _result(state, total, start, step_times, tok_rates)


def _optimizer_step(model: Any, optimizer: Any, params: list[Any], cfg: TrainConfig, batches: list[list[Example]],
                    pad: int, device: Any, step: int, lr: float,
                    backward: Callable[..., tuple[float, int]] = lean_backward) -> tuple[float, int]:
    """Backward over the step's micro-batches (gradients accumulate), clip, step. The loss is the mean over
    every target token of the step, so a micro-batch counts by its target tokens, not as an equal share;
    `backward` (loss.py) computes each micro-batch's loss, lean by default (a sequence at a time, target rows
    only, chunked). Returns (that loss, tokens seen)."""
    import torch

    torch.manual_seed(cfg.seed * 7919 + step)  # dropout noise is a function of the step: resumable
    for g in optimizer.param_groups:
        g["lr"] = lr
    n_target = sum(e.n_target for group in batches for e in group)
    loss_sum, tokens = 0.0, 0
    for group in batches:
        share = sum(e.n_target for e in group) / max(1, n_target)
        loss, n = backward(model, group, pad, device, share)
        loss_sum += loss * share
        tokens += n
    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum, tokens


def _result(state: dict[str, Any], total: int, start: int, step_times: list[float], rates: list[float]) -> TrainResult:
    hist = state["history"]
    vals = [r["val_loss"] for r in hist if r.get("val_loss") is not None]
    return TrainResult(
        steps=state["step"], total_steps=total, resumed_from=start, best_step=state["best_step"],
        best_val_loss=state["best_val"], first_loss=hist[0]["loss"] if hist else None,
        last_loss=hist[-1]["loss"] if hist else None, final_val_loss=vals[-1] if vals else None,
        mean_step_s=round(sum(step_times) / len(step_times), 3) if step_times else None,
        tokens_per_s=round(sum(rates) / len(rates), 1) if rates else None, peak_rss_mb=round(peak_rss_mb()),
        history=hist)


def loss_curve_png(history: list[dict[str, Any]]) -> bytes:
    """Train loss per step and val loss where measured, as PNG bytes (matplotlib, no display)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([r["step"] for r in history], [r["loss"] for r in history], label="train loss")
    val = [(r["step"], r["val_loss"]) for r in history if r.get("val_loss") is not None]
    if val:
        ax.plot(*zip(*val), "o-", label="val loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (per target token)")
    ax.legend()
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
