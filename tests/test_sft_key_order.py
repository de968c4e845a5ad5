"""sft `nested_key_order: schema`: payload keys follow the payload schema (the order constrained decoding
writes), so the student's target opens with the title instead of ending with it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from pocketguide.ops.sft import SFTOptions
from pocketguide.ops.sft_format import canonical_target

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = {"type": "object", "properties": {
    "title": {"type": "string"},
    "steps": {"type": "array", "items": {"type": "object", "properties": {
        "step": {"type": "integer"}, "instruction": {"type": "string"}, "why": {"type": "string"}}}}}}
ENV = {"summary": "s", "payload_type": "procedure",
       "payload": {"steps": [{"why": "w", "instruction": "i", "step": 1, "zeta": 0, "alpha": {"b": 1, "a": 2}}],
                   "extra": {"y": 1, "x": 2}, "title": "T"}}


def test_schema_order_puts_schema_keys_first_in_schema_order_and_sorts_the_rest():
    doc = json.loads(canonical_target(ENV, ["summary", "payload_type", "payload"], SCHEMA))
    assert list(doc["payload"]) == ["title", "steps", "extra"]
    assert list(doc["payload"]["steps"][0]) == ["step", "instruction", "why", "alpha", "zeta"]
    assert list(doc["payload"]["steps"][0]["alpha"]) == ["a", "b"]  # no schema below: sorted
    assert list(doc["payload"]["extra"]) == ["x", "y"]
    assert doc == ENV  # the same content, only the order differs


def test_sorted_order_is_unchanged_without_a_payload_schema():
    doc = json.loads(canonical_target(ENV, ["summary", "payload_type", "payload"]))
    assert list(doc["payload"]) == ["extra", "steps", "title"]
    assert list(doc["payload"]["steps"][0]) == ["alpha", "instruction", "step", "why", "zeta"]


def test_schema_order_without_payload_schemas_is_refused_with_the_fix():
    with pytest.raises(ValidationError, match="nested_key_order: schema takes the order from payload_schemas"):
        SFTOptions.model_validate({"schema": "s.json", "system_prompt": "x", "nested_key_order": "schema"})
    assert SFTOptions.model_validate({"schema": "s.json", "system_prompt": "x", "nested_key_order": "schema",
                                      "payload_schemas": {"procedure": "p.json"}}).nested_key_order == "schema"


def test_default_pipeline_hints_show_a_schema_valid_payload_in_the_targets_order():
    """Each format line carries a payload skeleton: it passes the payload schema and its keys are in the order
    the targets use, so the student is shown the shape it is trained on."""
    spec = yaml.safe_load((ROOT / "stages.yaml").read_text())
    sft = next(s for s in spec["stages"] if s["name"] == "sft")["options"]
    assert sft["nested_key_order"] == "schema"
    for payload_type, hint in sft["format_hints"].items():
        schema = json.loads((ROOT / sft["payload_schemas"][payload_type]).read_text())
        assert f'payload_type "{payload_type}"' in hint
        skeleton_text = hint.split("payload shaped ", 1)[1].rstrip(".")
        skeleton = json.loads(skeleton_text)
        jsonschema.validate(skeleton, schema)
        env = {"payload_type": payload_type, "payload": skeleton}
        assert json.loads(canonical_target(env, ["payload_type", "payload"], schema)) == env
        assert json.dumps(json.loads(canonical_target(env, ["payload_type", "payload"], schema))["payload"],
                          ensure_ascii=False) == skeleton_text
    envelope = re.search(r"shaped (\{.*\})\.", sft["system_prompt"]).group(1).replace("{…}", "{}")
    assert [k for k in sft["key_order"] if k != "metadata"] == list(json.loads(envelope))
