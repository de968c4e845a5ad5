"""Kill a running `pocketguide run` with SIGKILL, rerun it: no duplicates, no losses, no second payment —
mid-generation, and mid-way through a re-judge of stored answers."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pocketguide.engine.store import iter_jsonl
from pocketguide.testing import Reply

REPO = Path(__file__).resolve().parents[1]

N = 120
N2 = 240  # records re-judged in the re-judge kill test (10 ms each)


def test_sigkill_mid_stage_then_resume(pipeline_dir, fake_openai):
    server = fake_openai(lambda req: Reply(text="answer: " + req["messages"][-1]["content"], delay=0.03))
    source = "".join(json.dumps({"id": f"id{i:04d}", "q": f"question {i}"}) + "\n" for i in range(N))
    path = pipeline_dir("""
        pipeline: {teacher: {provider: openai, model: m}}
        stages:
          - {name: ask, source: in.jsonl, template: t.j2, mode: llm, parser: stripped}
    """, {"t.j2": "{{ source.q }}"}, {"in.jsonl": source})
    records = path.parent / "data/runs/ask/records.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "pocketguide", "--pipeline", str(path), "run", "ask", "--concurrency", "4"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if records.exists() and records.read_bytes().count(b"\n") >= N // 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = [r["id"] for r in iter_jsonl(records)]
    assert N // 3 <= len(before) < N, "the kill must land mid-stage"

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    data = records.read_bytes()
    assert data.endswith(b"\n")
    after = [json.loads(line)["id"] for line in data.splitlines()]  # every line whole and valid
    assert len(after) == len(set(after)) == N
    assert after[:len(before)] == before
    sent = collections.Counter(server.prompts())
    for rid in before:  # finished before the kill → never sent again
        assert sent[f"question {int(rid[2:])}"] == 1, rid


def test_sigkill_mid_rejudge_then_rerun_asks_no_teacher(pipeline_dir, fake_openai):
    """A gate option changes; the rerun re-judges stored answers and is killed mid-way; the next rerun
    finishes from what was set aside: every id once, none lost, and no request in either (no cache)."""
    server = fake_openai(lambda req: Reply(text="answer: " + req["messages"][-1]["content"]))
    source = "".join(json.dumps({"id": f"id{i:04d}", "q": f"question {i * 37 % 1000}"}) + "\n" for i in range(N2))
    path = pipeline_dir("""
        plugins: [recompute_plugin]
        pipeline: {teacher: {provider: openai, model: m}}
        stages:
          - name: ask
            source: in.jsonl
            template: t.j2
            mode: llm
            parser: stripped
            gates: [{name: slow_length, options: {min_chars: 10, delay_s: 0}}]
    """, {"t.j2": "{{ source.q }}"}, {"in.jsonl": source})
    from pocketguide import run_stage
    from pocketguide.engine.session import RunOptions

    assert run_stage("ask", path, options=RunOptions(cache=False)).accepted == N2 and server.count() == N2
    stage = path.parent / "data/runs/ask"
    stages_yaml = path.read_text()
    path.write_text(stages_yaml.replace("min_chars: 10, delay_s: 0", "min_chars: 20, delay_s: 0.01"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    cmd = [sys.executable, "-m", "pocketguide", "--pipeline", str(path), "run", "ask", "--no-cache"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rejudged = sum(p.read_bytes().count(b'"rejudged_from"') for p in (stage / "records.jsonl",
                                                                          stage / "rejected.jsonl"))
        if rejudged >= N2 // 4:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stored = [r["id"] for name in ("records.jsonl", "rejected.jsonl") for r in iter_jsonl(stage / name)]
    aside = {r["id"] for r in iter_jsonl(stage / "superseded.jsonl")}
    assert N2 // 4 <= len(stored) < N2, "the kill must land mid-way through the re-judge"
    assert set(stored) | aside == {f"id{i:04d}" for i in range(N2)}, "nothing lost at the kill"

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for name in ("records.jsonl", "rejected.jsonl")
               for line in (stage / name).read_bytes().splitlines()]
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == N2
    assert server.count() == N2, "re-judging asks no teacher, not even after a kill"
    assert all(r["rejudged_from"] for r in records)
    assert all((r["status"] == "accepted") == (len(r["raw"]) >= 20) for r in records)
    assert 0 < sum(r["status"] == "rejected" for r in records) < N2
