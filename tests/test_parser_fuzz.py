"""Only ParseError may leave a parser. Every registered parser (the generic ones, PocketGuide's and
DayDreaming's) gets hostile text — deep nesting, huge numbers, unclosed tags and fences, control
characters, arbitrary unicode — and must either return a value the store can write and read back, or
raise ParseError. Nothing else: no RecursionError, no ValueError, no hang."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pg_samples import PAYLOADS, envelope

from pocketguide.engine import plugins, registry
from pocketguide.engine.errors import ParseError
from pocketguide.engine.runtime import ParseContext
from pocketguide.engine.store import dumps_line

REPO = Path(__file__).resolve().parents[1]  # the PocketGuide project: envelope schemas under data/schemas
CASES = 10_000  # generated inputs; each goes through every registered parser function
PER_EXAMPLE = 10
PIPELINE_PLUGINS = ("pocketguide.pipelines.pocketguide", "pocketguide.pipelines.daydreaming")


def _registered() -> list[tuple[str, str, object, object]]:
    plugins.load_builtin_plugins()
    for name in PIPELINE_PLUGINS:
        plugins.load_plugin(name, REPO)
    out, seen = [], set()
    for (stage, name), fn in sorted(registry.PARSERS.items(), key=lambda kv: kv[0]):
        # one entry per function (draft and essay share theirs); not a test's own plugin parsers
        if fn.__module__.startswith("pocketguide.") and fn not in seen:
            seen.add(fn)
            model = registry.PARSER_OPTIONS.get((stage, name))
            out.append((stage, name, fn, model() if model else None))
    return out


PARSERS = _registered()

_TOKENS = ["<essay>", "</essay>", '<essay-idea stage="', "<essay-idea>", "</essay-idea>", "<think>", "</think>",
           "<thinking>", "</thinking>", "```json\n", "```", "SCORE: ", "Final score:", "Score: ", "/10", " out of 10",
           "**", "## ", "\n", "{", "}", "[", "]", '"', "\\", ":", ",", "-", "7", "e999", "NaN", "Infinity", "\x00",
           "\u2028", "\ud800", '{"a":', "99999999999999999999999"]
_OPENERS = ["[", "{", '{"a":', "[{", '{"payload":[', '[1,']
_BIG = ["{n}", "[{n}]", '{{"n": {n}}}', '<essay-idea stage="{n}">x</essay-idea>', "SCORE: {n}", "Final score: {n}/10",
        "Score: 7/{n}", '{{"score": {n}.{n}}}', "1e{n}", "-{n}"]
_REPEATED = ["<essay ", "<essay-idea ", "<thinking ", "<thinking>", "<think>", "{", "```", '{"a":[', "SCORE: 1\n"]

# Each case is drawn from a small recipe (cheap for hypothesis) and expanded here into text up to ~30 KB.
deep = st.tuples(st.sampled_from(_OPENERS), st.integers(100, 1500), st.sampled_from(["", "```json\n", "Here: "]),
                 st.booleans()).map(lambda t: t[2] + t[0] * t[1] + ("]}" * t[1] if t[3] else ""))
huge_number = st.tuples(st.sampled_from(_BIG), st.integers(300, 6000)).map(lambda t: t[0].format(n="9" * t[1]))
soup = st.lists(st.sampled_from(_TOKENS), max_size=40).map("".join)
unicode = st.text(max_size=300)  # any code point: surrogates and control characters included
_KEYS = ["payload", "payload_type", "summary", "steps", "items", "score", "a", ""]
_ATOMS = [None, True, False, 0, -1, 7, 2**63, 1.5, -0.0, float("nan"), float("inf"), "", "x", "\u2028", "\x00", "{",
          "```"]


def _random_json(seed: int) -> str:
    """A JSON-ish value of any shape, grown from one drawn seed (hypothesis draws a seed far cheaper than a tree)."""
    import random

    rng = random.Random(seed)

    def grow(level: int):
        pick = rng.random()
        if level > 4 or pick < 0.4:
            return rng.choice(_ATOMS)
        if pick < 0.7:
            return [grow(level + 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(_KEYS): grow(level + 1) for _ in range(rng.randint(0, 3))}

    return json.dumps(grow(0))  # NaN and Infinity included: not JSON, but sent by careless writers


json_like = st.integers(0, 2**32).map(_random_json)
_HOSTILE_VALUES = [10**400, -(10**30), 1e308, "\ud800", "\x00" * 50, "x" * 20_000, [], {}, None, True]


def _mutated_envelope(recipe: tuple[str, str, int, int]) -> str:
    """A valid PocketGuide envelope with one field replaced by a hostile value or a deep nest."""
    payload_type, key, value_index, nest = recipe
    env = envelope(payload_type)
    value = _HOSTILE_VALUES[value_index]
    for _ in range(nest):
        value = [value]
    (env["payload"] if key.startswith("payload.") else env)[key.split(".")[-1]] = value
    return json.dumps(env)


mutated_envelope = st.tuples(st.sampled_from(list(PAYLOADS)),
                             st.sampled_from(["summary", "payload_type", "payload", "payload.title", "payload.steps",
                                              "next_steps", "assumptions"]),
                             st.integers(0, len(_HOSTILE_VALUES) - 1),
                             st.sampled_from([0, 1, 5, 127, 200])).map(_mutated_envelope)
repeated = st.tuples(st.sampled_from(_REPEATED), st.integers(100, 3000)).map(lambda t: t[0] * t[1])
hostile = st.one_of(deep, huge_number, soup, unicode, json_like, mutated_envelope, repeated)


def test_every_registered_parser_is_fuzzed():
    names = {name for _, name, _, _ in PARSERS}
    assert {"identity", "json", "stripped", "envelope_strict", "envelope_lenient", "json_object_lenient",
            "essay_block", "essay_block_lenient", "essay_idea_last", "in_last_line", "judge_score"} <= names


def _check(raw: str) -> None:
    for stage, name, fn, options in PARSERS:
        ctx = ParseContext(stage if stage != "*" else "fuzz", {}, None, options=options, root=REPO)
        try:
            value = fn(raw, ctx)
        except ParseError as exc:
            assert exc.code and isinstance(exc.code, str)
            continue
        # what a parser returns is stored as one JSON line and read back on resume
        assert orjson.loads(dumps_line({"parsed": value, "parse_notes": ctx.notes})) is not None, name


def test_only_parse_error_leaves_a_parser():
    cases = []

    # ten inputs per hypothesis example: the same 10,000 cases at a fraction of hypothesis's per-example cost
    @settings(max_examples=CASES // PER_EXAMPLE, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(hostile, min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
    def fuzz(raws):
        for raw in raws:
            cases.append(len(raw))
            _check(raw)

    fuzz()
    assert len(cases) >= CASES  # every case ran (hypothesis stops early only on a failure)
    assert max(cases) > 10_000  # and big hostile ones were among them


@pytest.mark.parametrize("raw", ["[" * 100_000, "{" * 100_000, '{"a":' * 50_000, "9" * 5000,
                                 '<essay-idea stage="' + "9" * 5000 + '">x</essay-idea>', "<essay " * 100_000,
                                 "<thinking>" * 50_000 + "</thinking>"])
def test_the_inputs_that_escaped_before(raw):
    _check(raw)
