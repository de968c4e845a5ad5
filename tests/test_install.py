"""A user's install, not a checkout: `pip install .` (not editable) into a fresh venv, then in an empty
folder outside the repository the base install runs the hello pipeline, refuses what needs an extra
with the install line, and with the dataset extra `init pocketguide` + `run-all --dry-run` works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.slow
def test_a_wheel_install_runs_outside_the_repository(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py, cli = venv / "bin" / "python", venv / "bin" / "pocketguide"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1")
    pip = _run([str(py), "-m", "pip", "install", "-q", str(REPO)], tmp_path, env)
    assert pip.returncode == 0, pip.stderr[-2000:]

    # the installed package, not the checkout, is what runs
    where = _run([str(py), "-c", "import pocketguide, sys; print(pocketguide.__file__)"], tmp_path, env)
    assert str(venv) in where.stdout and str(REPO) not in where.stdout

    # base install (no extras): the hello pipeline, every everyday command
    hello = tmp_path / "work" / "hello"
    hello.mkdir(parents=True)
    for args in (["init", "hello"], ["stages"], ["run-all"], ["status"], ["inspect", "cards", "q1"],
                 ["run", "answers"]):
        out = _run([str(cli), *args], hello, env)
        assert out.returncode == 0, f"{args}: {out.stdout}{out.stderr}"
    accepted = (hello / "runs" / "answers" / "records.jsonl").read_text().splitlines()
    assert len(accepted) == 5 and json.loads(accepted[0])["status"] == "accepted"

    # the PocketGuide project loads only with its extra, and says which
    pg = tmp_path / "work" / "pg"
    pg.mkdir()
    assert _run([str(cli), "init", "pocketguide"], pg, env).returncode == 0
    assert not (pg / "data" / "runs").exists() and (pg / "data" / "schemas" / "envelope.v0.json").is_file()
    refused = _run([str(cli), "stages"], pg, env)
    assert refused.returncode == 2
    assert "qa.op: operation 'qa' needs numpy, datasketch — install it with: python -m pip install " \
           "'pocketguide[dataset]'" in refused.stdout + refused.stderr

    pip = _run([str(py), "-m", "pip", "install", "-q", f"{REPO}[dataset]"], tmp_path, env)
    assert pip.returncode == 0, pip.stderr[-2000:]
    dry = _run([str(cli), "run-all", "--dry-run", "--limit", "4"], pg, env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "DRY RUN" in dry.stdout
    plan = (pg / "data" / "runs" / "dry-run" / "plan" / "records.jsonl").read_text().splitlines()
    drafts = (pg / "data" / "runs" / "dry-run" / "draft" / "records.jsonl").read_text().splitlines()
    assert len(plan) == 4 and len(drafts) == 4 and json.loads(drafts[0])["dry_run"] is True
