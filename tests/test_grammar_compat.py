"""The evaluation's constrained mode compiles the teacher's decoding schemas with xgrammar, which aborts on
a pattern repetition bound above ~128 (the compact profile's short-text fields use {1,199})."""

from __future__ import annotations

import json

from pocketguide.training.grammar_compat import XGRAMMAR_MAX_REPEAT, xgrammar_compatible

LONG = "^[A-Za-z][A-Za-z0-9 ,.;'()&%!?+-]{1,199}$"
SHORT = "^[A-Za-z][a-z]{1,16}( [a-z]{1,17}){2,9}$"


def test_only_bounds_above_the_limit_are_lifted_and_the_input_is_not_changed():
    schema = {"type": "object", "properties": {
        "time_block": {"type": "string", "pattern": LONG, "maxLength": 200},
        "activity": {"type": "string", "pattern": SHORT},
        "list": {"type": "array", "items": [{"type": "string", "pattern": r"^a\{1,999}b{2,300}$"}]}}}
    before = json.dumps(schema)
    out, lifted = xgrammar_compatible(schema)
    assert json.dumps(schema) == before
    assert lifted == 2
    props = out["properties"]
    assert props["time_block"]["pattern"] == "^[A-Za-z][A-Za-z0-9 ,.;'()&%!?+-]{1,}$"
    assert props["time_block"]["maxLength"] == 200  # the schema still says it; validation checks it afterwards
    assert props["activity"]["pattern"] == SHORT
    assert props["list"]["items"][0]["pattern"] == r"^a\{1,999}b{2,}$"  # an escaped brace is a literal
    assert xgrammar_compatible({"pattern": "x{1,%d}" % XGRAMMAR_MAX_REPEAT}) == (
        {"pattern": "x{1,%d}" % XGRAMMAR_MAX_REPEAT}, 0)
