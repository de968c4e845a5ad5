"""The fused loop of plain copy stages (engine/fused.py) and its lean lines (engine/records.py): the same records,
stats and resume as the generic per-record steps, read back through the store by every reader."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pocketguide import run_stage
from pocketguide.engine import redact, runner
from pocketguide.engine.inputs import content_fp, read_stage
from pocketguide.engine.records import LEAN, RAW_FROM, compact, expand, new_record
from pocketguide.engine.store import BOOKKEEPING, StageStore, dumps_line, file_sha256, iter_jsonl, loads

REPO = Path(__file__).resolve().parents[1]

STAGES = """
pipeline: {data_dir: runs}
stages:
  - {name: copy, source: in.jsonl, template: t.j2, mode: copy, parser: identity, facets: [topic, variant, prompt]}
  - {name: again, inputs: [copy], template: a.j2, mode: copy, facets: [data.topic]}
  - {name: ask, inputs: [again, copy], template: j.j2, mode: copy, parser: stripped}
"""
TEMPLATES = {"t.j2": "{{ source.text }}", "a.j2": "{{ input.data.text }}!", "j.j2": "{{ copy.parsed }} {{ again.raw }}"}
ROWS = [{"id": "a", "topic": "visa", "text": "one\r\ntwo"}, {"id": "b", "topic": 3, "text": ""},
        {"id": "a", "topic": "dup", "text": "again"},  # a repeated id: a visible rejection
        {"topic": "no id", "text": "gets line_000004"}, {"id": "c", "topic": "nested", "text": {"not": "a string"}},
        {"id": "d", "topic": None, "text": "ünïcödé \u2028 \"quoted\""}]
SOURCE = "".join(json.dumps(r) + "\n" for r in ROWS[:4]) + "\n" + "not json\n" + "[1, 2]\n" + \
    "".join(json.dumps(r) + "\n" for r in ROWS[4:])
IGNORED = {"created_at", "run_id", "timings"}  # when and how long: bookkeeping that differs run to run


def _project(pipeline_dir, name: str) -> Path:
    return pipeline_dir(STAGES, TEMPLATES, {"in.jsonl": SOURCE}, name=name)


def _records(path: Path, stage: str) -> dict[str, dict]:
    store = StageStore(path.parent / "runs", stage)
    return {r["id"]: {k: v for k, v in r.items() if k not in IGNORED} for r in store.all_records()}


def _stats(path: Path, stage: str) -> dict:
    stats = json.loads((path.parent / "runs" / stage / "stats.json").read_text())
    stats.pop("timings")
    stats["run"].pop("elapsed_s")
    return stats


def _run_all(path: Path) -> None:
    for stage in ("copy", "again", "ask"):
        run_stage(stage, path)


def test_fused_and_generic_paths_write_the_same_records_stats_and_recipe(pipeline_dir, monkeypatch):
    fused = _project(pipeline_dir, "fused")
    _run_all(fused)
    with monkeypatch.context() as m:
        m.setattr(runner, "plain_copy", lambda *a: False)  # the generic steps for every stage
        generic = _project(pipeline_dir, "generic")
        _run_all(generic)
    runs_f, runs_g = fused.parent / "runs", generic.parent / "runs"
    assert LEAN.encode() in (runs_f / "copy" / "records.jsonl").read_bytes(), "the fused loop ran"
    first = json.loads((runs_f / "copy" / "records.jsonl").read_bytes().split(b"\n")[0])
    assert first[RAW_FROM] == "text" and "raw" not in first, "a copy of {{ source.text }} writes the text once"
    assert LEAN.encode() not in (runs_g / "copy" / "records.jsonl").read_bytes()
    for stage in ("copy", "again", "ask"):
        assert _records(fused, stage) == _records(generic, stage), stage
        assert _stats(fused, stage) == _stats(generic, stage), stage
        mf, mg = (json.loads((r / stage / "manifest.json").read_text()) for r in (runs_f, runs_g))
        assert mf["recipe"] == mg["recipe"] and mf["complete"] is mg["complete"] is True
    recs = _records(fused, "copy")
    assert recs["a"]["prompt"] == recs["a"]["raw"] == recs["a"]["parsed"] == "one\r\ntwo"
    assert recs["b"]["parsed"] == "" and recs["a~dup2"]["reasons"] == ["duplicate_id"]
    assert recs["line_000004"]["status"] == "accepted" and recs["line_000006"]["reasons"] == ["malformed_input"]
    assert recs["c"]["raw"].startswith("{"), "the text is no string: Jinja renders it, not the fast path"
    again = _records(fused, "again")
    assert again["a"]["parent_ids"] == ["a"] and again["a"]["ancestors"] == ["a"] and again["a"]["raw"] == "one\r\ntwo!"


def test_lean_lines_expand_to_the_whole_record_and_full_lines_read_as_they_are():
    rec = new_record(id="x", stage="s", parent_ids=["p"], ancestors=["p", "q"], data={"k": 1})
    rec.update(status="accepted", mode="copy", prompt="t", raw="t", parsed="t", input_fp="f", gen_fp="g")
    lean = compact(rec)
    assert set(lean) == {"id", "stage", "status", "parent_ids", "ancestors", "data", "mode", "raw", LEAN,
                         "created_at", "input_fp", "gen_fp"}
    assert list(lean)[-3:] == ["created_at", "input_fp", "gen_fp"], "bookkeeping stays last (content_fp)"
    line = dumps_line(lean)
    assert loads(line) == rec and list(loads(line)) == list(rec), "same fields, same order"
    assert loads(dumps_line(rec)) == rec
    full = dumps_line({**rec, "timings": {"llm_ms": 0.1}})
    assert content_fp(line) == content_fp(full), "the form does not change what readers fingerprint"
    assert content_fp(dumps_line(compact({**rec, "raw": "u"}))) != content_fp(full)
    other = {**rec, "parsed": {"a": 1}, "error": "e", "reasons": ["r"]}
    assert expand(json.loads(dumps_line(compact(other)))) == other
    assert expand({"step": 1}) == {"step": 1}, "lines that are not lean are read as they are"
    copied = {**rec, "data": {"k": 1, "text": "t"}}  # raw is the data's `text`: kept there only
    once = compact(copied, raw_from="text")
    assert "raw" not in once and once[RAW_FROM] == "text" and list(once)[-3:] == ["created_at", "input_fp", "gen_fp"]
    assert loads(dumps_line(once)) == copied and list(loads(dumps_line(once))) == list(copied)
    assert content_fp(dumps_line(once)) == content_fp(dumps_line(copied)) == content_fp(dumps_line(compact(copied)))
    assert content_fp(dumps_line({**once, "data": {"k": 1, "text": "u"}})) != content_fp(dumps_line(copied))
    assert RAW_FROM not in compact(copied, raw_from="k"), "only a field holding the same text"
    assert BOOKKEEPING[-1] == "timings"


def _outputs_hashed_right(folder: Path) -> bool:
    """manifest.json's output sha256s (summed while writing when the store wrote the whole file) = the files'."""
    outputs = json.loads((folder / "manifest.json").read_text())["outputs"]
    return outputs == {name: file_sha256(folder / name) for name in ("records.jsonl", "rejected.jsonl")}


def test_a_fused_stage_resumes_after_a_partial_write_and_redoes_nothing_current(pipeline_dir):
    n = 600
    src = "".join(json.dumps({"id": f"r{i:04d}", "topic": str(i % 3), "text": f"t{i}"}) + "\n" for i in range(n))
    path = pipeline_dir(STAGES, TEMPLATES, {"in.jsonl": src})
    records = path.parent / "runs" / "copy" / "records.jsonl"
    first = run_stage("copy", path, limit=250)
    assert first.new_accepted == 250 and first.pending == n - 250 and _outputs_hashed_right(records.parent)
    kept = records.read_bytes()
    with open(records, "ab") as fh:  # a kill mid-write leaves a torn last line
        fh.write(kept.splitlines(keepends=True)[-1][:-20])
    again = run_stage("copy", path)
    assert again.skipped_done == 250 and again.new_accepted == n - 250 and again.complete
    assert _outputs_hashed_right(records.parent)
    data = records.read_bytes()
    assert data.startswith(kept), "finished lines stay as they were"
    ids = [r["id"] for r in iter_jsonl(records)]
    assert ids == [f"r{i:04d}" for i in range(n)]
    stats = json.loads((records.parent / "stats.json").read_text())
    assert stats["accepted"] == n and sum(v["accepted"] for v in stats["facets"]["topic"].values()) == n
    third = run_stage("copy", path)
    assert third.skipped_done == n and third.new_accepted == 0 and records.read_bytes() == data
    (path.parent / "templates" / "t.j2").write_text("{{ source.text }}.")  # the template decides the text
    fourth = run_stage("copy", path)
    assert fourth.redo == {"regenerate": n} and fourth.new_accepted == n and _outputs_hashed_right(records.parent)
    assert next(iter_jsonl(records))["parsed"] == "t0."


def test_a_parser_change_re_judges_lean_lines_from_their_stored_text(pipeline_dir):
    path = pipeline_dir(STAGES, TEMPLATES, {"in.jsonl": SOURCE})
    run_stage("copy", path)
    path.write_text(path.read_text().replace("parser: identity, facets", "parser: stripped, facets"))
    res = run_stage("copy", path)
    assert res.rejudged == 5 and res.redo == {"re-judge": 5}  # the accepted ones: a, b, line_000004, c, d
    recs = _records(path, "copy")
    assert recs["b"]["reasons"] == ["empty_response"] and recs["a"]["parsed"] == "one\r\ntwo"


def test_secrets_are_scrubbed_from_fused_lines(pipeline_dir):
    secret = "sk-fused-loop-test-0123456789"
    redact.register(secret)
    path = pipeline_dir(STAGES, TEMPLATES, {"in.jsonl": json.dumps({"id": "s", "text": f"key {secret}"}) + "\n"})
    run_stage("copy", path)
    data = (path.parent / "runs" / "copy" / "records.jsonl").read_bytes()
    assert LEAN.encode() in data and secret.encode() not in data and b"[REDACTED]" in data


def test_readers_see_whole_records_inspect_and_joins(pipeline_dir):
    from typer.testing import CliRunner

    from pocketguide.cli.main import app

    path = _project(pipeline_dir, "readers")
    _run_all(path)
    up = {u.record["id"]: u.record for u in read_stage(StageStore(path.parent / "runs", "copy"))}
    assert up["a"]["prompt"] == "one\r\ntwo" and up["a"]["gates"] == [] and up["a"]["teacher"] is None
    ask = _records(path, "ask")
    assert ask["a"]["parsed"] == "one\r\ntwo one\r\ntwo!", "a join reads the lean record's parsed text"
    res = CliRunner().invoke(app, ["--pipeline", str(path), "inspect", "copy", "d"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "quoted" in res.output and "accepted" in res.output, res.output


@pytest.mark.slow
def test_sigkill_mid_fused_stage_then_resume(pipeline_dir):
    n = 200_000
    src = "".join(json.dumps({"id": f"r{i:06d}", "text": "x" * (i % 50)}) + "\n" for i in range(n))
    path = pipeline_dir(STAGES, TEMPLATES, {"in.jsonl": src})
    records = path.parent / "runs" / "copy" / "records.jsonl"
    cmd = [sys.executable, "-m", "pocketguide", "--pipeline", str(path), "run", "copy"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (records.exists() and records.stat().st_size > 1 << 19):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = [r["id"] for r in iter_jsonl(records)]
    assert 0 < len(before) < n, "the kill must land mid-stage"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    after = [r["id"] for r in iter_jsonl(records)]
    assert after == [f"r{i:06d}" for i in range(n)], "each id once, in order, none lost"


def test_background_syncs_and_sums_keep_the_manifest_hash_right(pipeline_dir, monkeypatch):
    from pocketguide.engine import writeback

    monkeypatch.setattr(writeback, "SYNC_AHEAD", 64 << 10)  # many syncs and hand-overs for ~1 MB of lines
    monkeypatch.setattr(writeback, "SUM_AHEAD", 32 << 10)
    src = "".join(json.dumps({"id": f"r{i:05d}", "text": "y" * 150}) + "\n" for i in range(6000))
    path = pipeline_dir(STAGES, TEMPLATES, {"in.jsonl": src})
    res = run_stage("copy", path)
    folder = path.parent / "runs" / "copy"
    assert res.new_accepted == 6000 and (folder / "records.jsonl").stat().st_size > 1 << 20
    assert _outputs_hashed_right(folder)
