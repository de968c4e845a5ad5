"""The API key comes from the environment or .env and its bytes appear nowhere: not under the run
folder (records, rejected, stats, manifest, cache), not in log lines, not in error messages."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from typer.testing import CliRunner

from pocketguide.cli.main import app
from pocketguide.engine.runner import run_stage
from pocketguide.testing import Reply

KEY = "sk-pg-test-9f8e7d6c5b4a-SECRET"


def project(pipeline_dir, server, n=12):
    rows = "".join(json.dumps({"id": f"r{i}", "q": f"question {i}"}) + "\n" for i in range(n))
    yaml = f"""
pipeline:
  name: t
  data_dir: runs
  concurrency: 2
  teacher:
    base_url: "{server.base_url}"
    model: m1
    fallback_models: [m2]
    max_retries: 1
    retry_initial_s: 0.02
    prices: {{m1: {{input: 1, output: 1}}}}
stages:
  - name: a
    source: data/src.jsonl
    template: q.j2
    mode: llm
"""
    return pipeline_dir(yaml, {"q.j2": "Q: {{ source.q }}"}, {"data/src.jsonl": rows})


def mixed_replies():
    """Successes, 429s, 500s, 401s that echo the Authorization header, non-JSON bodies."""
    n = [0]
    lock = threading.Lock()

    def reply(req):
        with lock:
            n[0] += 1
            i = n[0]
        kinds = [Reply(text="ok"), Reply(status=429, headers={"retry-after": "0"}), Reply(status=500),
                 Reply(status=401, error=f"Incorrect API key provided: {KEY}"), Reply(body=f"oops {KEY}")]
        return kinds[i % len(kinds)]

    return reply


def assert_no_key_under(root: Path) -> None:
    hits = [str(p) for p in root.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert hits == []


def test_key_from_env_never_reaches_artifacts_or_logs(fake_openai, pipeline_dir, monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    server = fake_openai(mixed_replies())
    path = project(pipeline_dir, server)
    res = run_stage("a", path)
    assert res.new_accepted + res.new_rejected == 12
    assert server.headers_seen[0]["authorization"] == f"Bearer {KEY}"  # it was really sent
    rejected = (path.parent / "runs" / "a" / "rejected.jsonl").read_text()
    assert "[REDACTED]" in rejected  # the 401 echoed the key; the stored error was redacted
    assert_no_key_under(path.parent)
    assert KEY not in caplog.text
    assert any("retry" in r.getMessage() for r in caplog.records)  # the retry path did log


def test_key_from_dotenv_in_working_dir_without_overriding_env(fake_openai, pipeline_dir, monkeypatch):
    server = fake_openai(lambda req: Reply(text="ok"))
    path = project(pipeline_dir, server, n=2)
    monkeypatch.chdir(path.parent)
    Path(".env").write_text(f"OPENAI_API_KEY={KEY}\n")
    out = CliRunner().invoke(app, ["run", "a"])
    assert out.exit_code == 0, out.output
    assert server.headers_seen[-1]["authorization"] == f"Bearer {KEY}"
    assert KEY not in out.output
    assert_no_key_under(path.parent / "runs")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    CliRunner().invoke(app, ["run", "a", "--fresh", "--no-cache"])
    assert server.headers_seen[-1]["authorization"] == "Bearer sk-from-the-environment"


def test_official_endpoint_without_key_says_where_to_put_it(pipeline_dir, monkeypatch):
    path = pipeline_dir("""
pipeline: {name: t, data_dir: runs, teacher: {base_url: "https://openrouter.ai/api/v1", model: x,
           api_key_env: OPENROUTER_API_KEY}}
stages: [{name: a, source: data/src.jsonl, template: q.j2, mode: llm}]
""", {"q.j2": "{{ source.q }}"}, {"data/src.jsonl": '{"id": "r0", "q": "hi"}\n'})
    monkeypatch.chdir(path.parent)
    out = CliRunner().invoke(app, ["run", "a"])
    assert out.exit_code == 2
    text = " ".join(out.output.split())  # rich wraps long lines
    assert "set the OPENROUTER_API_KEY environment variable (or put it in .env)" in text


def test_credentials_inside_base_url_are_not_stored(fake_openai, pipeline_dir):
    server = fake_openai(lambda req: Reply(status=500, error="down"))
    url = server.base_url.replace("http://", "http://bob:url-pass-77aa@")
    path = project(pipeline_dir, server, n=1)
    path.write_text(path.read_text().replace(server.base_url, url).replace("max_retries: 1", "max_retries: 0"))
    run_stage("a", path)
    hits = [str(p) for p in (path.parent / "runs").rglob("*") if p.is_file() and b"url-pass-77aa" in p.read_bytes()]
    assert hits == []
    manifest = json.loads((path.parent / "runs" / "a" / "manifest.json").read_text())
    assert manifest["teacher"]["base_url"] == server.base_url
