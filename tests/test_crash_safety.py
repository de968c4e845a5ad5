"""Kill a running `pocketguide run` with SIGKILL, rerun it: no duplicates, no losses, no second payment."""

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
