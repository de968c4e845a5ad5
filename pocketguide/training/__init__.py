"""LoRA SFT of the student and its before/after evaluation.

Importing this package is cheap (no torch); the heavy modules (`model`, `data`, `trainer`,
`evaluate`, `stage`) import torch/transformers/peft themselves, only when a stage runs.
"""

from .config import EvalConfig, TrainConfig

__all__ = ["EvalConfig", "TrainConfig"]
