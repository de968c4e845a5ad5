"""The response cache (reruns send no request whose answer is cached), its CLI, and run budgets."""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from pocketguide.cli.main import app
from pocketguide.engine.pipeline import run_pipeline
from pocketguide.engine.runner import run_stage
from pocketguide.engine.session import RunOptions
from pocketguide.testing import Reply

N = 8


def project(pipeline_dir, server, teacher="", stage_extra="", name="proj"):
    rows = "".join(json.dumps({"id": f"r{i}", "q": f"question {i}"}) + "\n" for i in range(N))
    yaml = f"""
pipeline:
  name: t
  data_dir: runs
  concurrency: 4
  teacher:
    base_url: "{server.base_url}"
    model: m1
    max_tokens: 100
    retry_initial_s: 0.05
{teacher}
stages:
  - name: a
    source: data/src.jsonl
    template: q.j2
    mode: llm
{stage_extra}
  - name: b
    inputs: [a]
    template: b.j2
    mode: llm
"""
    return pipeline_dir(yaml, {"q.j2": "Q: {{ source.q }}", "b.j2": "Improve: {{ a.raw }}"},
                        {"data/src.jsonl": rows}, name=name)


def answer(req):
    return Reply(text="A to " + req["messages"][-1]["content"])


def test_rerun_after_crash_and_fresh_send_no_cached_request(fake_openai, pipeline_dir):
    server = fake_openai(answer)
    path = project(pipeline_dir, server)
    assert run_stage("a", path).new_accepted == N and server.count() == N
    # a crash after the answers came back but before all were written: half the lines lost, no manifest
    out = path.parent / "runs" / "a"
    lines = (out / "records.jsonl").read_text().splitlines(keepends=True)
    (out / "records.jsonl").write_text("".join(lines[: N // 2]))
    (out / "manifest.json").unlink()
    res = run_stage("a", path)
    assert res.new_accepted == N - N // 2 and server.count() == N  # 0 new requests
    again = run_stage("a", path, fresh=True)
    assert again.new_accepted == N and server.count() == N
    assert again.stats["teacher"]["cached"] == N
    rec = json.loads((out / "records.jsonl").read_text().splitlines()[0])
    assert rec["teacher"]["cached"] is True and rec["raw"].startswith("A to Q: question")


def test_no_cache_bypasses_it(fake_openai, pipeline_dir):
    server = fake_openai(answer)
    path = project(pipeline_dir, server)
    run_stage("a", path)
    run_stage("a", path, options=RunOptions(fresh=True, cache=False))
    assert server.count() == 2 * N


def test_key_changes_with_max_tokens_and_template_not_with_parser(fake_openai, pipeline_dir):
    server = fake_openai(answer)
    path = project(pipeline_dir, server)
    run_stage("a", path)
    # a parser / gate change: same requests, all from the cache
    text = path.read_text().replace("    mode: llm\n\n", "    mode: llm\n    parser: stripped\n    gates: [{name: length, options: {min_chars: 1}}]\n", 1)
    path.write_text(text)
    assert run_stage("a", path, fresh=True).stats["teacher"]["cached"] == N
    assert server.count() == N
    path.write_text(text.replace("max_tokens: 100", "max_tokens: 101"))
    run_stage("a", path, fresh=True)
    assert server.count() == 2 * N
    (path.parent / "templates" / "q.j2").write_text("Question: {{ source.q }}")
    run_stage("a", path, fresh=True)
    assert server.count() == 3 * N


def test_replicates_are_not_collapsed_by_the_cache(fake_openai, pipeline_dir):
    server = fake_openai(answer)
    path = project(pipeline_dir, server, stage_extra="    variants: {replicates: 2}")
    assert run_stage("a", path).new_accepted == 2 * N
    assert server.count() == 2 * N
    run_stage("a", path, fresh=True)
    assert server.count() == 2 * N


def test_key_never_contains_the_api_key_and_is_endpoint_scoped(fake_openai, pipeline_dir, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-cache-secret-0001")
    server = fake_openai(answer)
    path = project(pipeline_dir, server)
    run_stage("a", path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-cache-secret-0002")  # a new key reuses the answers
    run_stage("a", path, fresh=True)
    assert server.count() == N
    db = path.parent / "runs" / "cache.sqlite"
    rows = sqlite3.connect(db).execute("SELECT key, stage, endpoint, model, response FROM responses").fetchall()
    assert len(rows) == N and {r[1] for r in rows} == {"a"} and {r[3] for r in rows} == {"m1"}
    assert all("127.0.0.1" in r[2] for r in rows)
    assert b"sk-cache-secret" not in db.read_bytes()
    other = fake_openai(answer)  # a different endpoint (port) is a different key
    path.write_text(path.read_text().replace(server.base_url, other.base_url))
    run_stage("a", path, fresh=True)
    assert other.count() == N


def test_run_all_shares_one_cache_and_cli_stats_and_clear(fake_openai, pipeline_dir, monkeypatch):
    server = fake_openai(answer)
    path = project(pipeline_dir, server)
    result = run_pipeline(path)
    assert result.ok and server.count() == 2 * N
    monkeypatch.chdir(path.parent)
    runner = CliRunner()
    out = runner.invoke(app, ["cache", "stats"])
    assert out.exit_code == 0, out.output
    assert f"{2 * N} cached answers" in out.output
    out = runner.invoke(app, ["cache", "clear", "--stage", "b"])
    assert out.exit_code == 0 and f"removed {N} cached answer(s) of stage 'b'" in out.output
    out = runner.invoke(app, ["cache", "clear", "--stage", "nope"])
    assert out.exit_code == 2 and "unknown stage 'nope'" in out.output
    out = runner.invoke(app, ["run", "b", "--fresh"])
    assert out.exit_code == 0, out.output
    assert server.count() == 3 * N  # b asked again, a untouched
    out = runner.invoke(app, ["run", "a", "--fresh"])
    assert server.count() == 3 * N
    out = runner.invoke(app, ["cache", "clear"])
    assert f"removed {2 * N} cached answer(s)" in out.output


def test_max_requests_stops_cleanly_and_resumes(fake_openai, pipeline_dir):
    server = fake_openai(answer)
    path = project(pipeline_dir, server)
    res = run_stage("a", path, options=RunOptions(max_requests=3))
    assert res.stopped and "request budget reached" in res.stopped and "--max-requests 3" in res.stopped
    assert server.count() == 3 and res.new_accepted == 3 and not res.complete
    res = run_stage("a", path)
    assert res.complete and server.count() == N and res.skipped_done == 3


def test_max_cost_via_cli_exits_3_and_keeps_finished_work(fake_openai, pipeline_dir, monkeypatch):
    server = fake_openai(lambda req: Reply(text="x", usage={"prompt_tokens": 1_000_000, "completion_tokens": 0,
                                                           "total_tokens": 1_000_000}))
    path = project(pipeline_dir, server, teacher="    prices: {'*': {input: 1.0, output: 1.0}}")
    monkeypatch.chdir(path.parent)
    out = CliRunner().invoke(app, ["run", "a", "--max-cost", "2.5", "--concurrency", "1"])
    assert out.exit_code == 3, out.output
    assert "cost budget reached" in out.output
    kept = (path.parent / "runs" / "a" / "records.jsonl").read_text().splitlines()
    assert len(kept) == server.count() == 3  # $1 each: the third reaches $3 ≥ 2.5, the fourth never leaves
    stats = json.loads((path.parent / "runs" / "a" / "stats.json").read_text())
    assert stats["teacher"]["cost"] == pytest.approx(3.0)


def test_max_cost_without_prices_is_a_config_error(fake_openai, pipeline_dir):
    server = fake_openai(answer)
    path = project(pipeline_dir, server)
    with pytest.raises(Exception, match=r"--max-cost needs prices: add teacher.prices .*m1: \{input"):
        run_stage("a", path, options=RunOptions(max_cost=1.0))
    assert server.count() == 0
