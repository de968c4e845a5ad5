"""A small real run for the report tests: a copy stage from a source file and an llm stage answered by
the loopback server, with one teacher reply that plants markup and script in the page's data."""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import write_pipeline

from pocketguide.engine.loader import load_pipeline
from pocketguide.engine.pipeline import run_pipeline
from pocketguide.engine.session import RunOptions
from pocketguide.engine.teacher_spec import TeacherSettings
from pocketguide.testing import FakeOpenAI, Reply

# raw output of a rejected record (not JSON): shown in the trace, must stay text
PLANTED_RAW = ('<script>document.body.setAttribute("data-pwned", "script")</script>'
               '<img src=x onerror="document.body.setAttribute(\'data-pwned\', \'onerror\')">')
# a string inside an accepted record's parsed JSON: must not close the page's data block
PLANTED_JSON = json.dumps({"answer": '</script><script>document.body.setAttribute("data-pwned", "json")</script>'
                                     '<!-- <img src=x onerror=alert(1)>', "tone": "calm"})

_SERVER: FakeOpenAI | None = None  # one loopback server per test (conftest stops it after each): the teacher's
# endpoint is part of every record's fingerprint, so a test's reruns must reach the same address


def fake_teacher() -> TeacherSettings:
    """The teacher the runs here are made with (pass it to status/report so they judge against it)."""
    global _SERVER
    if _SERVER is None:
        _SERVER = FakeOpenAI(reply).__enter__()
    return TeacherSettings(provider="openai", model="fake-teacher", base_url=_SERVER.base_url)


QUESTIONS = [
    {"id": "q1", "question": "How do I get from the airport to the old town at night?", "topic": "transport"},
    {"id": "q2", "question": "What is a sensible daily budget for two days in Kyoto?", "topic": "budget"},
    {"id": "q3", "question": "Is tipping expected in restaurants in Tokyo?", "topic": "customs"},
    {"id": "q4", "question": "Cheap?", "topic": "budget"},  # too short: the copy stage's gate rejects it
    {"id": "q5", "question": "Which train pass covers the airport line and the city metro?", "topic": "transport"},
    {"id": "q6", "question": "Do museums close on Mondays in Lisbon and Porto?", "topic": "customs"},
]

STAGES = """
pipeline:
  name: report-test
  data_dir: runs
  templates_dir: templates
stages:
  - name: questions
    source: data/questions.jsonl
    template: q.j2
    mode: copy
    parser: stripped
    gates:
      - name: length
        options: {min_chars: 20}
    facets: [topic]
  - name: answers
    inputs: [questions]
    template: a.j2
    mode: llm
    parser: json
    facets: [topic]
"""


def reply(req: dict) -> Reply:
    prompt = req["messages"][-1]["content"]
    if "Tokyo" in prompt:
        return Reply(text=PLANTED_RAW)
    if "Kyoto" in prompt:
        return Reply(text=PLANTED_JSON)
    if "train pass" in prompt:
        return Reply(text='{"answer": "cut', finish_reason="length")
    return Reply(text=json.dumps({"answer": "Take the night bus; check the timetable first.", "tone": "calm"}))


def write_project(root: Path, questions: list[dict] | None = None) -> Path:
    """The pipeline, its templates and source file under root; returns stages.yaml."""
    lines = "\n".join(json.dumps(q) for q in (questions or QUESTIONS)) + "\n"
    return write_pipeline(root, STAGES, templates={"q.j2": "{{ source.question }}",
                                                   "a.j2": "Answer as JSON: {{ questions.parsed }}"},
                          files={"data/questions.jsonl": lines})


def make_run(root: Path, questions: list[dict] | None = None) -> Path:
    """Write the pipeline under root and run it against a loopback server; returns stages.yaml."""
    path = write_project(root, questions)
    rerun(path)
    return path


def stop_server() -> None:
    """Stop the loopback server if a test started one (other tests check this process listens nowhere)."""
    global _SERVER
    if _SERVER is not None:
        _SERVER.__exit__(None, None, None)
        _SERVER = None


def rerun(path: Path) -> None:
    teacher = fake_teacher()
    old = os.environ.get("OPENAI_API_KEY")
    os.environ["OPENAI_API_KEY"] = "sk-loopback-only"
    try:
        result = run_pipeline(load_pipeline(path), options=RunOptions(cache=False, teacher=teacher))
    finally:
        if old is None:
            os.environ.pop("OPENAI_API_KEY", None)
        else:
            os.environ["OPENAI_API_KEY"] = old
    assert result.ok, result.stopped
