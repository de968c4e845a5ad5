"""Response pins: a decoding schema whose named strings must start with a record's own text.

A stage's `response_pins` (e.g. `payload.title: "{destination}: "`) narrow the schema sent to the teacher for
one record, so a small model under a grammar writes the planned destination where the contract wants it.
Validation keeps the stage's schema, so pins never change what counts as valid."""

from __future__ import annotations

import copy
from typing import Any

_REGEX_SPECIAL = frozenset(".^$*+?()[]{}|\\/")


def _literal(text: str) -> str:
    return "".join("\\" + c if c in _REGEX_SPECIAL else c for c in text)


def pin_nodes(schema: Any, path: str) -> list[dict[str, Any]]:
    """The string nodes at dotted `path` (through `properties`, into every anyOf/oneOf branch)."""
    if not isinstance(schema, dict):
        return []
    branches = [b for k in ("anyOf", "oneOf") for b in schema.get(k) or []]
    if branches:
        return [n for b in branches for n in pin_nodes(b, path)]
    if not path:
        return [schema] if schema.get("type") == "string" else []
    head, _, rest = path.partition(".")
    return pin_nodes((schema.get("properties") or {}).get(head), rest)


def pinned_schema(schema: dict[str, Any], pins: dict[str, str]) -> dict[str, Any]:
    """A copy of `schema` whose string at each path must start with the given text, then match what the node
    allowed before (its pattern without the leading ^, else any text). Only narrows: decoding with it can
    only write what the schema admits."""
    out = copy.deepcopy(schema)
    for path, prefix in pins.items():
        nodes = pin_nodes(out, path)
        if not nodes:
            raise KeyError(path)
        for node in nodes:
            rest = node.get("pattern")
            rest = rest[1:] if rest and rest.startswith("^") else (rest and f".*(?:{rest})") or ".*$"
            node["pattern"] = "^" + _literal(prefix) + rest
    return out
