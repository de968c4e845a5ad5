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


def test_data_dir_on_any_command_sends_outputs_elsewhere(tmp_path):
    p = hello(tmp_path)
    sample = tmp_path / "sample-run"
    assert invoke("--pipeline", p, "--data-dir", str(sample), "run-all").exit_code == 0
    assert (sample / "answers" / "records.jsonl").exists() and not (tmp_path / "hello/runs").exists()
    status = invoke("--pipeline", p, "--data-dir", str(sample), "status").output
    assert "answers" in status and "done" in status
    assert invoke("--pipeline", p, "--data-dir", str(sample), "inspect", "cards", "q1").exit_code == 0
    assert "not run" in invoke("--pipeline", p, "status").output  # the YAML's own data_dir is untouched


def test_clean_asks_and_removes_only_run_outputs(tmp_path):
    p = hello(tmp_path)
    assert invoke("--pipeline", p, "run-all").exit_code == 0
    runs = tmp_path / "hello/runs"
    (runs / "my-notes.txt").write_text("not pocketguide's")  # something the store did not make
    assert invoke("--pipeline", p, "clean", "--stage", "answers", "--yes").exit_code == 0
    assert not (runs / "answers").exists() and (runs / "cards").exists()
    kept = CliRunner().invoke(app, ["--pipeline", p, "clean"], input="n\n")
    assert kept.exit_code == 1 and (runs / "cards").exists()
    assert CliRunner().invoke(app, ["--pipeline", p, "clean"], input="y\n").exit_code == 0
    assert not (runs / "cards").exists() and (runs / "my-notes.txt").exists()
    assert (tmp_path / "hello/stages.yaml").exists() and (tmp_path / "hello/templates").exists()


def test_status_names_the_facet_values_a_stage_lost(tmp_path):
    from conftest import write_pipeline

    p = write_pipeline(tmp_path, """\
        pipeline: {name: lost, data_dir: runs}
        stages:
          - {name: plan, source: data/plan.jsonl, template: plan.j2, mode: copy, parser: json, facets: [kind]}
          - name: answers
            inputs: [plan]
            template: answer.j2
            mode: copy
            parser: json
            schema: data/answer.schema.json
            facets: [kind]
        """, templates={"plan.j2": '{"kind": {{ source.kind | tojson }}}', "answer.j2": '{{ input.parsed | tojson }}'},
        files={"data/plan.jsonl": "".join(f'{{"id": "r{i}", "kind": "{k}"}}\n' for i, k in enumerate("abcab")),
               "data/answer.schema.json": '{"type": "object", "properties": {"kind": {"enum": ["a", "b"]}}}'})
    assert invoke("-p", str(p), "run-all").exit_code == 0
    r = invoke("-p", str(p), "status")
    assert r.exit_code == 0 and "answers: missing kind: c" in r.output and "plan: missing" not in r.output
