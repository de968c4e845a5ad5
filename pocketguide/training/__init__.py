"""LoRA SFT of the student and its before/after evaluation.

Importing this package is cheap (no torch); the heavy modules (`model`, `data`, `trainer`,
`evaluate`, `stage`) import torch/transformers/peft themselves, only when a stage runs.
"""

from pocketguide.training.config import EvalConfig, TrainConfig

__all__ = ["EvalConfig", "TrainConfig"]

from pocketguide.training import op  # noqa: E402,F401  (registers op train; torch loads when it runs)
