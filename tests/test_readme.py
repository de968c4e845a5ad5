"""The README's commands are the ones CI runs, and the documented CLI exists."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from pocketguide.cli.main import app

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.+?)\n```", (REPO / "README.md").read_text())


def test_ci_runs_the_readme_test_command():
    test_command = readme_commands()[1]
    assert "pytest" in test_command
    ci_lines = [line.strip() for line in (REPO / ".ci/run").read_text().splitlines()]
    assert test_command.strip() in ci_lines


def test_documented_commands_exist():
    out = CliRunner().invoke(app, ["--help"]).output
    for command in re.findall(r"^\| `pocketguide ([a-z-]+)", (REPO / "README.md").read_text(), re.M):
        assert command in out, command
