"""envelope_strict / envelope_lenient / json_object_lenient against real-looking teacher answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pg_samples import dumps, envelope

from pocketguide.engine.errors import ParseError
from pocketguide.engine.runtime import ParseContext
from pocketguide.pipelines.pocketguide.parsers import (
    envelope_lenient,
    envelope_strict,
    extract_json_object,
    json_object_lenient,
)

GOOD = envelope("itinerary")  # its activity text contains braces inside a string
GOOD_TEXT = dumps(GOOD)
PRETTY = json.dumps(GOOD, indent=2)

REPO = Path(__file__).resolve().parents[1]  # the default PocketGuide project


def ctx() -> ParseContext:
    return ParseContext("draft", {}, None, root=REPO)


# (name, raw, strict outcome, lenient outcome); an outcome is a parse mode or a reason code
TABLE = [
    ("bare", GOOD_TEXT, "strict", "strict"),
    ("bare_pretty_with_whitespace", "\n\n  " + PRETTY + "\n", "strict", "strict"),
    ("fenced_json", f"```json\n{PRETTY}\n```", "json_parse_failed", "fenced"),
    ("fenced_no_lang", f"Here you go:\n```\n{GOOD_TEXT}\n```\nEnjoy!", "json_parse_failed", "fenced"),
    ("prose_wrapped", f"Sure! Here is your plan: {GOOD_TEXT} Let me know if you need more.", "json_parse_failed",
     "extracted"),
    ("prose_with_braces_before", "Use {curly} notes. " + GOOD_TEXT, "json_parse_failed", "extracted"),
    ("prose_with_stray_quote", 'He said "hi {" then ' + GOOD_TEXT, "json_parse_failed", "extracted"),
    ("truncated", GOOD_TEXT[: len(GOOD_TEXT) // 2], "json_parse_failed", "json_parse_failed"),
    ("truncated_in_fence", "```json\n" + PRETTY[:200], "json_parse_failed", "json_parse_failed"),
    ("array_top_level", json.dumps([GOOD]), "json_parse_failed", "json_parse_failed"),
    ("string_top_level", json.dumps("just text"), "json_parse_failed", "json_parse_failed"),
    ("empty", "", "json_parse_failed", "json_parse_failed"),
    ("whitespace", "  \n\t ", "json_parse_failed", "json_parse_failed"),
    ("prose_only", "I cannot help with that request.", "json_parse_failed", "json_parse_failed"),
    ("single_quotes_python_dict", str(GOOD), "json_parse_failed", "json_parse_failed"),
    ("envelope_missing_field", dumps({k: v for k, v in GOOD.items() if k != "next_steps"}),
     "envelope_schema_failed", "envelope_schema_failed"),
    ("payload_wrong", dumps(envelope("itinerary", payload={"title": "x", "trip_days": [{"day": 0, "summary": "s",
                                                                                          "items": []}]})),
     "payload_schema_failed", "payload_schema_failed"),
    ("fenced_payload_wrong", "```json\n" + dumps(envelope("checklist", payload={"title": "x", "groups": []})) + "\n```",
     "json_parse_failed", "payload_schema_failed"),
]


def outcome(fn, raw):
    c = ctx()
    try:
        fn(raw, c)
    except ParseError as exc:
        return exc.code, c.notes
    return c.notes["parse_mode"], c.notes


@pytest.mark.parametrize("name, raw, strict, lenient", TABLE, ids=[t[0] for t in TABLE])
def test_parser_table(name, raw, strict, lenient):
    assert outcome(envelope_strict, raw)[0] == strict
    got, notes = outcome(envelope_lenient, raw)
    assert got == lenient
    assert notes["parse_mode"] in ("strict", "fenced", "extracted", "failed")


def test_lenient_returns_the_object_with_braces_inside_strings_intact():
    value = envelope_lenient(f"Answer: {GOOD_TEXT} (end)", ctx())
    assert value == GOOD
    assert "{reserve ahead}" in value["payload"]["trip_days"][0]["items"][1]["activity"]


def test_schema_failure_reports_the_json_path():
    c = ctx()
    raw = dumps(envelope("procedure", payload={"title": "t", "steps": [{"step": 1, "instruction": "a"},
                                                                       {"step": "two", "instruction": "b"}]}))
    with pytest.raises(ParseError) as err:
        envelope_strict(raw, c)
    assert err.value.code == "payload_schema_failed"
    assert str(err.value).startswith("$.payload.steps[1].step:")
    assert c.notes["violation_path"] == "$.payload.steps[1].step"


def test_prose_picks_the_first_complete_object_after_a_non_json_brace_span():
    raw = 'Note {not json} and {"a": {"b": "}"}} then {"c": 1}'
    assert extract_json_object(raw, lenient=True) == ({"a": {"b": "}"}}, "extracted")


def test_json_object_lenient_for_critiques():
    c = ctx()
    assert json_object_lenient('```json\n{"verdict": "pass"}\n```', c) == {"verdict": "pass"}
    assert c.notes["parse_mode"] == "fenced"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.text(max_size=200), suffix=st.text(max_size=200), noise=st.text(max_size=2000))
def test_lenient_parser_never_crashes_and_finds_a_wrapped_envelope(prefix, suffix, noise):
    for raw in (noise, prefix + GOOD_TEXT + suffix):
        c = ctx()
        try:
            value = envelope_lenient(raw, c)
        except ParseError as exc:
            assert exc.code in ("json_parse_failed", "envelope_schema_failed", "payload_schema_failed")
            continue
        assert isinstance(value, dict)
        assert c.notes["parse_mode"] in ("strict", "fenced", "extracted")
    # a wrapped envelope is found unless the wrapping could itself be JSON (an array around it), hold
    # another object before it, or open a fence
    if not any(c in prefix for c in '{[`"') and "`" not in suffix:
        assert envelope_lenient(prefix + "\n" + GOOD_TEXT + "\n" + suffix, ctx()) == GOOD


@settings(max_examples=100, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda ch: st.lists(ch, max_size=4) | st.dictionaries(st.text(max_size=8), ch, max_size=4),
                    max_leaves=20),
       st.text(alphabet=st.characters(blacklist_characters="{}`\"'"), max_size=50))
def test_any_object_wrapped_in_brace_free_prose_is_extracted(obj, prose):
    raw = prose + " " + json.dumps({"wrapped": obj}) + " " + prose
    value, _ = extract_json_object(raw, lenient=True)
    assert value == {"wrapped": obj}


def test_hostile_input_is_bounded():
    raw = "{" * 50_000 + '"' + "}" * 10
    with pytest.raises(ParseError):
        envelope_lenient(raw, ctx())
