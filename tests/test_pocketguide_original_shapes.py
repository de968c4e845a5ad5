"""Real teacher answers fit the contracts: the original PocketGuide project's payload v1 shapes (itinerary items
with location/transport/cost/booking/warnings, decision trees in the graph and the prompt form, procedures with
pre/post checks) pass validation, while the compact decoding profile for small models keeps one simple form."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from pg_samples import envelope

from pocketguide.pipelines.pocketguide.contracts import (
    PAYLOAD_TYPES,
    compose_response_schema,
    compose_typed_response_schema,
    validate_envelope,
)

SCHEMAS_DIR = Path(__file__).resolve().parents[1] / "data" / "schemas"
DATA = Path(__file__).resolve().parent / "data"
ANSWERS = [json.loads(line) for line in (DATA / "original_shape_answers.jsonl").read_text().splitlines()]
EXAMPLES = json.loads((DATA / "original_schema_examples.json").read_text())
ITEM_FIELDS = {"time_block", "activity", "location", "transport", "cost_estimate", "booking_needed", "warnings"}


def _nodes(answer: dict) -> list[dict]:
    return answer["payload"].get("nodes") or [] if answer["payload_type"] == "decision_tree" else []


def test_the_answer_file_covers_every_shape_the_issue_names():
    assert len(ANSWERS) >= 40
    assert {a["answer"]["payload_type"] for a in ANSWERS} == set(PAYLOAD_TYPES)
    prompt_form = [a for a in ANSWERS if any(isinstance(o, dict) for n in _nodes(a["answer"]) for o in n.get("options") or [])]
    graph_form = [a for a in ANSWERS if a["answer"]["payload"].get("edges")]
    assert len(prompt_form) >= 5 and len(graph_form) >= 5
    items = [i for a in ANSWERS if a["answer"]["payload_type"] == "itinerary"
             for d in a["answer"]["payload"]["trip_days"] for i in d["items"]]
    assert any(set(i) == ITEM_FIELDS for i in items), "one item carries every optional field"
    assert any(isinstance(i.get("cost_estimate"), dict) for i in items)
    assert any(i.get("transport", {}).get("details") for i in items)
    procedures = [a["answer"]["payload"] for a in ANSWERS if a["answer"]["payload_type"] == "procedure"]
    assert any({"preconditions", "postchecks", "estimated_time"} <= set(p) for p in procedures)


@pytest.mark.parametrize("case", ANSWERS, ids=[a["id"] for a in ANSWERS])
def test_every_original_shaped_answer_passes_the_contract(case):
    assert validate_envelope(case["answer"], SCHEMAS_DIR) == (True, None, None), case["shape"]


def test_the_composed_validation_schema_admits_them_all():
    full = Draft202012Validator(compose_response_schema(SCHEMAS_DIR, profile="full"))
    bad = [a["id"] for a in ANSWERS if not full.is_valid(a["answer"])]
    assert bad == []


@pytest.mark.parametrize("ptype", PAYLOAD_TYPES)
def test_the_original_projects_own_examples(ptype):
    assert validate_envelope(envelope(ptype, payload=EXAMPLES["accepted"][ptype]), SCHEMAS_DIR) == (True, None, None)
    if ptype in EXAMPLES["rejected"]:  # what the original refuses, this contract refuses too
        ok, code, _ = validate_envelope(envelope(ptype, payload=EXAMPLES["rejected"][ptype]), SCHEMAS_DIR)
        assert (ok, code) == (False, "payload_schema_failed")


def test_this_projects_own_forms_still_pass():
    env = envelope("itinerary")
    item = env["payload"]["trip_days"][0]["items"][0]
    item.update(cost_estimate="about 20 EUR", location="Alfama")
    env["payload"]["total_budget"] = "400 EUR without flights"
    assert validate_envelope(env, SCHEMAS_DIR) == (True, None, None)
    proc = envelope("procedure")
    proc["payload"]["steps"][0]["estimated_time"] = "10 minutes"
    assert validate_envelope(proc, SCHEMAS_DIR) == (True, None, None)


def _answer(aid: str) -> dict:
    return copy.deepcopy(next(a["answer"] for a in ANSWERS if a["id"] == aid))


@pytest.mark.parametrize("aid, mutate, path", [
    ("it01", lambda p: p["trip_days"][0]["items"][0]["cost_estimate"].update(amount=-5),
     "$.payload.trip_days[0].items[0].cost_estimate.amount"),
    ("it01", lambda p: p["trip_days"][0]["items"][0]["transport"].update(mode="camel"),
     "$.payload.trip_days[0].items[0].transport.mode"),
    ("it01", lambda p: p["trip_days"][0]["items"][0].update(rating=5), "$.payload.trip_days[0].items[0]"),
    ("dt06", lambda p: p["nodes"][0]["options"][0].update(weight=1), "$.payload.nodes[0].options[0]"),
    ("dt06", lambda p: p["nodes"][0]["options"].append(3), "$.payload.nodes[0].options[3]"),
    ("dt06", lambda p: p["nodes"][0].pop("id"), "$.payload.nodes[0].id"),
    ("pr01", lambda p: p.update(preconditions="passport"), "$.payload.preconditions"),
])
def test_the_widened_contract_still_refuses_wrong_shapes(aid, mutate, path):
    answer = _answer(aid)
    mutate(answer["payload"])
    assert validate_envelope(answer, SCHEMAS_DIR) == (False, "payload_schema_failed", path)


def _walk(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


@pytest.mark.parametrize("ptype", PAYLOAD_TYPES)
def test_the_compact_decoding_profile_keeps_one_simple_form(ptype):
    payload = compose_typed_response_schema(ptype, SCHEMAS_DIR)["properties"]["payload"]
    assert not any("anyOf" in n for n in _walk(payload)), "a small model decodes one form"
    for node in _walk(payload):  # required free text is non-empty when a small model writes it
        for key in node.get("required", []) if node.get("type") == "object" else []:
            sub = node["properties"][key]
            if sub.get("type") == "string" and "enum" not in sub:
                assert sub.get("minLength", 0) >= 1, (ptype, key)


def test_the_compact_profile_is_separate_from_the_contract():
    compact = Draft202012Validator(compose_typed_response_schema("decision_tree", SCHEMAS_DIR))
    prompt_form = _answer("dt06")
    assert validate_envelope(prompt_form, SCHEMAS_DIR)[0]  # the contract accepts a strong teacher's tree
    assert not compact.is_valid(prompt_form)  # the small model's grammar asks for the graph form
    options = compose_typed_response_schema("decision_tree", SCHEMAS_DIR)["properties"]["payload"]["properties"][
        "nodes"]["items"]["properties"]["options"]
    assert options["items"] == {"type": "string"}
