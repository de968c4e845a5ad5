"""The flow-control pieces on their own: adaptive concurrency, header parsing, the breaker, the chain,
prices, and the optional-parameter detection; plus a 429 burst through the runner."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from pocketguide.engine.errors import TeacherError
from pocketguide.engine.runner import run_stage
from pocketguide.engine.teacher_spec import Price, TeacherSettings
from pocketguide.teachers.base import TeacherRequest
from pocketguide.teachers.fallback import model_chain
from pocketguide.teachers.flow import AdaptiveConcurrency, CircuitBreaker
from pocketguide.teachers.limits import RateLimits, parse_reset, retry_after_s
from pocketguide.teachers.pricing import cost_of
from pocketguide.teachers.retry import refused_parameter, without
from pocketguide.testing import Reply


def test_concurrency_is_cut_once_per_burst_and_creeps_back():
    async def scenario():
        c = AdaptiveConcurrency(32)
        starts = [await c.acquire() for _ in range(32)]
        for s in starts[:10]:  # ten 429s from requests sent under the old limit: one cut
            c.throttled(s)
        assert int(c.limit) == 16 and c.cuts == 1
        for _ in range(32):
            await c.release()
        later = await c.acquire()
        c.throttled(later)  # a 429 from a request sent after the cut: a new burst
        assert int(c.limit) == 1 and c.cuts == 2  # half of what was in flight (1), never below 1
        await c.release()
        for _ in range(40):
            c.succeeded()
        assert c.limit == 32  # back up to the ceiling, never above

    asyncio.run(scenario())


def test_in_flight_never_exceeds_the_limit():
    async def scenario():
        c = AdaptiveConcurrency(3)
        peak = [0]

        async def job():
            await c.acquire()
            peak[0] = max(peak[0], c.in_flight)
            await asyncio.sleep(0.01)
            await c.release()

        await asyncio.gather(*(job() for _ in range(20)))
        return peak[0]

    assert asyncio.run(scenario()) == 3


@pytest.mark.parametrize("value,seconds", [("1s", 1.0), ("6m0s", 360.0), ("250ms", 0.25), ("2", 2.0),
                                           ("1m30.5s", 90.5), ("junk", None), (None, None)])
def test_parse_reset(value, seconds):
    assert parse_reset(value) == seconds


def test_reset_as_epoch_and_retry_after_ms():
    now = 1_700_000_000.0
    assert parse_reset(str(int((now + 5) * 1000)), now) == pytest.approx(5.0)
    assert parse_reset(str(int(now + 7)), now) == pytest.approx(7.0)
    assert retry_after_s({"retry-after-ms": "1500"}) == 1.5


def test_headers_tighten_and_remaining_caps_the_bucket():
    async def scenario():
        limits = RateLimits(rpm=1000, input_tpm=None, output_tpm=None)
        limits.follow({"x-ratelimit-limit-requests": "600", "x-ratelimit-limit-tokens": "90000"}, None)
        assert limits.limits == {"requests": 600, "tokens": 90000}
        limits.follow({"x-ratelimit-limit-requests": "5000"}, None)  # looser than ours: ignored
        assert limits.limits["requests"] == 600
        ticket = await limits.acquire(10, 10)
        await limits.acquire(10, 10)  # sent after `ticket`: the server had not counted it yet
        # 600/min = 10/s; the server says 1 left after `ticket`, and one more went since: none left now
        limits.follow({"x-ratelimit-remaining-requests": "1"}, ticket)
        started = time.monotonic()
        await limits.acquire(10, 10)
        return time.monotonic() - started

    assert 0.08 <= asyncio.run(scenario()) < 0.5  # one refill (0.1 s), not the 6 s a full bucket takes


def test_exhausted_limit_with_no_announced_rate_pauses_until_reset():
    async def scenario():
        limits = RateLimits(rpm=None, input_tpm=None, output_tpm=None)
        reason, seconds = limits.follow({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "300ms"},
                                        None)
        assert "x-ratelimit-remaining-tokens=0" in reason and seconds == pytest.approx(0.3)
        assert limits.pause(seconds, reason) == pytest.approx(0.3, abs=0.01)
        assert limits.pause(0.1, reason) == 0.0  # inside the current pause: adds nothing
        started = time.monotonic()
        await limits.acquire(10, 10)
        return time.monotonic() - started, limits.summary()

    waited, summary = asyncio.run(scenario())
    assert 0.25 <= waited < 1.0
    assert summary["paused_s"] == pytest.approx(0.3, abs=0.01)
    assert [v["pauses"] for v in summary["pauses"].values()] == [1]


def test_breaker_opens_over_half_errors_in_the_window():
    b = CircuitBreaker(window=10, error_rate=0.5)
    for ok in [True] * 5 + [False] * 5:
        b.record(ok)
    assert not b.opened  # 50% is not more than 50%
    b.record(False)
    assert b.opened


def test_model_chain_order():
    s = TeacherSettings(model="a", models=["b", "a", "c"], fallback_models=["d", "b"])
    assert model_chain(s, None) == ["a", "b", "c", "d"]
    assert model_chain(s, "z") == ["z", "b", "a", "c", "d"]  # a variant's model first, then the lists
    assert model_chain(TeacherSettings(models=["x", "y"]), None) == ["x", "y"]


def test_prices_exact_short_and_default():
    prices = {"openai/gpt-x": Price(input=1, output=2), "*": Price(input=0.5, output=0.5)}
    usage = {"prompt_tokens": 2_000_000, "completion_tokens": 1_000_000}
    assert cost_of(prices, usage, "openai/gpt-x") == 4.0
    assert cost_of({"gpt-x": Price(input=1, output=2)}, usage, "openai/gpt-x") == 4.0
    assert cost_of(prices, usage, "other") == 1.5
    assert cost_of(None, usage, "other") is None


def test_refused_parameter_detection():
    req = TeacherRequest(messages=[], seed=3, response_format={"type": "json_object"}, max_tokens=9)

    def err(msg, status=400):
        e = TeacherError("http_400", msg + " — the endpoint rejected a parameter; check response_format",
                         status=status)
        e.detail = msg
        return e

    assert refused_parameter(err("Unsupported parameter: 'seed'"), req) == "seed"
    assert refused_parameter(err("response_format is not supported"), req) == "response_format"
    assert refused_parameter(err("context length exceeded"), req) is None  # the hint alone is no evidence
    assert refused_parameter(err("unknown field top_p"), req) is None  # not sent
    assert refused_parameter(err("seed unsupported", status=422), req) is None
    stripped, notes = without(req, {"max_tokens", "seed"})
    assert stripped.max_tokens is None and stripped.seed is None
    assert stripped.extra_body == {"max_completion_tokens": 9} and len(notes) == 2


def test_429_burst_cuts_concurrency_once_and_finishes(fake_openai, pipeline_dir):
    n = [0]
    lock = threading.Lock()

    def reply(req):
        with lock:
            n[0] += 1
            first = n[0] <= 8
        # the first 8 requests (all sent together) are throttled: one burst
        return Reply(status=429, delay=0.05) if first else Reply(text="ok", delay=0.02)

    server = fake_openai(reply)
    rows = "".join(json.dumps({"id": f"r{i}", "q": f"q{i}"}) + "\n" for i in range(8))
    path = pipeline_dir(f"""
pipeline:
  name: t
  data_dir: runs
  concurrency: 8
  teacher: {{base_url: "{server.base_url}", model: m1, retry_initial_s: 0.05, retry_max_s: 0.1}}
stages: [{{name: a, source: data/src.jsonl, template: q.j2, mode: llm}}]
""", {"q.j2": "{{ source.q }}"}, {"data/src.jsonl": rows})
    res = run_stage("a", path)
    assert res.new_accepted == 8 and server.count() == 16
    flow = json.loads((path.parent / "runs" / "a" / "manifest.json").read_text())["teacher"]["flow"][0]
    assert flow["concurrency_cuts"] == 1 and flow["rate_limited"] == 8
    assert flow["concurrency_limit"] == 8  # crept back up to the ceiling on the 8 successes


def test_teacher_identity_prefers_the_teachers_own_cache_identity():
    from pocketguide.teachers.cache import endpoint_identity, teacher_identity

    class Embedded:
        def cache_identity(self):
            return {"model_path": "/somewhere/m.gguf", "model_sha256": "ab12", "runtime_version": "1.0"}

    class Remote:
        def describe(self):
            return {"provider": "openai", "base_url": "https://user:pw@api.example.com:8443/v1/?x=1"}

    moved = Embedded()
    moved.cache_identity = lambda: {"model_path": "/elsewhere/m.gguf", "model_sha256": "ab12",
                                    "runtime_version": "1.0"}
    assert teacher_identity(Embedded()) == teacher_identity(moved)
    assert "ab12" in teacher_identity(Embedded())
    assert teacher_identity(Remote()) == "https://api.example.com:8443/v1"  # no credentials, no query
    assert endpoint_identity({"sha256": "ff"}) == "sha256:ff"


def test_openrouter_single_window_headers_pause():
    async def scenario():
        limits = RateLimits(None, None, None)
        reset_ms = int((time.time() + 0.4) * 1000)
        reason, seconds = limits.follow({"x-ratelimit-limit": "20", "x-ratelimit-remaining": "0",
                                         "x-ratelimit-reset": str(reset_ms)}, None)
        limits.pause(seconds, reason)
        started = time.monotonic()
        await limits.acquire(1, 1)
        return time.monotonic() - started

    assert 0.2 <= asyncio.run(scenario()) < 1.2


def test_models_list_alone_is_a_chain(fake_openai, pipeline_dir):
    server = fake_openai(lambda req: Reply(status=503) if req["model"] == "x" else Reply(text=req["model"]))
    path = pipeline_dir(f"""
pipeline:
  name: t
  data_dir: runs
  teacher: {{base_url: "{server.base_url}", models: [x, y], max_retries: 0}}
stages: [{{name: a, source: data/src.jsonl, template: q.j2, mode: llm}}]
""", {"q.j2": "{{ source.q }}"}, {"data/src.jsonl": '{"id": "r0", "q": "hi"}\n'})
    assert run_stage("a", path).new_accepted == 1
    rec = json.loads((path.parent / "runs" / "a" / "records.jsonl").read_text())
    assert rec["raw"] == "y" and rec["teacher"]["attempted_models"] == ["x", "y"]
