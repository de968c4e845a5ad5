"""The executor choice (no cluster needed): `pipeline.executor` / `--executor` are checked at load time (a
missing ray extra names its install line), the local executor is the default and is recorded in every
manifest, and `pocketguide stages` says where each kind of stage runs under ray."""

from __future__ import annotations

import importlib.util
import json

import pytest
from typer.testing import CliRunner

from pocketguide import run_pipeline
from pocketguide.cli import app
from pocketguide.engine.errors import StagesConfigError
from pocketguide.engine.executors import Executor
from pocketguide.engine.loader import load_pipeline

HAVE_RAY = importlib.util.find_spec("ray") is not None

PIPELINE = """
pipeline:
  name: ex
  data_dir: runs
  teacher: {{provider: embedded, max_tokens: 8}}
{executor}
stages:
  - {{name: cards, source: data/in.jsonl, template: card.j2, mode: copy}}
  - {{name: local_answers, inputs: [cards], template: card.j2, mode: llm}}
  - name: api_answers
    inputs: [cards]
    template: card.j2
    mode: llm
    teacher: {{provider: openai, model: m, base_url: "http://127.0.0.1:9/v1"}}
  - {{name: qa, inputs: [cards], op: qa}}
"""
TEMPLATES = {"card.j2": "Card: {{ id }}"}
FILES = {"data/in.jsonl": '{"id": "a", "q": "x"}\n{"id": "b", "q": "y"}\n'}


def _project(pipeline_dir, executor: str = "") -> object:
    return pipeline_dir(PIPELINE.format(executor=executor), TEMPLATES, FILES)


def _hide_ray(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))


def test_executor_in_yaml_is_checked_with_did_you_mean_and_its_options(pipeline_dir):
    with pytest.raises(StagesConfigError) as err:
        load_pipeline(_project(pipeline_dir, "  executor: rey"))
    assert "pipeline.executor: unknown executor 'rey'" in str(err.value) and "Did you mean 'ray'?" in str(err.value)
    if HAVE_RAY:
        with pytest.raises(StagesConfigError) as err:
            load_pipeline(_project(pipeline_dir, "  executor: {name: ray, options: {actorz: 2}}"))
        assert "pipeline.executor.options.actorz: unknown option" in str(err.value)
        pipe = load_pipeline(_project(pipeline_dir, "  executor: ray"))
        assert pipe.spec.pipeline.executor.name == "ray" and pipe.spec.pipeline.executor.options == {}


def test_without_ray_the_yaml_and_the_flag_fail_at_load_time_with_the_install_line(pipeline_dir, monkeypatch):
    _hide_ray(monkeypatch)
    with pytest.raises(StagesConfigError) as err:
        load_pipeline(_project(pipeline_dir, "  executor: ray"))
    assert "executor 'ray' needs ray — install it with: python -m pip install 'pocketguide[ray]'" in str(err.value)
    path = _project(pipeline_dir)
    res = CliRunner().invoke(app, ["--pipeline", str(path), "run-all", "--executor", "ray"])
    assert res.exit_code == 2
    assert "python -m pip install 'pocketguide[ray]'" in res.output
    assert not (path.parent / "runs").exists()  # refused before any stage ran


def test_address_needs_an_executor_that_takes_one(pipeline_dir):
    path = _project(pipeline_dir)
    res = CliRunner().invoke(app, ["--pipeline", str(path), "run", "cards", "--address", "auto"])
    assert res.exit_code == 2 and "--address is for an executor that takes one (--executor ray)" in res.output


def test_local_is_the_default_and_every_manifest_says_so(pipeline_dir):
    path = pipeline_dir("""
    pipeline: {name: ex, data_dir: runs}
    stages:
      - {name: cards, source: data/in.jsonl, template: card.j2, mode: copy}
      - {name: qa, inputs: [cards], op: qa, options: {min_chars: 0, min_actions: 0, min_list_items: 0}}
    """, TEMPLATES, FILES)
    assert run_pipeline(path).ok
    for stage in ("cards", "qa"):
        manifest = json.loads((path.parent / "runs" / stage / "manifest.json").read_text())
        assert manifest["executor"] == {"name": "local"}
        assert "executor" not in json.loads((path.parent / "runs" / stage / "stats.json").read_text())


def test_the_local_map_is_fn_over_each_batch_in_order():
    assert list(Executor().map(lambda batch, k: [x * k for x in batch], iter([[1, 2], [3]]), 10)) == [[10, 20], [30]]


@pytest.mark.skipif(not HAVE_RAY, reason="the ray extra is not installed (pip install 'pocketguide[ray]')")
def test_stages_says_where_each_kind_of_stage_runs_under_ray(pipeline_dir):
    path = _project(pipeline_dir)
    res = CliRunner().invoke(app, ["--pipeline", str(path), "stages", "--executor", "ray"], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    rows = {line.split("│")[2].strip(): line.split("│")[-2].strip() for line in res.output.splitlines()
            if line.count("│") > 8 and line.split("│")[1].strip().isdigit()}
    assert rows == {"cards": "driver", "local_answers": "Ray actors", "api_answers": "driver (API loop)",
                    "qa": "driver + Ray tasks"}
    api = CliRunner().invoke(app, ["--pipeline", str(path), "stages", "--executor", "ray", "--teacher", "openai",
                                   "--model", "m"], env={"COLUMNS": "300"})
    assert "Ray actors" not in api.output  # this run's teacher is an API: every teacher stage stays on the driver
    local = CliRunner().invoke(app, ["--pipeline", str(path), "stages"], env={"COLUMNS": "300"})
    words = " ".join(local.output.split())
    assert "executor local" in words and "runs on" not in words  # one process runs everything: no column
