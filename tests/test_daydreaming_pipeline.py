"""The example study end to end against the loopback OpenAI-compatible server: counts, copy essays
with no teacher call, ids stable across runs, staleness after --fresh, gens export and reports."""

from __future__ import annotations

import itertools
import json
import sys

from daydreaming_helpers import copy_example, judge_reply
from typer.testing import CliRunner

from pocketguide.cli.main import app
from pocketguide.engine.loader import load_pipeline
from pocketguide.engine.pipeline import pipeline_status, run_pipeline
from pocketguide.engine.registry import EXPORTERS
from pocketguide.engine.runner import run_stage
from pocketguide.engine.session import RunOptions
from pocketguide.engine.store import StageStore, iter_jsonl
from pocketguide.engine.teacher_spec import TeacherSettings
from pocketguide.pipelines.daydreaming.scores import build_score_report, score_chart, write_score_report
from pocketguide.testing import Reply

LOOPBACK = TeacherSettings(provider="openai", model="fake-teacher")


def _ids(pipe, stage):
    return sorted(r["id"] for r in StageStore(pipe.data_dir, stage).all_records())


def _by_stage(server):
    kinds = {"draft": 0, "essay": 0, "evaluation": 0}
    for p in server.prompts():
        kinds["evaluation" if "SCORE: <number" in p else "essay" if "Rewrite them" in p else "draft"] += 1
    return kinds


def test_end_to_end_counts_and_copy_essays(tmp_path, fake_openai):
    server = fake_openai(judge_reply)
    pipe = load_pipeline(copy_example(tmp_path))
    result = run_pipeline(pipe, options=RunOptions(cache=False, limit=2, teacher=LOOPBACK))
    assert result.ok, result.stopped
    counts = {r.stage: (r.accepted, r.rejected) for r in result.stages}
    # 2 combos × 2 draft templates × 1 model; × 2 essay templates (1 llm + 1 copy, the copy is not
    # multiplied by models); × 3 rubrics × 2 judges × 2 replicates
    assert counts == {"combos": (2, 0), "membership": (108, 0), "draft": (4, 0), "essay": (8, 0), "evaluation": (96, 0),
                      "scores": (96, 0)}
    # copy essays made no teacher call: 4 drafts + 4 llm essays + 96 evaluations
    assert _by_stage(server) == {"draft": 4, "essay": 4, "evaluation": 96}
    assert len(server.requests) == 104
    essays = list(StageStore(pipe.data_dir, "essay").accepted())
    drafts = {r["id"]: r for r in StageStore(pipe.data_dir, "draft").accepted()}
    for e in essays:
        if e["template"] == "copy_draft":
            assert e["parsed"] == drafts[e["parent_ids"][0]]["parsed"] and e["teacher"] is None
            assert "model" not in e["variant"]
        else:
            assert e["variant"]["model"] == "smollm2-135m" and e["id"].startswith("essay_")
    # the judge model from the cohort is the model sent, per variant
    assert {r["model"] for r in server.requests if "SCORE: <number" in r["messages"][-1]["content"]} == \
        {"smollm2-135m", "judge-b"}
    scores = [r["parsed"] for r in StageStore(pipe.data_dir, "evaluation").accepted()]
    assert all(3 <= s <= 9 for s in scores) and len(set(scores)) > 1
    report_dir = pipe.data_dir / "scores"
    pivot = (report_dir / "pivot.csv").read_text().splitlines()
    assert len(pivot) == 1 + 2 * 3  # header + judges × rubrics
    assert (report_dir / "scores.png").read_bytes()[:4] == b"\x89PNG"


def test_rerun_is_idempotent_and_fresh_draft_makes_downstream_stale(tmp_path, fake_openai):
    server = fake_openai(judge_reply)
    path = copy_example(tmp_path)
    pipe = load_pipeline(path)
    opts = RunOptions(cache=False, limit=1, teacher=LOOPBACK)
    run_pipeline(pipe, options=opts)
    first = {s: _ids(pipe, s) for s in ("draft", "essay", "evaluation")}
    n = len(server.requests)
    run_pipeline(load_pipeline(path), options=RunOptions(cache=False, limit=1, teacher=LOOPBACK))
    assert len(server.requests) == n, "a rerun with nothing changed calls no teacher"
    assert all(not s.stale for s in pipeline_status(pipe, teacher=LOOPBACK))
    # the spec's own teacher (embedded) did not make these records: a plain run would regenerate them
    plain = {s.name: s for s in pipeline_status(pipe)}
    assert plain["draft"].stale and plain["draft"].reasons[0].startswith("teacher endpoint changed: ")

    run_stage("draft", pipe, options=RunOptions(cache=False, fresh=True, teacher=LOOPBACK))
    states = {s.name: s for s in pipeline_status(pipe, teacher=LOOPBACK)}
    assert not states["draft"].stale
    assert states["essay"].stale and states["essay"].stale_inputs == ["draft"]
    assert states["evaluation"].stale and states["scores"].stale
    status = CliRunner().invoke(app, ["--pipeline", str(path), "status", "--teacher", "openai", "--model",
                                      "fake-teacher"], env={"COLUMNS": "200"})
    assert status.exit_code == 0 and status.output.count("stale") >= 3 and "draft changed" in status.output

    n = len(server.requests)
    result = run_pipeline(load_pipeline(path), options=RunOptions(cache=False, limit=1, teacher=LOOPBACK))
    by = {r.stage: r for r in result.stages}
    # the 4 essays read a changed draft; the 2 copied ones come out the same (only their bookkeeping differs),
    # so only the 24 evaluations of the 2 regenerated llm essays are redone
    assert by["essay"].superseded == 4 and by["evaluation"].superseded == 24
    assert len(server.requests) - n == 2 + 24
    redone = {r["parent_ids"][0] for r in StageStore(pipe.data_dir, "evaluation").all_records()
              if r["id"] in {x["id"] for x in iter_jsonl(pipe.data_dir / "evaluation" / "superseded.jsonl")}}
    llm_essays = {r["id"] for r in StageStore(pipe.data_dir, "essay").all_records() if r["template"] != "copy_draft"}
    assert redone == llm_essays
    assert {s: _ids(pipe, s) for s in first} == first, "same cohort → same ids"
    assert all(not s.stale for s in pipeline_status(pipe, teacher=LOOPBACK))


def test_gens_export_and_report_command(tmp_path, fake_openai):
    fake_openai(judge_reply)
    path = copy_example(tmp_path)
    pipe = load_pipeline(path)
    run_pipeline(pipe, options=RunOptions(cache=False, limit=1, teacher=LOOPBACK))
    out = EXPORTERS["gens"](pipe, pipe.stage("evaluation"), StageStore(pipe.data_dir, "evaluation"), tmp_path / "g")
    folders = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(folders) == 48 and len(json.loads((out / "names.json").read_text())) == 48
    meta = json.loads((folders[0] / "metadata.json").read_text())
    assert meta["stage"] == "evaluation" and meta["cohort_id"] == "pilot" and meta["mode"] == "llm"
    assert meta["model"] in ("smollm2-135m", "judge-b") and meta["replicate"] in (0, 1)
    assert meta["parser_name"] == "judge_score" and meta["usage"]["completion_tokens"] > 0
    assert meta["parent_id"].startswith("essay_") and meta["error"] is None and not meta["skip_llm"]
    assert meta["template_path"] == f"templates/evaluation/{meta['template_id']}.j2"
    assert meta["run_id"] == StageStore(pipe.data_dir, "evaluation").manifest()["run_id"]
    assert (folders[0] / "prompt.txt").read_text().startswith("Rate the")
    assert float((folders[0] / "parsed.txt").read_text()) >= 0

    res = CliRunner().invoke(app, ["--pipeline", str(path), "export", "essay", "--format", "gens",
                                   "--out", str(tmp_path / "g")])
    assert res.exit_code == 0, res.output
    copy = [d for d in (tmp_path / "g" / "essay").iterdir()
            if d.is_dir() and json.loads((d / "metadata.json").read_text())["mode"] == "copy"]
    meta = json.loads((copy[0] / "metadata.json").read_text())
    assert len(copy) == 2 and meta["usage"] is None and meta["skip_llm"] and meta["model"] is None
    assert meta["pass_through_from"] == meta["parent_id"] and not (copy[0] / "raw.txt").exists()

    res = CliRunner().invoke(app, ["--pipeline", str(path), "report", "--out", str(tmp_path / "rep"), "--top", "3"])
    assert res.exit_code == 0, res.output
    assert "mean score by model × template" in res.output and "top 3 essay records" in res.output
    tables = tmp_path / "rep" / "scores" / "evaluation"  # beside the HTML page (was: the --out folder itself)
    header = (tables / "scores.csv").read_text().splitlines()[0].split(",")
    for col in ("evaluation_model", "evaluation_template", "essay_template", "essay_model", "draft_template",
                "combos_id", "concept_ids", "score"):
        assert col in header
    assert (tables / "summary_by_draft_template.csv").exists()
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "Scores of evaluation" in page and "evaluation: pivot by judge model" in page


def test_bad_outputs_become_reasoned_rejections(tmp_path, fake_openai, monkeypatch):
    """A poor model: one-line drafts for one template, and judges that ramble, overflow or overshoot."""

    calls = itertools.count()

    def poor(req):  # runs on the server's threads; next() on a count is atomic under the GIL
        prompt = req["messages"][-1]["content"]
        if "SCORE: <number" in prompt:
            kind = next(calls) % 4 if req.get("model") == "judge-b" else 0
            text = ["Nice.\nSCORE: 10", "I cannot decide.\nIt is an essay.", "SCORE: 12", "Very long..."][kind]
            return Reply(text=text, finish_reason="length" if kind == 3 else "stop")
        if "numbered notes" in prompt:
            return Reply(text="Only one line.")
        return judge_reply(req)

    fake_openai(poor)
    pipe = load_pipeline(copy_example(tmp_path))
    run_pipeline(pipe, options=RunOptions(cache=False, limit=1, teacher=LOOPBACK))
    drafts = list(StageStore(pipe.data_dir, "draft").rejected())
    assert len(drafts) == 1 and drafts[0]["reasons"] == ["gate:min_lines:too_few_lines"]
    evals = list(StageStore(pipe.data_dir, "evaluation").all_records())
    assert len(evals) == 2 * 12  # 1 surviving draft → 2 essays → 12 evaluations each
    reasons = {r["reasons"][0] if r["reasons"] else r["parsed"] for r in evals}
    assert 10.0 in reasons, "a perfect 10 is accepted (the range is inclusive)"
    assert reasons == {10.0, "no_final_score", "out_of_range", "truncated"}
    truncated = [r for r in evals if r["reasons"] == ["truncated"]]
    assert all(r["raw"] == "Very long..." for r in truncated)
    report = (pipe.data_dir / "scores" / "pivot.csv").read_text()
    assert "smollm2-135m" in report and ",10.0,10.0," in report
    rep = build_score_report(pipe, "evaluation", lambda n: StageStore(pipe.data_dir, n))
    assert len(rep.rows) == 24 and len(rep.scored) == sum(1 for r in evals if r["status"] == "accepted")
    unscored = [r for r in rep.rows if r["score"] is None]
    assert unscored and all(r["reasons"] and r["status"] == "rejected" for r in unscored)
    assert all(p["n_perfect"] == p["count"] for p in rep.pivot), "every accepted score here is a perfect 10"
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if matplotlib were not installed
    assert score_chart(rep) is None
    files = write_score_report(rep, tmp_path / "nochart")
    assert "chart" not in files and (tmp_path / "nochart" / "pivot.csv").exists()


def test_raising_the_limit_only_adds_the_new_combination(tmp_path, fake_openai):
    server = fake_openai(judge_reply)
    path = copy_example(tmp_path)
    run_pipeline(load_pipeline(path), options=RunOptions(cache=False, limit=1, teacher=LOOPBACK))
    n = len(server.requests)
    result = run_pipeline(load_pipeline(path), options=RunOptions(cache=False, limit=2, teacher=LOOPBACK))
    by = {r.stage: r for r in result.stages}
    assert by["combos"].accepted == 2
    # the first combination's line is byte-identical, so nothing downstream of it is redone
    assert all(by[s].superseded == 0 for s in ("draft", "essay", "evaluation"))
    assert len(server.requests) - n == 2 + 2 + 48
