"""`pocketguide report` from the command line, and the run summary read in an 80-column terminal."""

from __future__ import annotations

import io
import json

import pytest
from report_helpers import make_run, reply, write_project
from rich.console import Console
from typer.testing import CliRunner

from pocketguide.cli.console import summary_notes, summary_table
from pocketguide.cli.main import app
from pocketguide.engine.loader import load_pipeline
from pocketguide.engine.runner import StageResult
from pocketguide.report.html import default_out_dir


def test_report_command_writes_one_page_and_can_open_it(tmp_path, monkeypatch):
    path = make_run(tmp_path / "proj")
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
    res = CliRunner().invoke(app, ["--pipeline", str(path), "report", "--open"])
    assert res.exit_code == 0, res.output
    page = tmp_path / "proj" / "runs" / "report" / "index.html"
    assert f"report: {page} (2 stages, 11 records)" in res.output
    assert opened == [page.as_uri()] and page.read_text().startswith("<!doctype html>")
    assert not (tmp_path / "proj" / "runs" / "report" / "scores").exists(), "no judge stage, no score tables"

    res = CliRunner().invoke(app, ["--pipeline", str(path), "report", "--out", str(tmp_path / "small"),
                                   "--max-records", "4"])
    assert res.exit_code == 0, res.output
    assert "a sample of 4 of 11 records" in res.output
    data = (tmp_path / "small" / "index.html").read_text()
    assert '"sampled":true' in data


def test_no_stage_may_take_the_report_folder(tmp_path):
    from pocketguide.engine.errors import StagesConfigError

    path = write_project(tmp_path / "proj")
    path.write_text(path.read_text().replace("name: answers", "name: report"))
    with pytest.raises(StagesConfigError, match="'report' is a name the store uses under data_dir"):
        load_pipeline(path)
    assert default_out_dir(load_pipeline(make_run(tmp_path / "ok"))) == tmp_path / "ok" / "runs" / "report"


def _result(stage: str, reasons: dict[str, int], **kw) -> StageResult:
    r = StageResult(stage, output_dir=None, new_accepted=120, new_rejected=sum(reasons.values()), accepted=1200,
                    rejected=sum(reasons.values()), complete=True, elapsed_s=123.4, **kw)
    r.stats = {"rejection_reasons": reasons}
    return r


def test_run_summary_fits_80_columns_and_lists_reasons_whole():
    long = {"gate:critique_consistent:rewrite_instructions_missing": 812, "gate:verification_when_needed:"
            "missing_verification_steps": 40, "json_parse_failed": 9, "truncated": 2, "teacher_error:rate_limit": 1}
    results = [_result("plan", {}), _result("draft", {"json_parse_failed": 3}), _result("critique", long),
               _result("refine", {"critique_reject": 7}, stopped="budget: --max-requests 100 reached"),
               _result("train", {}, note="skipped: no training records (data.split == 'train') in stage 'sft'")]
    buf = io.StringIO()
    console = Console(file=buf, width=80, color_system=None)
    console.print(summary_table(results))
    for line in summary_notes(results):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    text = buf.getvalue()
    table = text.split("top rejection reasons:")[0]
    assert max(len(line) for line in table.splitlines()) <= 80
    assert "critique" in table and "stopped" in table and "skipped" in table and "gate:" not in table
    lines = text.splitlines()
    assert "  critique: gate:critique_consistent:rewrite_instructions_missing × 812" in lines
    assert "  critique: gate:verification_when_needed:missing_verification_steps × 40" in lines
    assert "  critique: … 2 more reasons (3 in all); `pocketguide report` lists them" in lines
    assert "  draft: json_parse_failed × 3" in lines and "  refine: critique_reject × 7" in lines
    assert "train: skipped: no training records (data.split == 'train') in stage 'sft'" in lines


def test_run_all_prints_the_narrow_summary(tmp_path, fake_openai, monkeypatch):
    path = write_project(tmp_path / "proj")
    fake_openai(reply)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-loopback-only")
    res = CliRunner().invoke(app, ["--pipeline", str(path), "run-all", "--teacher", "openai", "--model", "fake"],
                             env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert "run summary" in res.output and "  questions: gate:length:too_short × 1" in res.output
    assert "  answers: parse_failed × 1" in res.output and "  answers: truncated × 1" in res.output
    table = res.output.split("top rejection reasons:")[0]
    assert max(len(line) for line in table.splitlines()) <= 80, table
    stats = json.loads((tmp_path / "proj" / "runs" / "answers" / "stats.json").read_text())
    assert stats["rejection_reasons"] == {"parse_failed": 1, "truncated": 1}
