"""json.loads for untrusted text: what it returns can always be stored, and it fails only with ValueError.

The standard parser raises RecursionError on `[[[[…` thousands deep, accepts NaN and Infinity (not
JSON), and returns integers of any length (the store's reader turns > 1e308 into an error). Here each
of those is a ValueError, so a parser catching ValueError turns it into its ParseError."""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 128  # no teacher answer nests deeper; the store's JSON writer stops at 255
MAX_INT_DIGITS = 300  # beyond ~1e308 a number cannot be read back as a float


class JSONTooHostile(ValueError):
    """Valid-looking JSON that cannot be kept: nested too deep, a number out of range, NaN. `resume`: where a
    search for the next candidate may go on (past a run of openers that is too deep from every start in it)."""

    def __init__(self, message: str, resume: int | None = None):
        super().__init__(message)
        self.resume = resume


def _constant(name: str) -> Any:
    raise JSONTooHostile(f"{name} is not JSON")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONTooHostile(f"number {text[:20]}… is out of range")
    return value


def _int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS:
        raise JSONTooHostile(f"number with {len(text)} digits is out of range")
    return int(text)


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of lists/dicts, level by level without recursion; stops counting past `limit`."""
    level, frontier = 0, [value] if isinstance(value, (list, dict)) else []
    while frontier and level <= limit:
        level += 1
        nxt: list[Any] = []
        for node in frontier:
            nxt.extend(c for c in (node.values() if isinstance(node, dict) else node) if isinstance(c, (list, dict)))
        frontier = nxt
    return level


# MAX_DEPTH + 1 openers in a row (keys allowed between): too deep, known without recursing a thousand
# levels into the scanner first (which costs ~0.3 ms per try on `{"a":{"a":…`)
_TOO_DEEP = re.compile(r'(?:[\[{]\s*(?:"(?:[^"\\]|\\.){0,64}"\s*:\s*)?){%d,}' % (MAX_DEPTH + 1))
_DECODER = json.JSONDecoder(parse_constant=_constant, parse_float=_float, parse_int=_int)


def _checked(value: Any) -> Any:
    if isinstance(value, (list, dict)) and depth(value) > MAX_DEPTH:
        raise JSONTooHostile(f"nested more than {MAX_DEPTH} levels deep")
    return value


def loads_json(text: str) -> Any:
    """Parse JSON text; ValueError (JSONDecodeError or JSONTooHostile) for anything that is not storable JSON."""
    start = len(text) - len(text.lstrip())
    if _TOO_DEEP.match(text, start):
        raise JSONTooHostile(f"nested more than {MAX_DEPTH} levels deep")
    try:
        return _checked(_DECODER.decode(text))
    except RecursionError:
        raise JSONTooHostile(f"nested more than {MAX_DEPTH} levels deep") from None


def decode_at(text: str, pos: int) -> tuple[Any, int]:
    """The JSON value that starts at text[pos] and the index just past it (json's C scanner, so a span that
    cannot parse costs only as far as its first error); ValueError as loads_json."""
    run = _TOO_DEEP.match(text, pos)
    if run:
        raise JSONTooHostile(f"nested more than {MAX_DEPTH} levels deep", resume=run.end())
    try:
        value, end = _DECODER.raw_decode(text, pos)
    except RecursionError:
        raise JSONTooHostile(f"nested more than {MAX_DEPTH} levels deep") from None
    return _checked(value), end
