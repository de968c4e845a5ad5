"""`op: train`: LoRA SFT of the student on the sft stage's records, then the before/after evaluation.
Options are `pocketguide.training.TrainConfig`; torch and friends load only when the stage runs."""

from __future__ import annotations

from pocketguide.engine.registry import operation, report_section
from pocketguide.training.config import TrainConfig


# No `requires=`: without the train extra the stage reports a skip naming the install line instead of
# refusing the whole pipeline at load time, since every stage before it is useful without torch.
@operation("train", options=TrainConfig,
           description="LoRA SFT of the student on SFT records; base vs fine-tuned eval on the eval suite")
def train_op(ctx, cfg: TrainConfig) -> None:
    from pocketguide.training.stage import run_train_stage

    run_train_stage(ctx, cfg)


@report_section("train")
def train_report_section(pipe, spec, store_of):
    """Loss curve, base vs fine-tuned and side-by-side generations in `pocketguide report`."""
    from pocketguide.training.view import training_section

    return training_section(pipe, spec, store_of)
