"""`pocketguide train` and `pocketguide eval`: run the LoRA stage with flag overrides, or re-evaluate its adapter."""

from __future__ import annotations

import time
from typing import Any

import typer

from pocketguide.cli.app import _pipe, app, guarded
from pocketguide.cli.console import RichProgress


class TrainProgress(RichProgress):
    """The pipeline's bars plus one for optimizer steps: loss, tokens/s and ETA."""

    def train_step(self, stage: str, row: dict[str, Any]) -> None:
        key = f"{stage}:steps"
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(f"{stage} steps", total=row["total"], completed=0, rate="",
                                                     ok="", bad="", extra="")
            self.counts[key] = [0, 0, time.monotonic(), 0, 0.0]
        val = f" val {row['val_loss']:.3f}" if row.get("val_loss") is not None else ""
        self.progress.update(self.tasks[key], completed=row["step"], rate=f"{row['step_s']:.1f}s/step",
                             extra=f"loss {row['loss']:.3f}{val} {row['tokens_per_s']:.0f} tok/s "
                                   f"eta {row['eta_s']:.0f}s")


def _train_spec(pipe: Any, stage: str, overrides: dict[str, Any]) -> Any:
    from pocketguide.engine.errors import StageError
    from pocketguide.training.config import TrainConfig

    spec = pipe.stage(stage)
    if spec.op != "train":
        raise StageError(f"stage '{stage}' is not a train stage (op: {spec.op}) — pass --stage with the name of "
                         f"the stage that has `op: train`")
    opts = dict(spec.options)
    ev = dict(opts.get("eval") or {})
    for key, value in overrides.items():
        if value is None:
            continue
        if key.startswith("eval."):
            ev[key[5:]] = value
        else:
            opts[key] = value
    if ev:
        opts["eval"] = ev
    if overrides.get("max_steps") is None and overrides.get("epochs") is not None:
        opts["max_steps"] = None  # --epochs alone means "train by epochs"
    TrainConfig.model_validate(opts)  # a bad flag fails here, before any model loads
    return spec.model_copy(update={"options": opts})


@app.command()
@guarded
def train(stage: str = typer.Option("train", "--stage", help="the stage with `op: train`"),
          max_steps: int | None = typer.Option(None, "--max-steps", min=1, help="optimizer steps"),
          epochs: float | None = typer.Option(None, "--epochs", min=0.01, help="passes over the train split"),
          lr: float | None = typer.Option(None, "--lr", help="peak learning rate"),
          batch_tokens: int | None = typer.Option(None, "--batch-tokens", min=16, help="padded tokens per micro-batch"),
          batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="at most N records per micro-batch"),
          grad_accum: int | None = typer.Option(None, "--grad-accum", min=1, help="micro-batches per step"),
          max_seq_length: int | None = typer.Option(None, "--max-seq-length", min=16,
                                                    help="token cap per record (default: picked from the data)"),
          r: int | None = typer.Option(None, "--r", min=1, help="LoRA rank"),
          alpha: int | None = typer.Option(None, "--alpha", min=1, help="LoRA alpha"),
          seed: int | None = typer.Option(None, "--seed", help="data order, LoRA init, dropout"),
          device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda"),
          eval_limit: int | None = typer.Option(None, "--eval-limit", min=1, help="evaluate at most N prompts"),
          no_eval: bool = typer.Option(False, "--no-eval", help="train only; skip the before/after evaluation"),
          threads: int | None = typer.Option(None, "--threads", min=1, help="torch CPU threads (default: the "
                                                                             "cores this process may use)"),
          fresh: bool = typer.Option(False, "--fresh", help="move old checkpoints aside and start over")) -> None:
    """Train the LoRA student (resuming from the last checkpoint), then evaluate base vs fine-tuned."""
    from pocketguide.cli.main import _report
    from pocketguide.engine.runner import run_stage
    from pocketguide.engine.session import RunOptions

    pipe = _pipe()
    spec = _train_spec(pipe, stage, {
        "max_steps": max_steps, "epochs": epochs, "lr": lr, "batch_tokens": batch_tokens, "batch_size": batch_size,
        "grad_accum": grad_accum,
        "max_seq_length": max_seq_length, "r": r, "alpha": alpha, "seed": seed, "device": device,
        "eval.limit": eval_limit, "eval.suites": [] if no_eval else None})
    opts = RunOptions(fresh=fresh, settings={"threads": threads} if threads else {})

    with TrainProgress() as progress:
        opts.progress = progress
        result = run_stage(spec, pipe, options=opts)
    _report([result])
    _show_report(result.output_dir)


def _show_report(stage_dir: Any) -> None:
    from rich.markdown import Markdown

    from pocketguide.cli.console import out

    md = stage_dir / "eval_report.md"
    if md.exists():
        out.print(Markdown(md.read_text()))
        out.print(f"[dim]report: {stage_dir / 'eval_report.json'}; adapters: {stage_dir / 'adapter_best'}, "
                  f"{stage_dir / 'adapter_final'}; loss curve: {stage_dir / 'loss_curve.png'}[/]")


@app.command("eval")
@guarded
def eval_(stage: str = typer.Option("train", "--stage", help="the stage with `op: train`"),
          limit: int | None = typer.Option(None, "--limit", "-n", min=1, help="evaluate at most N prompts"),
          modes: str | None = typer.Option(None, "--modes", help="unconstrained,constrained"),
          models: str | None = typer.Option(None, "--models", help="base,tuned"),
          max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", min=1, help="generation cap (default: from the answers' lengths)"),
          adapter: str | None = typer.Option(None, "--adapter", help="best or final"),
          threads: int | None = typer.Option(None, "--threads", min=1, help="torch CPU threads")) -> None:
    """Evaluate the base model and the trained adapter on the eval suite; rewrite eval_report.json/.md."""
    from pocketguide.cli.console import console
    from pocketguide.training.config import TrainConfig
    from pocketguide.training.stage import evaluate_stage

    pipe = _pipe()
    spec = _train_spec(pipe, stage, {"eval.limit": limit, "eval.max_new_tokens": max_new_tokens,
                                     "eval.adapter": adapter,
                                     "eval.modes": modes.split(",") if modes else None,
                                     "eval.models": models.split(",") if models else None})
    cfg = TrainConfig.model_validate(spec.options)
    with console.status("evaluating…") as status:
        evaluate_stage(pipe, stage, cfg, message=lambda text: status.update(text), threads=threads)
    from pocketguide.engine.store import StageStore

    _show_report(StageStore(pipe.data_dir, stage).dir)
