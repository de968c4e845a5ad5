"""No secret in any form: credentials in base_url are stripped (the key still goes out as Bearer), the
HTTP libraries never log URLs, and a server that echoes the Authorization header back — raw, base64,
URL-encoded, JSON-escaped — into error bodies and answers leaves no trace in any file the run wrote
(records, rejected, stats, manifest, the SQLite cache and its WAL) nor in the CLI's --verbose output."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import quote, quote_plus

from pocketguide.engine import redact
from pocketguide.engine.runner import run_stage
from pocketguide.testing import Reply

KEY = "sk-forms-7Hq2/xY+Lm0Pz9-SECRET"
USER, PASSWORD = "bob", "pw-Zx9/+q#1"  # `/`, `+`, `#` make the URL-encoded forms differ from the raw one


def _b64(text: str) -> list[str]:
    raw = base64.b64encode(text.encode()).decode()
    return [raw, raw.rstrip("="), base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")]


def secret_forms() -> dict[str, str]:
    """What a leak can look like, computed here (not by the module under test)."""
    forms = {"key": KEY, "key url-encoded": quote(KEY, safe=""), "key form-encoded": quote_plus(KEY),
             "key json-escaped": json.dumps(KEY)[1:-1], "password": PASSWORD,
             "password url-encoded": quote(PASSWORD, safe=""), "user:password": f"{USER}:{PASSWORD}"}
    for name, text in (("key", KEY), ("bearer header", f"Bearer {KEY}"), ("basic header", f"{USER}:{PASSWORD}"),
                       ("password", PASSWORD)):
        for i, b in enumerate(_b64(text)):
            forms[f"{name} base64 #{i}"] = b
    return forms


def echo_replies(server):
    """Answers that hand the request's Authorization header back in every form, in errors and in text."""
    n = [0]
    lock = threading.Lock()

    def reply(req):
        with lock:
            n[0] += 1
            i = n[0]
        auth = server.headers_seen[-1].get("authorization", "")  # concurrency 1: the header of this request
        token = auth.split(" ", 1)[-1]
        echoes = [f"Incorrect API key: {auth}", f"key (base64): {base64.b64encode(auth.encode()).decode()}",
                  f"key in a URL: https://h/?k={quote(token, safe='')}", json.dumps({"seen": auth}),
                  f"Basic {base64.b64encode(f'{USER}:{token}'.encode()).decode()}"]
        echo = echoes[i % len(echoes)]
        kinds = [Reply(status=401, error=echo), Reply(status=500, error=echo), Reply(body=f"<html>{echo}</html>"),
                 Reply(text=f"Sure. {echo}"), Reply(text="clean answer")]
        return kinds[i % len(kinds)]

    return reply


def _project(pipeline_dir, server, n: int = 15) -> Path:
    url = server.base_url.replace("http://", f"http://{USER}:{quote(PASSWORD, safe='')}@")
    rows = "".join(json.dumps({"id": f"r{i}", "q": f"question {i}"}) + "\n" for i in range(n))
    return pipeline_dir(f"""
pipeline:
  name: t
  data_dir: runs
  concurrency: 1
  teacher: {{base_url: "{url}", model: m1, max_retries: 1, retry_initial_s: 0.01, circuit_error_rate: 1.0}}
stages:
  - {{name: a, source: data/src.jsonl, template: q.j2, mode: llm}}
""", {"q.j2": "Q: {{ source.q }}"}, {"data/src.jsonl": rows})


def leaks(blobs: dict[str, bytes]) -> dict[str, int]:
    """How often each secret form occurs across the given files/outputs (all should be 0)."""
    counts = {name: sum(blob.count(form.encode()) for blob in blobs.values()) for name, form in secret_forms().items()}
    return {name: c for name, c in counts.items() if c}


def written_files(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file() and p.name != "stages.yaml"}


def test_url_credentials_are_stripped_and_the_key_goes_out_as_bearer(fake_openai, pipeline_dir, monkeypatch,
                                                                    caplog):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    server = fake_openai(lambda req: Reply(text="ok"))
    path = _project(pipeline_dir, server, n=2)
    res = run_stage("a", path)
    assert res.new_accepted == 2
    assert {h.get("authorization") for h in server.headers_seen} == {f"Bearer {KEY}"}  # never Basic
    assert "carried credentials (bob:***@); they were removed" in caplog.text
    manifest = json.loads((path.parent / "runs" / "a" / "manifest.json").read_text())
    assert manifest["teacher"]["base_url"] == server.base_url
    assert leaks({"log": caplog.text.encode()}) == {}


def test_an_echoing_server_leaves_no_secret_form_in_files_or_logs(fake_openai, pipeline_dir, monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    server = fake_openai()
    server.reply = echo_replies(server)
    path = _project(pipeline_dir, server)
    res = run_stage("a", path)
    assert res.new_accepted + res.new_rejected == 15 and res.new_rejected >= 4  # 401s, 500s, HTML bodies
    files = written_files(path.parent)
    assert any(name.endswith("cache.sqlite") for name in files) and len(files) >= 6
    assert b"[REDACTED]" in b"".join(files.values())  # the echoes were there, and were scrubbed
    assert leaks(files) == {}
    assert leaks({"log": caplog.text.encode()}) == {}


def test_cli_verbose_output_and_files_hold_no_secret_form(fake_openai, pipeline_dir, tmp_path):
    server = fake_openai()
    server.reply = echo_replies(server)
    path = _project(pipeline_dir, server, n=10)
    env = {**os.environ, "OPENAI_API_KEY": KEY, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("OPENAI_BASE_URL", None)
    proc = subprocess.run([sys.executable, "-m", "pocketguide", "--verbose", "--pipeline", str(path), "run", "a"],
                          capture_output=True, env=env, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert b"DEBUG" in proc.stderr  # --verbose really logged at DEBUG
    assert b"HTTP Request:" not in proc.stderr  # httpx's URL lines stay off
    assert leaks({"stdout": proc.stdout, "stderr": proc.stderr}) == {}
    assert leaks(written_files(path.parent)) == {}
    assert server.count() >= 10


def test_every_form_is_scrubbed_by_the_one_module():
    redact.register(KEY, PASSWORD, f"{USER}:{PASSWORD}")
    for name, form in secret_forms().items():
        text = f"before {form} after"
        assert form not in redact.scrub(text), name
        assert form.encode() not in redact.scrub_bytes(text.encode()), name
    inside = base64.b64encode(f"prefix-{KEY}-suffix".encode()).decode()  # any alignment in a longer blob
    assert redact.scrub(inside) != inside
    assert redact.scrub("an ordinary sentence, pw and all") == "an ordinary sentence, pw and all"
