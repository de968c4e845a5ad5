"""What each teacher decodes with. The compact decoding profile only where a teacher needs it: the embedded
teacher decodes the PocketGuide draft with the compact per-type `response_schema` (arrays capped), every
other teacher gets the full contract (`schema`) unless its `decoding_profile` says compact, so a strict
structured-output endpoint can write the 4-item checklist the contract accepts. The embedded teacher is also
asked for plain-text strings with a letter first, a minimum of substance in the compact profile, and the
repetition window it decodes with."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from pg_samples import envelope

from pocketguide.engine import registry
from pocketguide.engine.loader import load_pipeline
from pocketguide.engine.runtime import build_runtime
from pocketguide.engine.session import RunOptions, Services, StageRun, resolved_teacher
from pocketguide.engine.teacher_spec import TeacherSettings
from pocketguide.pipelines.pocketguide.contracts import check_envelope
from pocketguide.teachers.base import TeacherRequest
from pocketguide.teachers.structured import model_schema

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = REPO / "data/schemas"


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
    own = [s["pattern"] for s in _strings(schema, []) if "pattern" in s]  # the compact file's word shapes
    api = model_schema(TeacherSettings(provider="openai", max_tokens=900), schema)
    assert [s["pattern"] for s in _strings(api, []) if "pattern" in s] == own  # API teachers: none added
    off = model_schema(TeacherSettings(provider="embedded", max_tokens=900, schema_text_chars=""), schema)
    assert [s["pattern"] for s in _strings(off, []) if "pattern" in s] == own


def test_the_compact_profile_writes_words_not_one_word_placeholders():
    schema = json.loads((SCHEMAS / "response.checklist.v1.json").read_text())
    props = schema["properties"]
    sentence = re.compile(props["assumptions"]["items"]["pattern"])
    assert sentence.match("Check the opening hours before you go")
    for junk in ("yes", "Paris", "fijian Sevillean", "https://x.com now ok", " leading space here"):
        assert not sentence.match(junk), junk
    assert not sentence.match(" ".join(["word"] * 15))  # at most 10 words: answers stay short
    title = re.compile(props["payload"]["properties"]["title"]["pattern"])
    assert title.match("Packing for Krakow") and not title.match("Krakow")
    assert props["assumptions"]["maxItems"] == 2 and props["payload"]["properties"]["groups"]["maxItems"] == 2


def test_the_compact_profile_asks_for_substance_and_stays_inside_the_contract():
    tree = json.loads((SCHEMAS / "response.decision_tree.v1.json").read_text())
    nodes = tree["properties"]["payload"]["properties"]["nodes"]
    assert nodes["minItems"] == 2 and {"id", "type", "text"} <= set(nodes["items"]["required"])
    assert tree["properties"]["next_steps"]["minItems"] == 1
    steps = json.loads((SCHEMAS / "response.procedure.v1.json").read_text())["properties"]["payload"]["properties"]
    assert steps["steps"]["minItems"] == 2
    full = Draft202012Validator(json.loads((SCHEMAS / "response.full.v1.json").read_text()))
    answer = {"summary": "Two calm days in Kyoto.", "assumptions": ["You walk most of the day"],
              "uncertainty_notes": "Opening hours change by season.", "next_steps": ["Book a room near the station"],
              "verification_steps": ["Check the temple opening hours"], "payload_type": "decision_tree",
              "payload": {"title": "Bus or walk in Kyoto",
                          "nodes": [{"id": "q1", "type": "question", "text": "Is it raining today?"},
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
    pytest.importorskip("xllamacpp")
    from pocketguide.teachers.embedded import EmbeddedTeacher

    s = TeacherSettings(provider="embedded", repeat_penalty=1.2, repeat_last_n=512)
    req = TeacherRequest(messages=[{"role": "user", "content": "hi"}], **s.group("sampling"))
    body = EmbeddedTeacher(s).body(req)  # no model is loaded for this
    assert body["repeat_last_n"] == 512 and body["repeat_penalty"] == 1.2


def four_item_checklist() -> dict:
    env = envelope("checklist")
    env["payload"]["groups"][0]["items"] = [{"text": t} for t in ("Passport", "Visa", "Tickets", "Insurance")]
    env["uncertainty_notes"] = "Entry rules can change."  # the embedded teacher's strings are never empty
    return env


def sent_schema(override: TeacherSettings | None, payload_type: str = "checklist") -> dict:
    """The JSON schema the llm generator puts in response_format for a draft record of this type."""
    pipe = load_pipeline(REPO / "stages.yaml")
    stage = pipe.stage("draft")
    settings = resolved_teacher(pipe.spec.pipeline.teacher, stage, override)
    rt = build_runtime(pipe, stage, settings, True, {})  # a dry run builds no teacher
    gen = registry.GENERATORS["llm"](rt, StageRun(pipe, RunOptions(dry_run=True), Services(), 1))
    return gen._format_for({"data": {"payload_type": payload_type}})["json_schema"]["schema"]


def test_the_contract_accepts_a_four_item_checklist():
    ok, code, path, message = check_envelope(four_item_checklist(), REPO / "data" / "schemas")
    assert ok, (code, path, message)


@pytest.mark.parametrize("override, profile", [
    (None, "compact"),  # the project's default teacher is the embedded 135M model
    (TeacherSettings(provider="openai", model="m"), "full"),
    (TeacherSettings(provider="openai", model="m", decoding_profile="compact"), "compact"),
    (TeacherSettings(provider="embedded", decoding_profile="full"), "full"),
])
def test_which_schema_each_teacher_decodes_with(override, profile):
    schema = sent_schema(override)
    fits = Draft202012Validator(schema).is_valid(four_item_checklist())
    if profile == "full":
        assert "full" in schema["title"] and fits  # the whole contract: 4 items are allowed
    else:
        assert schema["title"] == "PocketGuide answer (compact, checklist)" and not fits  # capped at 3


def test_the_manifest_says_which_profile_decoded(tmp_path, fake_openai):
    from pocketguide.engine.runner import run_stage
    from pocketguide.engine.store import StageStore
    from pocketguide.testing import Reply

    proj = tmp_path / "proj"
    shutil.copytree(REPO / "data", proj / "data", ignore=shutil.ignore_patterns("runs"))
    shutil.copytree(REPO / "templates", proj / "templates")
    shutil.copy(REPO / "stages.yaml", proj / "stages.yaml")
    run_stage("plan", proj / "stages.yaml", limit=1)
    reply = copy.deepcopy(four_item_checklist())
    server = fake_openai(lambda req: Reply(text=json.dumps(reply)))
    res = run_stage("draft", proj / "stages.yaml",
                    options=RunOptions(limit=1, teacher=TeacherSettings(provider="openai", model="fake")))
    assert server.count() == 1
    decoding = StageStore(res.output_dir.parent, "draft").manifest()["teacher"]["decoding"]
    assert decoding == {"profile": "full", "schema": "data/schemas/response.full.v1.json"}
