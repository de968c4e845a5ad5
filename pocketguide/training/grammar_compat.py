"""What xgrammar 0.2.8 cannot compile, rewritten to what it can, and said in the report.

xgrammar's JSON-schema compiler aborts (a C++ check in grammar_functor.cc) on a regex repetition whose
upper bound is above ~128, e.g. the compact profile's `[…]{1,199}` for a short free-text field; llama.cpp,
which the teacher uses, compiles the same pattern. The evaluation's constrained mode rewrites such a
bound `{m,n}` to `{m,}`: the field may then run longer than the schema's maxLength allows under the
grammar, and the answer is still validated against the schema afterwards (an overlong field fails it),
while the generation cap bounds decoding."""

from __future__ import annotations

import re
from typing import Any

XGRAMMAR_MAX_REPEAT = 128  # measured: {1,128} compiles, {1,150} aborts (xgrammar 0.2.8)
_BOUNDED = re.compile(r"(?<!\\)\{(\d+),(\d+)\}")


def _unbound(pattern: str) -> tuple[str, int]:
    count = 0

    def repl(m: re.Match[str]) -> str:
        nonlocal count
        if int(m.group(2)) <= XGRAMMAR_MAX_REPEAT:
            return m.group(0)
        count += 1
        return "{" + m.group(1) + ",}"

    return _BOUNDED.sub(repl, pattern), count


def xgrammar_compatible(schema: Any) -> tuple[Any, int]:
    """(a copy of `schema` whose `pattern`s xgrammar compiles, how many repetition bounds were lifted)."""
    if isinstance(schema, list):
        parts = [xgrammar_compatible(v) for v in schema]
        return [p for p, _ in parts], sum(n for _, n in parts)
    if not isinstance(schema, dict):
        return schema, 0
    out, total = {}, 0
    for key, value in schema.items():
        if key == "pattern" and isinstance(value, str):
            out[key], n = _unbound(value)
        else:
            out[key], n = xgrammar_compatible(value)
        total += n
    return out, total
