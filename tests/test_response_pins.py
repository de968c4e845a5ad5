"""response_pins: per record, the decoding schema makes a named string start with the record's own text; the
stage's schema still validates. Real openai client against the loopback server."""

from __future__ import annotations

import json
import re

import pytest

from pocketguide import run_stage
from pocketguide.engine.errors import StagesConfigError
from pocketguide.engine.loader import load_pipeline
from pocketguide.engine.pipeline import pipeline_status
from pocketguide.engine.schema_pins import pinned_schema
from pocketguide.testing import Reply

SOURCE = "".join(json.dumps({"id": f"q{i}", "city": city}) + "\n" for i, city in enumerate(["Krakow", "New Orleans"]))
DECODE = {"type": "object", "required": ["title"], "additionalProperties": False,
          "properties": {"title": {"type": "string", "pattern": "^[A-Za-z][a-z ]{1,40}$"}}}
STAGES = """
    pipeline:
      data_dir: runs
      teacher: {provider: openai, model: m1, response_format: json_schema, decoding_profile: compact}
    stages:
      - name: ask
        source: in.jsonl
        template: ask.j2
        mode: llm
        parser: json
        schema: answer.json
        response_schema: decode.json
        response_pins: {title: "{city}: "}
"""


def test_pinned_schema_narrows_the_string_and_keeps_its_own_shape():
    out = pinned_schema(DECODE, {"title": "St. Louis (MO): "})
    pattern = re.compile(out["properties"]["title"]["pattern"])
    assert pattern.match("St. Louis (MO): a short walk") and not pattern.match("a short walk")
    assert not pattern.match("St. Louis (MO): 42")  # what followed the pin must still match the old pattern
    assert DECODE["properties"]["title"]["pattern"] == "^[A-Za-z][a-z ]{1,40}$"  # the original is untouched
    either = {"anyOf": [DECODE, {"type": "object", "properties": {"title": {"type": "string"}}}]}
    assert all(b["properties"]["title"]["pattern"].startswith("^Rome") for b in
               pinned_schema(either, {"title": "Rome"})["anyOf"])
    with pytest.raises(KeyError):
        pinned_schema(DECODE, {"payload.title": "x"})


def test_each_record_is_sent_its_own_pin_and_a_changed_pin_regenerates(pipeline_dir, fake_openai):
    server = fake_openai(lambda req: Reply(text=json.dumps({"title": "a title"})))
    path = pipeline_dir(STAGES, {"ask.j2": "A title for {{ source.city }}"},
                        {"in.jsonl": SOURCE, "decode.json": json.dumps(DECODE),
                         "answer.json": json.dumps({"type": "object", "required": ["title"]})})
    result = run_stage("ask", path)
    assert result.accepted == 2  # validation is the stage's schema, not the pinned one
    sent = {r["messages"][-1]["content"]: r["response_format"]["json_schema"]["schema"]["properties"]["title"]["pattern"]
            for r in server.requests}
    assert sent == {"A title for Krakow": "^Krakow: [A-Za-z][a-z ]{1,40}$",
                    "A title for New Orleans": "^New Orleans: [A-Za-z][a-z ]{1,40}$"}
    (path.parent / "stages.yaml").write_text(path.read_text().replace('"{city}: "', '"{city} - "'))
    (state,) = pipeline_status(load_pipeline(path))
    assert state.stale and any("response pins" in r for r in state.reasons), state.reasons
    run_stage("ask", path)
    assert server.count() == 4 and server.requests[-1]["response_format"]["json_schema"]["schema"][
        "properties"]["title"]["pattern"].startswith("^")


def test_a_pin_on_a_path_the_schema_lacks_fails_before_any_work(pipeline_dir):
    path = pipeline_dir(STAGES.replace("{title:", "{payload.title:"), {"ask.j2": "x {{ source.city }}"},
                        {"in.jsonl": SOURCE, "decode.json": json.dumps(DECODE), "answer.json": "{}"})
    with pytest.raises(StagesConfigError, match=r"ask\.response_pins: 'payload\.title' is not a string property"):
        load_pipeline(path)
