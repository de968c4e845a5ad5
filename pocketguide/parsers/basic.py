"""Generic parsers every stage can use."""

from __future__ import annotations

from typing import Any

from pocketguide.engine.errors import ParseError
from pocketguide.engine.registry import parser
from pocketguide.parsers.jsonsafe import loads_json


@parser("identity")
def identity(raw: str, ctx: Any) -> str:
    """The raw text, unchanged."""
    return raw


@parser("json")
def strict_json(raw: str, ctx: Any) -> Any:
    """The whole text must be one JSON value."""
    try:
        return loads_json(raw)
    except ValueError as exc:
        raise ParseError("parse_failed", f"not valid JSON: {exc}") from None


@parser("stripped")
def stripped(raw: str, ctx: Any) -> str:
    """The text with surrounding whitespace removed; empty text is a failure."""
    text = raw.strip()
    if not text:
        raise ParseError("empty_response", "the response is empty")
    return text
