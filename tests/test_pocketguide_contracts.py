"""The data contracts: schemas are valid draft 2020-12, validate_envelope reports codes and paths."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from pg_samples import PAYLOADS, envelope

from pocketguide.pipelines.pocketguide.contracts import (
    PAYLOAD_TYPES,
    compose_response_schema,
    compose_typed_response_schema,
    validate_envelope,
    write_response_schemas,
)

SCHEMAS_DIR = Path(__file__).resolve().parents[1] / "data" / "schemas"  # the default project's contracts

CONTRACT_FILES = ["envelope.v0.json", "payload.itinerary.v1.json", "payload.checklist.v1.json",
                  "payload.decision_tree.v1.json", "payload.procedure.v1.json", "critique.v1.json", "response.v1.json",
                  "response.full.v1.json", *(f"response.{t}.v1.json" for t in PAYLOAD_TYPES)]


@pytest.mark.parametrize("name", CONTRACT_FILES)
def test_schema_files_are_draft_2020_12(name):
    schema = json.loads((SCHEMAS_DIR / name).read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("profile, name", [("compact", "response.v1.json"), ("full", "response.full.v1.json")])
def test_response_schema_files_are_the_composition_of_the_contracts(profile, name):
    # derived from the envelope + payload files; regenerate them when a contract changes (docs/pocketguide.md)
    on_disk = json.loads((SCHEMAS_DIR / name).read_text())
    assert on_disk == compose_response_schema(SCHEMAS_DIR, profile=profile), f"regenerate data/schemas/{name}"


def test_every_derived_schema_file_is_current(tmp_path):
    import shutil

    fresh = tmp_path / "schemas"
    shutil.copytree(SCHEMAS_DIR, fresh)
    for path in write_response_schemas(fresh):
        assert (SCHEMAS_DIR / path.name).read_text() == path.read_text(), f"regenerate {path.name}"


@pytest.mark.parametrize("ptype", PAYLOAD_TYPES)
def test_typed_decoding_schema_is_the_matching_compact_branch(ptype):
    typed = compose_typed_response_schema(ptype, SCHEMAS_DIR)
    assert typed["properties"]["payload_type"] == {"type": "string", "const": ptype}
    Draft202012Validator.check_schema(typed)
    (inst,) = [i for i in compact_instance(compose_response_schema(SCHEMAS_DIR)) if i["payload_type"] == ptype]
    assert not list(Draft202012Validator(typed).iter_errors(inst))
    other = [i for i in compact_instance(compose_response_schema(SCHEMAS_DIR)) if i["payload_type"] != ptype][0]
    assert list(Draft202012Validator(typed).iter_errors(other))


@pytest.mark.parametrize("ptype", PAYLOAD_TYPES)
def test_valid_envelope_of_every_type(ptype):
    env = envelope(ptype)
    assert validate_envelope(env, SCHEMAS_DIR) == (True, None, None)
    full = Draft202012Validator(compose_response_schema(SCHEMAS_DIR, profile="full"))
    assert not list(full.iter_errors(env))
    assert not list(full.iter_errors({**env, "metadata": {"lang": "en"}}))


def compact_instance(node):
    """The largest instance of a compact schema: every kept property, every array at its cap."""
    if "anyOf" in node:
        return [compact_instance(b) for b in node["anyOf"]]
    t = node.get("type")
    if "const" in node:
        return node["const"]
    if "enum" in node:
        return node["enum"][0]
    if t == "object":
        return {k: compact_instance(v) for k, v in node["properties"].items()}
    if t == "array":
        return [compact_instance(node["items"]) for _ in range(node["maxItems"])]
    if t == "string" and "pattern" in node:  # word-shaped text: the most words it allows
        most = int(re.search(r"\{\d+,(\d+)\}\)?\$$", node["pattern"]).group(1)) + 1 if "( " in node["pattern"] else 1
        return " ".join(["Check"] * most)
    return {"string": "text", "integer": 1, "boolean": True}[t]


def test_everything_the_compact_profile_admits_satisfies_the_contracts():
    compact = compose_response_schema(SCHEMAS_DIR, profile="compact")
    instances = compact_instance(compact)
    assert len(instances) == len(PAYLOAD_TYPES)
    for inst in instances:
        assert not list(Draft202012Validator(compact).iter_errors(inst))
        assert validate_envelope(inst, SCHEMAS_DIR) == (True, None, None), inst["payload_type"]


def test_compact_profile_is_smaller_than_the_contract():
    compact, full = compose_response_schema(SCHEMAS_DIR, profile="compact"), compose_response_schema(SCHEMAS_DIR, profile="full")
    assert "metadata" not in compact["anyOf"][0]["properties"] and "metadata" in full["anyOf"][0]["properties"]
    items = compact["anyOf"][0]["properties"]["payload"]["properties"]["trip_days"]["items"]
    assert set(items["properties"]["items"]["items"]["properties"]) == {"time_block", "activity"}


@pytest.mark.parametrize("mutate, code, path", [
    (lambda e: e.pop("summary"), "envelope_schema_failed", "$.summary"),
    (lambda e: e.update(summary=""), "envelope_schema_failed", "$.summary"),
    (lambda e: e.update(extra_field=1), "envelope_schema_failed", "$"),
    (lambda e: e.update(payload_type="poem"), "envelope_schema_failed", "$.payload_type"),
    (lambda e: e.update(next_steps="call"), "envelope_schema_failed", "$.next_steps"),
    (lambda e: e["payload"]["steps"][1].update(step=0), "payload_schema_failed", "$.payload.steps[1].step"),
    (lambda e: e["payload"].pop("title"), "payload_schema_failed", "$.payload.title"),
    (lambda e: e["payload"].update(steps=[]), "payload_schema_failed", "$.payload.steps"),
    (lambda e: e["payload"]["steps"][0].update(colour="red"), "payload_schema_failed", "$.payload.steps[0]"),
])
def test_violations_give_code_and_path(mutate, code, path):
    env = envelope("procedure")
    mutate(env)
    assert validate_envelope(env, SCHEMAS_DIR) == (False, code, path)


def test_payload_is_checked_against_its_own_type():
    env = envelope("checklist", payload=PAYLOADS["procedure"])
    ok, code, path = validate_envelope(env, SCHEMAS_DIR)
    assert (ok, code) == (False, "payload_schema_failed") and path.startswith("$.payload")


def test_non_objects_fail_at_the_root():
    assert validate_envelope([envelope()], SCHEMAS_DIR) == (False, "envelope_schema_failed", "$")
    assert validate_envelope("text", SCHEMAS_DIR) == (False, "envelope_schema_failed", "$")
