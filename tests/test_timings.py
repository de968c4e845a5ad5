"""Per-phase timings: every record says where its time went; stats.json and the run summary sum them."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from pocketguide import run_pipeline, run_stage
from pocketguide.cli.main import app
from pocketguide.engine.inputs import content_fp
from pocketguide.engine.store import dumps_line, iter_jsonl
from pocketguide.testing import Reply

STAGES = """
    pipeline:
      data_dir: runs
      teacher: {provider: openai, model: m, max_retries: 0}
    stages:
      - {name: ask, source: in.jsonl, template: t.j2, mode: llm, parser: json, gates: [{name: length}]}
      - {name: echo, inputs: [ask], template: e.j2, mode: copy, parser: stripped}
"""
SOURCE = "".join(json.dumps({"id": f"q{i}", "n": i}) + "\n" for i in range(4))


def reply(req):
    n = int(req["messages"][-1]["content"].split()[-1])
    if n == 3:
        return Reply(status=400, error="bad request")  # a failed call is timed too
    return Reply(text=json.dumps({"answer": "x" * 20, "n": n}), delay=0.05)


def test_every_record_carries_its_phase_times_and_stats_sum_them(pipeline_dir, fake_openai):
    fake_openai(reply)
    path = pipeline_dir(STAGES, {"t.j2": "question {{ source.n }}", "e.j2": "{{ ask.parsed.answer }}"},
                        {"in.jsonl": SOURCE})
    result = run_pipeline(path)
    runs = path.parent / "runs"
    ask = {r["id"]: r for name in ("records.jsonl", "rejected.jsonl") for r in iter_jsonl(runs / "ask" / name)}
    ok = [ask[f"q{i}"] for i in range(3)]
    for rec in ok:
        t = rec["timings"]
        assert set(t) == {"render_ms", "llm_ms", "parse_ms", "gate_ms", "finished_at"}
        assert t["llm_ms"] >= 50, "the call's time includes the server's 50 ms"
        assert 0 <= t["render_ms"] < t["llm_ms"] and t["parse_ms"] >= 0 and t["gate_ms"] >= 0
        assert t["finished_at"] >= rec["created_at"]
    failed = ask["q3"]["timings"]
    assert ask["q3"]["status"] == "rejected" and "llm_ms" in failed and "parse_ms" not in failed
    stats = json.loads((runs / "ask" / "stats.json").read_text())["timings"]
    assert stats["llm_ms"]["records"] == 4 and stats["gate_ms"]["records"] == 3 and stats["write_ms"]["records"] == 4
    assert stats["llm_ms"]["total_ms"] >= 150 and stats["llm_ms"]["max_ms"] >= stats["llm_ms"]["mean_ms"]
    echo = json.loads((runs / "echo" / "stats.json").read_text())["timings"]
    assert "gate_ms" not in echo and echo["llm_ms"]["records"] == 3, "copy mode: its copy is timed as llm_ms"
    assert result.stages[0].stats["timings"] == stats
    res = CliRunner().invoke(app, ["--pipeline", str(path), "run-all"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output  # nothing new: the stored records' times are summed again
    assert "ask: mean per record: render" in res.output and "write" in res.output


def test_timings_are_bookkeeping_not_content():
    """A record redone to the same content keeps its readers' inputs unchanged, whatever it took this time."""
    base = {"id": "a", "stage": "s", "status": "accepted", "parsed": "x", "created_at": "2026-01-01T00:00:00Z"}
    one = dumps_line({**base, "timings": {"render_ms": 0.1, "llm_ms": 5.0, "finished_at": "2026-01-01T00:00:01Z"}})
    two = dumps_line({**base, "timings": {"render_ms": 0.3, "llm_ms": 9.5, "finished_at": "2026-01-01T00:00:02Z"}})
    assert content_fp(one) == content_fp(two)
    assert content_fp(one) != content_fp(dumps_line({**base, "parsed": "y", "timings": {"llm_ms": 5.0}}))


def test_a_resumed_stage_keeps_its_records_times(pipeline_dir, fake_openai):
    fake_openai(reply)
    path = pipeline_dir(STAGES, {"t.j2": "question {{ source.n }}", "e.j2": "{{ ask.parsed.answer }}"},
                        {"in.jsonl": SOURCE})
    run_stage("ask", path, limit=2)
    first = {r["id"]: r["timings"] for r in iter_jsonl(path.parent / "runs" / "ask" / "records.jsonl")}
    run_stage("ask", path)
    after = {r["id"]: r["timings"] for r in iter_jsonl(path.parent / "runs" / "ask" / "records.jsonl")}
    assert all(after[k] == v for k, v in first.items()) and len(after) == 3
