"""The data contracts: schemas are valid draft 2020-12, validate_envelope reports codes and paths."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator
from pg_samples import PAYLOADS, envelope

from pocketguide.contracts import PAYLOAD_TYPES, SCHEMAS_DIR, compose_response_schema, validate_envelope

CONTRACT_FILES = ["envelope.v0.json", "payload.itinerary.v1.json", "payload.checklist.v1.json",
                  "payload.decision_tree.v1.json", "payload.procedure.v1.json", "critique.v1.json", "response.v1.json"]


@pytest.mark.parametrize("name", CONTRACT_FILES)
def test_schema_files_are_draft_2020_12(name):
    schema = json.loads((SCHEMAS_DIR / name).read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_response_schema_file_is_the_composition_of_the_contracts():
    # response.v1.json is derived from envelope + payload files; regenerate it when a contract changes
    on_disk = json.loads((SCHEMAS_DIR / "response.v1.json").read_text())
    assert on_disk == compose_response_schema(), "regenerate data/schemas/response.v1.json from contracts.py"


@pytest.mark.parametrize("ptype", PAYLOAD_TYPES)
def test_valid_envelope_of_every_type(ptype):
    env = envelope(ptype)
    assert validate_envelope(env) == (True, None, None)
    assert not list(Draft202012Validator(compose_response_schema()).iter_errors(env))


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
    assert validate_envelope(env) == (False, code, path)


def test_payload_is_checked_against_its_own_type():
    env = envelope("checklist", payload=PAYLOADS["procedure"])
    ok, code, path = validate_envelope(env)
    assert (ok, code) == (False, "payload_schema_failed") and path.startswith("$.payload")


def test_non_objects_fail_at_the_root():
    assert validate_envelope([envelope()]) == (False, "envelope_schema_failed", "$")
    assert validate_envelope("text") == (False, "envelope_schema_failed", "$")
