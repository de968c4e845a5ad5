"""Threads come from the cores this process may use (its CPU affinity), not from the load average, and
--threads overrides them for the embedded teacher and for training alike."""

from __future__ import annotations

import os

from pocketguide.cli.app import _options
from pocketguide.cli.console import threads_line
from pocketguide.engine.runner import StageResult
from pocketguide.teachers.embedded import default_threads
from pocketguide.training.model import cpu_threads


def test_default_threads_are_the_affinity_cores_whatever_the_load(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (7.0, 7.0, 7.0), raising=False)  # a busy minute before
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert default_threads() == 2 and cpu_threads(None) == 2
    assert cpu_threads(1) == 1


def test_threads_flag_reaches_teacher_and_trainer_and_the_summary_names_them(tmp_path):
    opts = _options(None, False, False, None, None, None, None, threads=1)
    assert opts.teacher.threads == 1 and opts.settings["threads"] == 1
    draft = StageResult("draft", tmp_path, teacher={"threads": 2, "model": "SmolLM2.gguf"})
    train = StageResult("train", tmp_path, stats={"training": {"threads": 2}})
    line = threads_line([draft, StageResult("qa", tmp_path), train])
    assert line.startswith("threads: draft: llama.cpp 2 (SmolLM2.gguf); train: torch 2")
    assert "--threads N overrides" in line
