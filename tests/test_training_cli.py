"""`pocketguide train` / `pocketguide eval`: flags override TrainConfig, errors say what to do, and a
one-step CLI run followed by a CLI re-evaluation writes the adapter and the report."""

from __future__ import annotations

import json

from training_helpers import base_cache_dir, options, write_project
from typer.testing import CliRunner

from pocketguide.cli.main import app

runner = CliRunner()


def test_train_help_lists_the_hyperparameter_flags():
    res = runner.invoke(app, ["train", "--help"])
    assert res.exit_code == 0
    for flag in ("--max-steps", "--lr", "--epochs", "--batch-size", "--max-seq-length", "--no-eval"):
        assert flag in res.output


def test_bad_flags_and_wrong_stage_fail_before_any_model_loads(tmp_path):
    path = write_project(tmp_path / "p", options(tmp_path / "no-models-here"))
    res = runner.invoke(app, ["--pipeline", str(path), "train", "--lr", "-1"])
    assert res.exit_code == 2 and "greater than 0" in res.output
    res = runner.invoke(app, ["--pipeline", str(path), "train", "--stage", "sft"])
    assert res.exit_code == 2 and "not a train stage" in res.output
    res = runner.invoke(app, ["--pipeline", str(path), "eval"])
    assert res.exit_code == 2 and "run `pocketguide train` first" in res.output
    assert not (tmp_path / "no-models-here").exists()


def test_cli_train_then_eval(tmp_path_factory, tmp_path):
    from pocketguide.engine.runner import run_stage

    cache = base_cache_dir(tmp_path_factory)
    path = write_project(tmp_path / "p", options(cache))
    run_stage("sft", str(path))
    run_stage("eval_suite", str(path))
    res = runner.invoke(app, ["--pipeline", str(path), "train", "--max-steps", "2", "--lr", "0.002", "--no-eval"])
    assert res.exit_code == 0, res.output
    stage = tmp_path / "p/runs/train"
    meta = json.loads((stage / "adapter_final/training_config.json").read_text())
    assert meta["config"]["max_steps"] == 2 and meta["config"]["lr"] == 0.002  # flags won over the YAML
    assert meta["config"]["eval"]["suites"] == [] and not (stage / "eval_report.json").exists()
    res = runner.invoke(app, ["--pipeline", str(path), "eval", "--limit", "2", "--modes", "unconstrained",
                              "--max-new-tokens", "4"])
    assert res.exit_code == 0, res.output
    report = json.loads((stage / "eval_report.json").read_text())
    assert report["n_examples"] == 2 and report["modes"] == ["unconstrained"]
    assert {r["model"] for r in report["examples"]} == {"base", "tuned"}
    assert all(r["new_tokens"] <= 4 for r in report["examples"])
    assert "Student evaluation" in (stage / "eval_report.md").read_text()
