"""The CLI as a user runs it (Typer's CliRunner over the shipped hello example)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from pocketguide.cli.main import app

REPO = Path(__file__).resolve().parents[1]


def hello(tmp_path):
    shutil.copytree(REPO / "examples/hello", tmp_path / "hello", ignore=shutil.ignore_patterns("runs"))
    return str(tmp_path / "hello" / "stages.yaml")


def invoke(*args):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_stages_run_all_status_inspect_export(tmp_path):
    p = hello(tmp_path)
    r = invoke("-p", p, "stages")
    assert r.exit_code == 0 and "stages.yaml is valid" in r.output and "cards" in r.output
    r = invoke("-p", p, "run-all")
    assert r.exit_code == 0, r.output
    assert "run summary" in r.output
    r = invoke("-p", p, "status")
    assert r.exit_code == 0 and r.output.count("done") == 2
    r = invoke("-p", p, "inspect", "cards", "q5", "--json")
    rec = json.loads(r.output)
    assert rec["status"] == "rejected" and rec["reasons"] == ["schema_invalid"]
    r = invoke("-p", p, "inspect", "cards", "q1")
    assert r.exit_code == 0 and "accepted" in r.output and "gate length: pass" in r.output
    r = invoke("-p", p, "export", "answers", "--format", "jsonl")
    assert r.exit_code == 0
    exported = (tmp_path / "hello/runs/exports/answers.jsonl").read_text().splitlines()
    assert len(exported) == 5


def test_errors_are_one_clear_line_and_nonzero(tmp_path):
    p = hello(tmp_path)
    r = invoke("-p", p, "run", "answrs")
    assert r.exit_code == 2
    assert "unknown stage 'answrs'" in r.output and "Did you mean 'answers'?" in r.output
    assert "Traceback" not in r.output
    r = invoke("-p", p, "run", "answers")
    assert r.exit_code == 2 and "run `pocketguide run cards` first" in r.output
    r = invoke("-p", p, "inspect", "cards", "nope")
    assert r.exit_code == 2 and "no record 'nope'" in r.output


def test_dry_run_says_so(tmp_path):
    p = hello(tmp_path)
    r = invoke("-p", p, "run", "cards", "--dry-run")
    assert r.exit_code == 0 and "DRY RUN" in r.output
    assert (tmp_path / "hello/runs/dry-run/cards/manifest.json").exists()
    assert not (tmp_path / "hello/runs/cards").exists()
