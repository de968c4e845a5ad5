"""The real openai client against a loopback OpenAI-compatible server started by the test."""

from __future__ import annotations

import json

from pocketguide import run_stage
from pocketguide.engine.session import RunOptions
from pocketguide.engine.store import iter_jsonl
from pocketguide.engine.teacher_spec import TeacherSettings
from pocketguide.testing import Reply

STAGE = """
    pipeline:
      teacher: {provider: openai, model: teacher-1, temperature: 0.1, max_tokens: 64, system_prompt: "Be brief.",
                max_retries: 1, retry_initial_s: 0.01, retry_max_s: 0.02}
    stages:
      - {name: ask, source: in.jsonl, template: t.j2, mode: llm, parser: json, facets: [kind]}
"""
SOURCE = "".join(json.dumps({"id": f"q{i}", "kind": k}) + "\n"
                 for i, k in enumerate(["ok", "ok", "garbage", "cut", "boom", "bad_request", "none"]))


def script(req):
    prompt = req["messages"][-1]["content"]
    kind = prompt.split()[-1]
    if kind == "garbage":
        return Reply(text="sure! here you go")
    if kind == "cut":
        return Reply(text='{"a": ', finish_reason="length")
    if kind == "boom":
        return Reply(status=500)
    if kind == "bad_request":
        return Reply(status=400, error="unsupported parameter")
    if kind == "none":
        return Reply(body="<html>not json</html>")
    return Reply(text=json.dumps({"answer": prompt}), usage={"prompt_tokens": 7, "completion_tokens": 3,
                                                             "total_tokens": 10})


def test_llm_stage_outcomes_and_provenance(pipeline_dir, fake_openai, monkeypatch):
    server = fake_openai(script)
    path = pipeline_dir(STAGE, {"t.j2": "answer {{ source.kind }}"}, {"in.jsonl": SOURCE})
    result = run_stage("ask", path)
    assert (result.accepted, result.rejected) == (2, 5)
    runs = path.parent / "data/runs/ask"
    rej = {r["id"]: r for r in iter_jsonl(runs / "rejected.jsonl")}
    assert rej["q2"]["reasons"] == ["parse_failed"] and rej["q2"]["raw"] == "sure! here you go"
    assert rej["q3"]["reasons"] == ["truncated"] and rej["q3"]["raw"] == '{"a": '
    assert rej["q4"]["reasons"] == ["teacher_error:http_500"]
    assert rej["q5"]["reasons"] == ["teacher_error:http_400"] and "rejected a parameter" in rej["q5"]["error"]
    assert rej["q6"]["reasons"][0].startswith("teacher_error:")
    ok = next(iter_jsonl(runs / "records.jsonl"))
    t = ok["teacher"]
    assert t["model"] == "teacher-1" and t["finish_reason"] == "stop"
    assert t["usage"] == {"prompt_tokens": 7, "completion_tokens": 3} and t["latency_s"] >= 0
    # which provider answered, and the answer's request id (x-request-id) for a support ticket
    ids = [r["teacher"]["request_id"] for r in iter_jsonl(runs / "records.jsonl")]
    assert t["provider"] == "openai" and all(i.startswith("req_fake_") for i in ids) and len(set(ids)) == len(ids)
    first = server.requests[0]
    assert first["messages"][0] == {"role": "system", "content": "Be brief."}
    assert first["temperature"] == 0.1 and first["max_tokens"] == 64
    stats = json.loads((runs / "stats.json").read_text())
    assert stats["teacher"]["prompt_tokens"] == 7 + 7 + 10 + 10  # ok, ok, garbage, cut and stats["teacher"]["latency_p50_s"] is not None
    assert stats["rejection_reasons"]["truncated"] == 1


def test_rerun_sends_nothing_for_finished_records(pipeline_dir, fake_openai):
    server = fake_openai(script)
    path = pipeline_dir(STAGE, {"t.j2": "answer {{ source.kind }}"}, {"in.jsonl": SOURCE})
    run_stage("ask", path)
    sent = len(server.requests)
    again = run_stage("ask", path)
    retried = [r["messages"][-1]["content"] for r in server.requests[sent:]]
    # finished records (accepted, unparseable, truncated) are never sent again; teacher errors are retried
    assert sorted(set(retried)) == ["answer bad_request", "answer boom", "answer none"]
    assert again.skipped_done == 4 and again.superseded == 3


def test_cli_overrides_and_key_never_stored(pipeline_dir, fake_openai, monkeypatch, caplog):
    secret = "sk-test-SECRET-abcdef123456"
    monkeypatch.setenv("MY_KEY", secret)
    server = fake_openai(script)
    path = pipeline_dir(STAGE.replace("max_tokens: 64,", "max_tokens: 64, api_key_env: MY_KEY,"),
                        {"t.j2": "answer {{ source.kind }}"}, {"in.jsonl": SOURCE})
    opts = RunOptions(teacher=TeacherSettings(model="override-model", base_url=server.base_url))
    run_stage("ask", path, options=opts)
    assert {r["model"] for r in server.requests} == {"override-model"}
    assert server.headers_seen[0]["authorization"] == f"Bearer {secret}"
    for f in (path.parent / "data").rglob("*"):
        if f.is_file():
            assert secret not in f.read_text(errors="replace"), f
    assert secret not in caplog.text


def test_missing_key_for_official_endpoint_fails_before_any_work(pipeline_dir):
    import pytest

    from pocketguide.engine.errors import TeacherConfigError

    path = pipeline_dir(STAGE, {"t.j2": "answer {{ source.kind }}"}, {"in.jsonl": SOURCE})
    with pytest.raises(TeacherConfigError, match="set the OPENAI_API_KEY environment variable"):
        run_stage("ask", path)
    assert not (path.parent / "data/runs/ask/records.jsonl").exists() or \
        (path.parent / "data/runs/ask/records.jsonl").read_text() == ""


def test_arbitrary_teacher_text_never_corrupts_output(pipeline_dir, fake_openai):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    answers: list[str] = []
    examples = iter(range(10**6))  # a fresh project per example: no resume or cache across examples
    fake_openai(lambda req: Reply(text=answers[int(req["messages"][-1]["content"])]))

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(texts=st.lists(st.text(alphabet=st.characters(blacklist_categories=()), max_size=2000)
                          | st.just("\x00" * 5000), min_size=1, max_size=4))
    def check(texts):
        answers[:] = texts
        source = "".join(json.dumps({"id": f"x{i}", "n": i}) + "\n" for i in range(len(texts)))
        path = pipeline_dir("""
            pipeline: {teacher: {provider: openai, model: m}}
            stages:
              - {name: ask, source: in.jsonl, template: t.j2, mode: llm, parser: identity}
        """, {"t.j2": "{{ source.n }}"}, {"in.jsonl": source}, name=f"p{next(examples)}")
        run_stage("ask", path)
        got = {r["id"]: r for r in iter_jsonl(path.parent / "data/runs/ask/records.jsonl")}
        assert len(got) == len(texts)
        for i, t in enumerate(texts):
            assert got[f"x{i}"]["raw"] == t

    check()


def test_request_id_falls_back_to_the_completion_id_and_survives_the_cache(pipeline_dir, fake_openai):
    fake_openai(lambda req: Reply(text='{"answer": 1}', headers={"x-request-id": ""}))  # a server without one
    path = pipeline_dir(STAGE, {"t.j2": "answer {{ source.kind }}"}, {"in.jsonl": SOURCE.splitlines()[0] + "\n"})
    run_stage("ask", path)
    (first,) = iter_jsonl(path.parent / "data/runs/ask/records.jsonl")
    assert first["teacher"]["request_id"].startswith("chatcmpl-fake-")
    run_stage("ask", path, fresh=True)  # answered from the response cache: the paid-for answer's ids
    (again,) = iter_jsonl(path.parent / "data/runs/ask/records.jsonl")
    assert again["teacher"]["cached"] is True
    assert (again["teacher"]["provider"], again["teacher"]["request_id"]) == ("openai", first["teacher"]["request_id"])
