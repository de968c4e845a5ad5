"""The data the HTML report is built from: counts, reasons, facets, teacher figures, browser records,
sampling by lineage, sections, and JSON that cannot break out of its <script> block."""

from __future__ import annotations

import json

import pytest
from report_helpers import PLANTED_RAW, QUESTIONS, fake_teacher, make_run, rerun

from pocketguide.engine.loader import load_pipeline
from pocketguide.engine.registry import REPORT_SECTIONS
from pocketguide.engine.store import StageStore, file_sha256
from pocketguide.report.browse import StageSample, quotas, trim
from pocketguide.report.collect import build_report_data, run_section
from pocketguide.report.html import embed_json, render_page
from pocketguide.report.tally import TeacherTally, counters, headline


@pytest.fixture
def run(tmp_path):
    path = make_run(tmp_path / "proj")
    return load_pipeline(path)


def _stage(data, name):
    return next(s for s in data["stages"] if s["name"] == name)


def test_funnel_reasons_and_facets_match_the_store(run):
    assert _stage(build_report_data(run), "answers")["state"] == "stale", "the spec's own teacher did not make them"
    data = build_report_data(run, teacher=fake_teacher())
    q, a = _stage(data, "questions"), _stage(data, "answers")
    assert (q["in"], q["accepted"], q["rejected"], q["in_from"]) == (6, 5, 1, "source data/questions.jsonl")
    assert (a["in"], a["accepted"], a["rejected"], a["in_from"]) == (5, 3, 2, "questions")
    assert q["reasons"] == {"gate:length:too_short": 1}
    assert a["reasons"] == {"parse_failed": 1, "truncated": 1}
    assert q["facet_rates"]["topic"]["budget"] == {"accepted": 1, "rejected": 1, "pass_rate": 0.5}
    assert a["facet_rates"]["topic"]["customs"] == {"accepted": 1, "rejected": 1, "pass_rate": 0.5}
    assert q["gates"]["length"] == {"passed": 5, "failed": 1, "pass_rate": 0.8333}
    assert q["state"] == a["state"] == "done" and q["teacher"] is None
    m = a["manifest"]
    assert len(m["run_id"]) == 32 and len(m["spec_sha256"]) == 64 and set(m["templates"]) == {"templates/a.j2"}
    assert m["inputs"]["questions"] == file_sha256(StageStore(run.data_dir, "questions").records_path)


def test_teacher_figures_come_from_the_records(run):
    t = _stage(build_report_data(run), "answers")["teacher"]
    recs = list(StageStore(run.data_dir, "answers").all_records())
    assert t["records"] == t["requests"] == 5 and t["cache_hits"] == 0
    assert t["completion_tokens"] == sum(r["teacher"]["usage"]["completion_tokens"] for r in recs)
    assert t["finish_reasons"] == {"stop": 4, "length": 1} and t["models"] == {"fake-teacher": 5}
    assert 0 < t["latency_p50_s"] <= t["latency_p95_s"]


def test_teacher_tally_reads_failures_fallbacks_and_unknown_counters():
    tally = TeacherTally()
    tally.add({"teacher": {"cached": True, "usage": {}}})
    tally.add({"teacher": {"model": None, "attempted_models": ["a", "b"], "latency_s": None, "cost": 0.25,
                           "usage": {"prompt_tokens": 7, "reasoning_tokens": 3}, "retries": 2, "paused_s": 1.5,
                           "errors": [{"model": "a", "kind": "rate_limit", "status": 429, "attempts": 4},
                                      {"model": "b", "kind": "server_error", "status": 500, "attempts": 2}]}})
    tally.add({"teacher": None})
    f = tally.figures()
    assert (f["records"], f["requests"], f["cache_hits"], f["fallbacks"]) == (2, 1, 1, 1)
    assert (f["failed_models"], f["failed_attempts"], f["rate_limited_429"]) == (2, 6, 1)
    assert f["cost_usd"] == 0.25 and f["prompt_tokens"] == 7
    assert f["other"] == {"usage.reasoning_tokens": 3, "retries": 2, "paused_s": 1.5}
    assert f["error_kinds"] == {"rate_limit": 1, "server_error": 1}
    assert TeacherTally().figures() is None


def test_counters_are_read_generically_from_stats_and_manifest():
    stats = {"teacher": {"calls": 9, "cached": 1, "pauses": 3, "paused_s": {"gpt": 2.5}}}
    manifest = {"teacher": {"provider": "openai", "flow": [{"model": "gpt", "calls": 12, "rate_limited": 2,
                                                            "circuit": {"open": False, "recent_errors": 1}}],
                            "cache": {"hits": 4, "path": "/x"}, "budget": {"requests_sent": 12, "max_cost": None}}}
    assert counters(stats, manifest) == {
        "stats.pauses": 3, "stats.paused_s.gpt": 2.5, "manifest.flow.gpt.calls": 12,
        "manifest.flow.gpt.rate_limited": 2, "manifest.flow.gpt.circuit.recent_errors": 1,
        "manifest.cache.hits": 4, "manifest.budget.requests_sent": 12}
    found = headline({**counters(stats, manifest), "records.retries": 2, "manifest.flow.b.status_429": 1,
                      "manifest.flow.gpt.limits_per_minute.requests": 60})
    assert found == {"pauses": 3, "paused_s": 2.5, "rate_limited": 3, "retries": 2}


def test_browser_rows_carry_every_record_with_its_trace_links(run):
    b = build_report_data(run)["browser"]
    assert (b["total"], b["shown"], b["sampled"]) == (11, 11, False)
    rows = {(r[0], r[1]): r for r in b["rows"]}
    planted = rows[(1, "q3")]
    assert planted[2] == "rejected" and planted[3] == ["parse_failed"] and planted[4] == {"topic": "customs"}
    assert planted[5] == ["q3"] and planted[6] == ["q3"]
    detail = json.loads(planted[8])
    assert detail["raw"] == PLANTED_RAW and detail["teacher"]["model"] == "fake-teacher"
    assert rows[(0, "q4")][3] == ["gate:length:too_short"] and rows[(0, "q4")][7] == "Cheap?"


def test_superseded_versions_are_browsable_but_not_counted(run, tmp_path):
    src = run.resolve("data/questions.jsonl")
    changed = [dict(q, question=q["question"] + " (updated)") if q["id"] == "q1" else q for q in QUESTIONS]
    src.write_text("\n".join(json.dumps(q) for q in changed) + "\n")
    rerun(run.path)
    data = build_report_data(load_pipeline(run.path), teacher=fake_teacher())
    q, a = _stage(data, "questions"), _stage(data, "answers")
    assert (q["state"], a["state"]) == ("done", "done")
    assert (q["accepted"], q["superseded"], a["accepted"], a["superseded"]) == (5, 1, 3, 1)
    versions = sorted(r[2] for r in data["browser"]["rows"] if r[0] == 0 and r[1] == "q1")
    assert versions == ["accepted", "superseded"]
    old = next(json.loads(r[8]) for r in data["browser"]["rows"] if r[1] == "q1" and r[2] == "superseded" and r[0] == 0)
    assert old["superseded_at"] and "(updated)" not in old["raw"]


def test_a_big_run_is_sampled_by_whole_lineages(tmp_path):
    questions = [{"id": f"x{i:03d}", "question": f"Where is a quiet cafe near station number {i}?",
                  "topic": ["transport", "budget", "customs"][i % 3]} for i in range(60)]
    pipe = load_pipeline(make_run(tmp_path / "big", questions))
    data = build_report_data(pipe, max_records=40)
    b = data["browser"]
    assert b["sampled"] and b["total"] == 120 and b["shown"] == 40
    kept = {(r[0], r[1]) for r in b["rows"]}
    assert {i for s, i in kept if s == 0} == {i for s, i in kept if s == 1}, "a kept answer keeps its question"
    assert _stage(data, "answers")["accepted"] == 60, "counts are over every record, not the sample"
    again = build_report_data(pipe, max_records=40)["browser"]["rows"]
    assert [r[1] for r in again] == [r[1] for r in b["rows"]], "the sample is deterministic"


def test_stage_sample_keeps_the_lowest_ranked_roots_in_file_order():
    sample = StageSample(quota=3)
    recs = [{"id": f"r{i}", "ancestors": [f"root{i // 2}"], "status": "accepted"} for i in range(10)]
    for r in recs:
        sample.offer(r)
    kept = sample.records()
    assert len(kept) == 3 and sample.seen == 10
    assert [r["id"] for r in kept] == sorted((r["id"] for r in kept), key=lambda x: int(x[1:]))
    assert quotas({"a": 10, "b": 30}, 100) == {"a": 10, "b": 30}
    assert quotas({"a": 10, "b": 30, "c": 0}, 20) == {"a": 5, "b": 15, "c": 0}
    assert quotas({"a": 6, "b": 5}, 4) == {"a": 2, "b": 2}


def test_long_text_is_cut_and_says_so():
    out = trim({"raw": "x" * 50, "list": list(range(300)), "n": 3}, 10)
    assert out["raw"].startswith("x" * 10) and "40 more characters" in out["raw"]
    assert len(out["list"]) == 201 and out["list"][-1] == "… 100 more items" and out["n"] == 3


@pytest.mark.parametrize("text", ["</script><script>alert(1)</script>", "<!--", "a & b > c", "line\u2028sep\u2029",
                                  "\ud800 lone surrogate"])
def test_embedded_json_cannot_close_its_script_block(text):
    out = embed_json({"raw": text, "k": [text]})
    assert "<" not in out and ">" not in out and "&" not in out and "\u2028" not in out
    assert json.loads(out) == {"raw": text, "k": [text]}


def test_page_runs_only_its_own_script(run):
    page = render_page(build_report_data(run))
    assert page.count("<script") == 2 and page.count("</script>") == 2, "the planted </script> stayed inside the JSON"
    assert "script-src 'sha256-" in page and "default-src 'none'" in page
    assert "sk-loopback-only" not in page, "the run's API key never reaches the page"
    shell, script = page.split('<script type="application/json"')[0], page.rsplit("<script>", 1)[1]
    assert "<link" not in shell and " src=" not in shell, "nothing is loaded from anywhere"
    assert script.replace("http://www.w3.org/2000/svg", "").count("http") == 0


def test_sections_come_from_the_registry_and_a_failing_one_becomes_a_note(run):
    import pocketguide.pipelines.daydreaming  # noqa: F401  (a plugin: loaded by the pipelines that name it)

    assert {"score_report", "train"} <= set(REPORT_SECTIONS)

    def broken(pipe, spec, store_of):
        raise ValueError("no such file")

    spec = run.stage("answers")
    out = run_section(broken, run, spec, lambda n: StageStore(run.data_dir, n))
    assert out["notes"] == ["this section could not be built: ValueError: no such file"]


def test_training_section_reads_the_stage_folder(tmp_path):
    from pocketguide.training.view import training_section

    class Spec:
        name, inputs, options = "train", ["sft", "eval_suite"], {"eval": {"suite": "eval_suite"}}

    root = tmp_path / "runs"
    train = StageStore(root, "train")
    train.dir.mkdir(parents=True)
    (train.dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [
        {"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5, "val_loss": 1.7}]))
    train.write_json("stats.json", {"training": {"steps": 2, "first_loss": 2.0, "last_loss": 1.5}})
    rows = [{"model": m, "mode": "unconstrained", "id": i, "payload_type": "checklist", "output": f"{m} says {i}",
             "schema_valid": m == "tuned" or i == "b"} for m in ("base", "tuned") for i in ("a", "b")]
    train.write_json("eval_report.json", {
        "n_examples": 2, "max_new_tokens": 64, "modes": ["unconstrained"], "examples": rows, "notes": ["small"],
        "summary": {m: {"unconstrained": {"n": 2, "schema_valid_rate": r, "gate_pass_rates": {"g": r}}}
                    for m, r in (("base", 0.5), ("tuned", 1.0))},
        "gain_points": {"unconstrained": {"schema_valid_rate": 50.0}}})
    suite = StageStore(root, "eval_suite")
    with suite:
        suite.append({"id": "a", "status": "accepted", "parsed": {"messages": [{"role": "user", "content": "Pack?"}]}})
    sec = training_section(None, Spec, lambda n: StageStore(root, n))
    kinds = [b["kind"] for b in sec["blocks"]]
    assert kinds == ["lines", "table", "table", "pairs"] and sec["notes"] == ["small"]
    assert sec["blocks"][0]["series"][1]["points"] == [[2, 1.7]]
    table = sec["blocks"][1]
    assert table["rows"][0][:3] == ["base", "unconstrained", 2] and "100%" in table["rows"][1]
    pairs = sec["blocks"][3]["items"]
    assert pairs[0]["head"].startswith("a ·") and pairs[0]["sub"] == "Pack?", "disagreements first, with the prompt"
    assert pairs[0]["texts"] == ["base says a", "tuned says a"] and sec["facts"]["last_loss"] == 1.5


def test_training_section_names_the_payload_types_missing_from_the_training_data(tmp_path):
    from pocketguide.training.view import training_section

    class Spec:
        name, inputs, options = "train", ["sft"], {}

    train = StageStore(tmp_path / "runs", "train")
    train.dir.mkdir(parents=True)
    train.write_json("stats.json", {"training": {"steps": 2}, "coverage": {
        "facet": "payload_type", "expected": ["checklist", "itinerary"], "counts": {"train": {"checklist": 3}},
        "missing": {"train": ["itinerary"]}}})
    sec = training_section(None, Spec, lambda n: StageStore(tmp_path / "runs", n))
    assert sec["notes"] == ["payload types missing — train: itinerary"]
