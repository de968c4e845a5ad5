"""Back off where the server says: a sparse 429 delays only the request that got it; the model pauses
when 429s show a shared limit (a burst, or x-ratelimit-remaining-* at 0), and stats.json says how long
and why. Against a real limit (the loopback server's token buckets) the client settles near the allowed
rate with few 429s, whether or not stages.yaml names the limit."""

from __future__ import annotations

import json
import threading
import time

import pytest
from typer.testing import CliRunner

from pocketguide.cli.main import app
from pocketguide.engine.runner import run_stage
from pocketguide.testing import RateLimit, Reply


def project(pipeline_dir, server, n, concurrency, teacher=""):
    rows = "".join(json.dumps({"id": f"r{i}", "q": f"question {i}"}) + "\n" for i in range(n))
    yaml = f"""
pipeline:
  name: t
  data_dir: runs
  concurrency: {concurrency}
  teacher:
    base_url: "{server.base_url}"
    model: m1
    max_tokens: 64
    retry_initial_s: 0.05
    retry_max_s: 0.5
{teacher}
stages: [{{name: a, source: data/src.jsonl, template: q.j2, mode: llm}}]
"""
    return pipeline_dir(yaml, {"q.j2": "Q: {{ source.q }}"}, {"data/src.jsonl": rows})


def flow(path):
    return json.loads((path.parent / "runs" / "a" / "stats.json").read_text())["teacher"]["flow"]


class Timed:
    """A reply function that records when each request arrived; `first` answers the first request."""

    def __init__(self, first: Reply, then: Reply):
        self.first, self.then, self.times, self.lock = first, then, [], threading.Lock()

    def __call__(self, req):
        with self.lock:
            self.times.append(time.monotonic())
            return self.first if len(self.times) == 1 else self.then


def test_a_sparse_429_delays_only_the_request_that_got_it(fake_openai, pipeline_dir):
    script = Timed(Reply(status=429, headers={"retry-after": "1"}), Reply(text="ok", delay=0.02))
    server = fake_openai(script)
    path = project(pipeline_dir, server, n=12, concurrency=3)
    assert run_stage("a", path).new_accepted == 12
    t429, others = script.times[0], sorted(script.times[1:])
    assert others[-2] - t429 < 0.8  # the 10 other records went on meanwhile (the old pause held them 1 s)
    assert others[-1] - t429 >= 1.0  # the throttled one waited its Retry-After
    f = flow(path)
    assert f["rate_limited"] == 1 and f["retry_after_waits"] == 1 and f["retry_after_wait_s"] >= 1.0
    assert f["paused_s"] == 0 and f["pauses"] == {} and f["concurrency_cuts"] == 0


def test_remaining_zero_on_a_429_pauses_the_model_and_says_so(fake_openai, pipeline_dir):
    script = Timed(Reply(status=429, headers={"x-ratelimit-remaining-requests": "0", "retry-after-ms": "600"}),
                   Reply(text="ok", delay=0.05))
    server = fake_openai(script)
    path = project(pipeline_dir, server, n=8, concurrency=4)
    assert run_stage("a", path).new_accepted == 8
    t429 = script.times[0]
    held = [t for t in script.times[4:] if t - t429 < 0.55]  # the first 4 went together, before the 429
    assert held == [], [round(t - t429, 3) for t in script.times]
    f = flow(path)
    (reason, pause), = f["pauses"].items()
    assert "x-ratelimit-remaining-requests=0" in reason and pause["pauses"] == 1
    assert 0.55 <= f["paused_s"] == pause["seconds"] <= 0.65 and f["concurrency_cuts"] == 1


def test_a_burst_of_429s_pauses_once_and_the_run_summary_says_so(fake_openai, pipeline_dir, monkeypatch):
    n = [0]
    lock = threading.Lock()

    def reply(req):
        with lock:
            n[0] += 1
            first = n[0] <= 8  # the first 8 requests (sent together) are throttled: a burst, no headers
        return Reply(status=429, delay=0.02, headers={"retry-after-ms": "300"}) if first else Reply(text="ok")

    server = fake_openai(reply)
    path = project(pipeline_dir, server, n=8, concurrency=8)
    monkeypatch.chdir(path.parent)
    out = CliRunner().invoke(app, ["run", "a"])
    assert out.exit_code == 0, out.output
    f = flow(path)
    (reason, pause), = f["pauses"].items()
    assert reason.startswith("429 burst") and pause["pauses"] == 1 and 0.25 <= f["paused_s"] <= 0.35
    assert f["rate_limited"] == 8 and f["concurrency_cuts"] == 1
    text = " ".join(out.output.split())  # the summary wraps to the terminal
    line = text[text.index("a: rate limits:"):]
    assert "8 answers were 429" in line and "paused 0.3s in all (429 burst" in line


@pytest.mark.parametrize("configured", [False, True], ids=["limit-unknown", "limit-in-stages-yaml"])
def test_the_client_settles_at_a_server_enforced_request_limit(fake_openai, pipeline_dir, configured):
    # 1200/min = 20/s with a half-second burst (10): 100 records take ~4.5 s at the limit (a rate low enough
    # for a loaded 2-core machine: the figure is about pacing, not the client's CPU)
    limit = RateLimit(requests_per_minute=1200, burst_s=0.5)
    server = fake_openai(lambda req: Reply(text="ok", delay=0.02), limit=limit)
    path = project(pipeline_dir, server, n=100, concurrency=8,
                   teacher="    requests_per_minute: 1200" if configured else "")
    assert run_stage("a", path).new_accepted == 100
    s = limit.stats()
    allowed = 10 + 20 * s["admitted_span_s"]  # what the buckets could have let through meanwhile
    assert s["admitted"] == 100
    assert s["admitted"] / allowed >= 0.9, s
    assert s["limited"] <= 0.02 * (s["admitted"] + s["limited"]), s
    f = flow(path)  # the summary can say what paced the stage: the limit, learnt or configured
    assert f["limits_per_minute"]["requests"] == 1200 and f["paced_s"] > 1


def test_the_client_settles_at_a_server_enforced_token_limit(fake_openai, pipeline_dir):
    # every request costs ceil(chars / 4) + max_tokens = 4 + 64 = 68 tokens at the server: ~20/s
    limit = RateLimit(tokens_per_minute=68 * 20 * 60, burst_s=0.5)
    server = fake_openai(lambda req: Reply(text="ok", delay=0.02), limit=limit)
    path = project(pipeline_dir, server, n=100, concurrency=8)
    assert run_stage("a", path).new_accepted == 100
    s = limit.stats()
    allowed = limit.capacity["tokens"] + limit.per_minute["tokens"] / 60 * s["admitted_span_s"]
    assert s["admitted_tokens"] / allowed >= 0.9, s
    assert s["limited"] <= 0.02 * (s["admitted"] + s["limited"]), s
