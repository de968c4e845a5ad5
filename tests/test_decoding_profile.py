"""What the embedded teacher is asked for: plain-text strings with a letter first, a minimum of substance
in the compact profile, and the repetition window it decodes with."""

from __future__ import annotations

import json
import re
from pathlib import Path

from jsonschema import Draft202012Validator

from pocketguide.engine.spec import TeacherSettings
from pocketguide.teachers.base import TeacherRequest
from pocketguide.teachers.structured import model_schema

SCHEMAS = Path(__file__).resolve().parents[1] / "data/schemas"


def _strings(node, out):
    if isinstance(node, dict):
        if node.get("type") == "string":
            out.append(node)
        for v in node.values():
            _strings(v, out)
    elif isinstance(node, list):
        for v in node:
            _strings(v, out)
    return out


def test_embedded_strings_are_plain_prose_with_a_letter_first():
    schema = json.loads((SCHEMAS / "response.checklist.v1.json").read_text())
    sent = model_schema(TeacherSettings(provider="embedded", max_tokens=900), schema)
    free = [s for s in _strings(sent, []) if "enum" not in s and "const" not in s]
    assert free and all(s["pattern"].startswith("^[A-Za-z][") and s["minLength"] >= 2 for s in free)
    pattern = re.compile(free[0]["pattern"])
    assert pattern.match("Check that your passport is valid") and not pattern.match("1")
    for junk in ("<img src=x>", "https://x.com", "{{>&}}", "...", "a"):
        assert not pattern.match(junk), junk
    api = model_schema(TeacherSettings(provider="openai", max_tokens=900), schema)
    assert not [s for s in _strings(api, []) if "pattern" in s]  # API teachers get no pattern unless asked
    off = model_schema(TeacherSettings(provider="embedded", max_tokens=900, schema_text_chars=""), schema)
    assert not [s for s in _strings(off, []) if "pattern" in s]


def test_the_compact_profile_asks_for_substance_and_stays_inside_the_contract():
    tree = json.loads((SCHEMAS / "response.decision_tree.v1.json").read_text())
    nodes = tree["properties"]["payload"]["properties"]["nodes"]
    assert nodes["minItems"] == 2 and {"id", "type", "text"} <= set(nodes["items"]["required"])
    assert tree["properties"]["next_steps"]["minItems"] == 1
    steps = json.loads((SCHEMAS / "response.procedure.v1.json").read_text())["properties"]["payload"]["properties"]
    assert steps["steps"]["minItems"] == 2
    full = Draft202012Validator(json.loads((SCHEMAS / "response.full.v1.json").read_text()))
    answer = {"summary": "Two calm days in Kyoto.", "assumptions": ["You walk"], "uncertainty_notes": "Hours change.",
              "next_steps": ["Book a room"], "verification_steps": ["Check the hours"], "payload_type": "decision_tree",
              "payload": {"title": "Bus or walk in Kyoto",
                          "nodes": [{"id": "q1", "type": "question", "text": "Is it raining?"},
                                    {"id": "o1", "type": "outcome", "text": "Take the bus"}]}}
    assert Draft202012Validator(tree).is_valid(answer) and full.is_valid(answer)


def test_repeat_last_n_reaches_the_request_and_the_cache_key():
    from pocketguide.teachers.cache import cache_key

    s = TeacherSettings(provider="embedded", repeat_penalty=1.2, repeat_last_n=512)
    req = TeacherRequest(messages=[{"role": "user", "content": "hi"}], **s.group("sampling"))
    assert req.repeat_last_n == 512
    other = TeacherRequest(messages=req.messages, repeat_penalty=1.2, repeat_last_n=64)
    assert cache_key("e", "m", req, None) != cache_key("e", "m", other, None)


def test_the_embedded_body_carries_the_repetition_window():
    import pytest

    pytest.importorskip("xllamacpp")
    from pocketguide.teachers.embedded import EmbeddedTeacher

    s = TeacherSettings(provider="embedded", repeat_penalty=1.2, repeat_last_n=512)
    req = TeacherRequest(messages=[{"role": "user", "content": "hi"}], **s.group("sampling"))
    body = EmbeddedTeacher(s).body(req)  # no model is loaded for this
    assert body["repeat_last_n"] == 512 and body["repeat_penalty"] == 1.2
