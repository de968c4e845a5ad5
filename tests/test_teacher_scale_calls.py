"""Teacher at scale, against the loopback server: retries and backoff, fail-fast 4xx, optional-parameter
fallback, structured outputs, truncation, the model fallback chain, the circuit breaker, rate limits."""

from __future__ import annotations

import itertools
import json
import threading
import time

import pytest

from pocketguide.engine.runner import run_stage
from pocketguide.engine.session import RunOptions
from pocketguide.testing import Reply, scripted

TEMPLATES = {"q.j2": "Q: {{ source.q }}"}


def project(pipeline_dir, server, n=1, teacher="", stage_extra="", concurrency=4):
    rows = "".join(json.dumps({"id": f"r{i}", "q": f"question {i}"}) + "\n" for i in range(n))
    yaml = f"""
pipeline:
  name: t
  data_dir: runs
  concurrency: {concurrency}
  teacher:
    base_url: "{server.base_url}"
    model: m1
    retry_initial_s: 0.05
    retry_max_s: 0.2
{teacher}
stages:
  - name: a
    source: data/src.jsonl
    template: q.j2
    mode: llm
{stage_extra}
"""
    return pipeline_dir(yaml, TEMPLATES, {"data/src.jsonl": rows})


def records(path, name="a"):
    out = {}
    for f in ("records.jsonl", "rejected.jsonl"):
        p = path.parent / "runs" / name / f
        if p.exists():
            for line in p.read_text().splitlines():
                rec = json.loads(line)
                out[rec["id"]] = rec
    return out


def test_500_then_success_is_retried_and_recorded(fake_openai, pipeline_dir):
    server = fake_openai(scripted(Reply(status=500, error="boom"), Reply(status=503), then=Reply(text="fine")))
    path = project(pipeline_dir, server)
    res = run_stage("a", path)
    assert (res.new_accepted, server.count()) == (1, 3)
    rec = records(path)["r0"]
    assert rec["raw"] == "fine" and rec["teacher"]["attempted_models"] == ["m1"] and rec["teacher"]["errors"] == []


def test_429_retry_after_is_honoured(fake_openai, pipeline_dir):
    times: list[float] = []

    def reply(req):
        times.append(time.monotonic())
        return Reply(status=429, headers={"retry-after": "1"}) if len(times) == 1 else Reply(text="ok")

    server = fake_openai(reply)
    path = project(pipeline_dir, server)
    assert run_stage("a", path).new_accepted == 1
    assert server.count() == 2
    gap = times[1] - times[0]
    assert 1.0 <= gap < 2.0, gap  # waited for Retry-After, not the 0.05 s backoff


def test_backoff_is_exponential_with_full_jitter_within_bounds(fake_openai, pipeline_dir):
    times: list[float] = []

    def reply(req):
        times.append(time.monotonic())
        return Reply(status=502) if len(times) <= 3 else Reply(text="ok")

    server = fake_openai(reply)
    path = project(pipeline_dir, server, teacher="    retry_initial_s: 0.1\n    retry_max_s: 5")
    assert run_stage("a", path).new_accepted == 1
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for n, gap in enumerate(gaps, 1):  # wait n: a uniform draw below 0.1 * 2**(n-1)
        assert gap <= 0.1 * 2 ** (n - 1) + 0.3, (n, gaps)  # + slack for a loaded machine


def test_full_jitter_draws_below_the_doubling_cap_and_never_under_retry_after():
    import random

    from pocketguide.engine.errors import TeacherError
    from pocketguide.teachers.retry import _Wait

    wait = _Wait(0.25, 2.0, random.Random(3))

    err = TeacherError("http_500", "boom", retryable=True, status=500)
    for attempt, cap in ((1, 0.25), (2, 0.5), (3, 1.0), (4, 2.0), (6, 2.0)):  # doubling, then retry_max_s
        draws = [wait(attempt, err) for _ in range(4000)]
        assert 0 <= min(draws) < 0.02 * cap and cap * 0.98 < max(draws) <= cap, (attempt, min(draws), max(draws))
        assert abs(sum(draws) / len(draws) - cap / 2) < 0.05 * cap  # uniform: half the cap on average
    limited = TeacherError("rate_limit", "slow down", retryable=True, status=429)
    limited.headers = {"retry-after": "1"}
    assert min(wait(1, limited) for _ in range(500)) == 1.0  # the server's wait, not a shorter draw
    limited.headers = {"retry-after-ms": "1500"}
    assert min(wait(5, limited) for _ in range(500)) >= 1.5


def test_hang_past_timeout_is_retried_then_rejected(fake_openai, pipeline_dir):
    server = fake_openai(lambda req: Reply(text="late", delay=3))
    path = project(pipeline_dir, server, teacher="    timeout_s: 0.2\n    max_retries: 1")
    started = time.monotonic()
    res = run_stage("a", path)
    assert time.monotonic() - started < 2.5
    assert (res.new_rejected, server.count()) == (1, 2)
    rec = records(path)["r0"]
    assert rec["reasons"] == ["teacher_error:timeout"]
    assert rec["teacher"]["errors"][0]["attempts"] == 2


@pytest.mark.parametrize("status,hint", [(401, "API key was refused"), (404, "unknown model or wrong base_url"),
                                         (403, "may not use this model")])
def test_4xx_fails_fast_with_a_fix(fake_openai, pipeline_dir, status, hint):
    server = fake_openai(lambda req: Reply(status=status, error="nope"))
    path = project(pipeline_dir, server)
    res = run_stage("a", path)
    assert (res.new_rejected, server.count()) == (1, 1)
    rec = records(path)["r0"]
    assert rec["reasons"] == [f"teacher_error:http_{status}"]
    assert hint in rec["error"]


def test_non_json_body_is_retried_then_explained(fake_openai, pipeline_dir):
    server = fake_openai(scripted(Reply(body="<html>502 Bad Gateway</html>"), then=Reply(text="good")))
    path = project(pipeline_dir, server)
    assert run_stage("a", path).new_accepted == 1 and server.count() == 2
    server2 = fake_openai(lambda req: Reply(body="not json at all"))
    path2 = project(pipeline_dir, server2, teacher="    max_retries: 1").parent
    rec = None
    run_stage("a", path2 / "stages.yaml", fresh=True)
    rec = records(path2 / "stages.yaml")["r0"]
    assert rec["reasons"] == ["teacher_error:bad_response"] and "not JSON" in rec["error"]


def test_truncated_answer_is_rejected_with_raw_kept(fake_openai, pipeline_dir):
    server = fake_openai(lambda req: Reply(text="half an ans", finish_reason="length"))
    path = project(pipeline_dir, server)
    assert run_stage("a", path).new_rejected == 1
    rec = records(path)["r0"]
    assert rec["reasons"] == ["truncated"] and rec["raw"] == "half an ans"
    assert rec["teacher"]["finish_reason"] == "length"


SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"],
          "additionalProperties": False}


def structured_project(pipeline_dir, server):
    rows = "".join(json.dumps({"id": f"r{i}", "q": f"q{i}"}) + "\n" for i in range(3))
    yaml = f"""
pipeline:
  name: t
  data_dir: runs
  concurrency: 1
  teacher: {{base_url: "{server.base_url}", model: m1, response_format: json_schema, retry_initial_s: 0.05}}
stages:
  - name: a
    source: data/src.jsonl
    template: q.j2
    mode: llm
    parser: json
    schema: data/answer.schema.json
"""
    return pipeline_dir(yaml, TEMPLATES, {"data/src.jsonl": rows, "data/answer.schema.json": json.dumps(SCHEMA)})


def test_structured_output_sends_the_stage_schema(fake_openai, pipeline_dir):
    server = fake_openai(lambda req: Reply(text='{"answer": "yes"}'))
    path = structured_project(pipeline_dir, server)
    assert run_stage("a", path).new_accepted == 3
    rf = server.requests[0]["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["schema"] == SCHEMA


def test_400_rejecting_response_format_retries_once_without_it(fake_openai, pipeline_dir):
    def reply(req):
        if "response_format" in req:
            return Reply(status=400, error="response_format is not supported by this server")
        return Reply(text='{"answer": "plain"}')

    server = fake_openai(reply)
    path = structured_project(pipeline_dir, server)
    res = run_stage("a", path)
    assert res.new_accepted == 3
    # one refusal, then the endpoint is remembered: 1 + 3 requests, not 2 × 3
    assert server.count() == 4
    assert ["response_format" in r for r in server.requests] == [True, False, False, False]
    for rec in records(path).values():
        assert any("response_format dropped" in n for n in rec["teacher"]["notes"])


def test_fallback_chain_order_and_provenance(fake_openai, pipeline_dir):
    def reply(req):
        return Reply(status=500, error="m1 down") if req["model"] == "m1" else Reply(text=f"from {req['model']}")

    server = fake_openai(reply)
    path = project(pipeline_dir, server, teacher="    fallback_models: [m2, m3]\n    max_retries: 1")
    assert run_stage("a", path).new_accepted == 1
    assert [r["model"] for r in server.requests] == ["m1", "m1", "m2"]
    t = records(path)["r0"]["teacher"]
    assert t["attempted_models"] == ["m1", "m2"] and t["selected_model"] == "m2"
    assert t["errors"][0]["model"] == "m1" and t["errors"][0]["kind"] == "http_500"
    assert t["errors"][0]["attempts"] == 2


def test_total_failure_keeps_the_chain_on_the_rejected_record(fake_openai, pipeline_dir):
    server = fake_openai(lambda req: Reply(status=404, error=f"no such model {req['model']}"))
    path = project(pipeline_dir, server, teacher="    models: [m1, m2]")
    assert run_stage("a", path).new_rejected == 1
    assert [r["model"] for r in server.requests] == ["m1", "m2"]
    rec = records(path)["r0"]
    assert rec["reasons"] == ["teacher_error:http_404"]
    assert rec["teacher"]["attempted_models"] == ["m1", "m2"]
    assert [e["model"] for e in rec["teacher"]["errors"]] == ["m1", "m2"]
    assert "all 2 models failed" in rec["error"]


def test_circuit_breaker_stops_the_stage_and_keeps_finished_work(fake_openai, pipeline_dir):
    count = [0]
    lock = threading.Lock()

    def reply(req):
        with lock:
            count[0] += 1
            n = count[0]
        return Reply(text="ok") if n <= 5 else Reply(status=500, error="dead")

    server = fake_openai(reply)
    path = project(pipeline_dir, server, n=200, concurrency=1,
                   teacher="    max_retries: 0\n    circuit_window: 20\n    circuit_error_rate: 0.5")
    res = run_stage("a", path)
    assert res.stopped and "circuit breaker open" in res.stopped and "dead" in res.stopped
    assert res.new_accepted == 5 and not res.complete
    assert server.count() < 40  # stopped soon after the window turned bad, not after 200 requests
    assert len([r for r in records(path).values() if r["status"] == "accepted"]) == 5


def test_rate_limit_headers_pace_new_requests(fake_openai, pipeline_dir):
    times: list[float] = []

    def reply(req):
        times.append(time.monotonic())
        if len(times) == 1:  # 600/min = one request per 0.1 s; none left; full again (60) in 6 s
            return Reply(text="ok", headers={"x-ratelimit-remaining-requests": "0",
                                             "x-ratelimit-reset-requests": "6s",
                                             "x-ratelimit-limit-requests": "600"})
        return Reply(text="ok")

    server = fake_openai(reply)
    path = project(pipeline_dir, server, n=2, concurrency=1)
    run_stage("a", path)
    assert 0.08 <= times[1] - times[0] < 0.6  # the next unit (0.1 s), not a whole refill
    manifest = json.loads((path.parent / "runs" / "a" / "manifest.json").read_text())
    flow = manifest["teacher"]["flow"][0]
    assert flow["limits_per_minute"]["requests"] == 600  # tightened from no limit to the announced one


def test_requests_per_minute_paces_requests(fake_openai, pipeline_dir):
    server = fake_openai(lambda req: Reply(text="ok"))
    # 600/min = 10/s with a burst of 60: the first 60 go at once, the next 10 need about a second
    path = project(pipeline_dir, server, n=70, concurrency=8, teacher="    requests_per_minute: 600")
    started = time.monotonic()
    assert run_stage("a", path).new_accepted == 70
    assert 0.8 <= time.monotonic() - started < 4


def test_extra_headers_and_body_pass_through(fake_openai, pipeline_dir):
    server = fake_openai(lambda req: Reply(text="ok"))
    path = project(pipeline_dir, server, teacher='    extra_headers: {X-Title: pocketguide}\n'
                                                 '    extra_body: {provider: {order: [a, b]}}')
    run_stage("a", path)
    assert server.headers_seen[0]["x-title"] == "pocketguide"
    assert server.requests[0]["provider"] == {"order": ["a", "b"]}


def test_prices_give_cost_per_record_and_run(fake_openai, pipeline_dir):
    server = fake_openai(lambda req: Reply(text="ok", usage={"prompt_tokens": 1000, "completion_tokens": 500,
                                                            "total_tokens": 1500}))
    path = project(pipeline_dir, server, n=4,
                   teacher="    prices: {m1: {input: 2.0, output: 10.0}}")
    res = run_stage("a", path, options=RunOptions())
    for rec in records(path).values():
        assert rec["teacher"]["cost"] == pytest.approx(0.002 + 0.005)
    assert res.stats["teacher"]["cost"] == pytest.approx(4 * 0.007)
    assert res.stats["teacher"]["prompt_tokens"] == 4000


def test_resume_retries_teacher_failures_and_pays_only_for_them(fake_openai, pipeline_dir):
    state = {"down": True}

    def reply(req):
        n = int(req["messages"][-1]["content"].rsplit(" ", 1)[-1])
        return Reply(status=500, error="outage") if state["down"] and n % 2 else Reply(text=f"ok {n}")

    server = fake_openai(reply)
    path = project(pipeline_dir, server, n=6, teacher="    max_retries: 0")
    res = run_stage("a", path)
    assert (res.new_accepted, res.new_rejected, server.count()) == (3, 3, 6)
    state["down"] = False
    res = run_stage("a", path)
    assert (res.new_accepted, res.superseded, res.skipped_done) == (3, 3, 3)
    assert server.count() == 9  # only the three that failed were asked again
    assert all(r["status"] == "accepted" for r in records(path).values())
    superseded = (path.parent / "runs" / "a" / "superseded.jsonl").read_text().splitlines()
    assert len(superseded) == 3 and all("teacher_error:http_500" in line for line in superseded)
