"""Parsers for teacher answers that should be one JSON object (the PocketGuide envelope, a critique).

Lenient extraction, in order: the whole text; a fenced ```json block; the first `{` from which a JSON
object parses to its own closing brace (braces inside JSON strings are skipped by the JSON scanner).
Never `eval`. The mode that worked is
recorded in `ctx.notes["parse_mode"]` (strict | fenced | extracted) so stats can show how much of a
dataset needed rescuing.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pocketguide.engine.errors import ParseError
from pocketguide.engine.registry import parser
from pocketguide.parsers.jsonsafe import decode_at, loads_json
from pocketguide.pipelines.pocketguide.contracts import SCHEMAS_DIR, check_envelope

_FENCE = re.compile(r"```[ \t]*(?:json|JSON|json5)?[ \t]*\r?\n?(.*?)```", re.DOTALL)
MAX_CANDIDATES = 64  # fences and brace starts tried before giving up: bounds the work on hostile text


def _loads(text: str) -> Any:
    return loads_json(text)  # ValueError for anything unstorable (RecursionError on deep nesting included)


def _braced_objects(text: str):
    """Objects that start at a `{` and parse as JSON up to their own closing brace, in order of their start;
    at most MAX_CANDIDATES starts tried. Each try is json's C scanner from that brace (it stops at the first
    error), so hostile text — `{{{{…`, a brace in prose, an unclosed string — costs little."""
    pos = text.find("{")
    tries = 0
    while pos != -1 and tries < MAX_CANDIDATES:
        tries += 1
        try:
            value, end = decode_at(text, pos)
        except ValueError as exc:  # a run of openers nested past MAX_DEPTH is junk: skip it at once
            pos = text.find("{", getattr(exc, "resume", None) or pos + 1)
            continue
        yield value  # a `{` start can only decode to an object
        pos = text.find("{", end)


def extract_json_object(raw: str, lenient: bool) -> tuple[dict[str, Any], str]:
    """(object, parse_mode) or ParseError('json_parse_failed', why)."""
    text = (raw or "").strip()
    if not text:
        raise ParseError("json_parse_failed", "the response is empty")
    try:
        whole = _loads(text)
    except ValueError as exc:
        whole, why = None, f"not valid JSON ({exc})"
    else:
        if isinstance(whole, dict):
            return whole, "strict"
        # a complete JSON value of the wrong type is an answer in the wrong shape, not wrapped JSON
        raise ParseError("json_parse_failed", f"expected one JSON object, got a top-level {type(whole).__name__}")
    if not lenient:
        raise ParseError("json_parse_failed", f"strict parsing: {why}")
    for n, fence in enumerate(_FENCE.finditer(text)):
        if n >= MAX_CANDIDATES:
            break
        block = fence.group(1)
        try:
            value = _loads(block.strip())
        except ValueError:
            continue
        if isinstance(value, dict):
            return value, "fenced"
    for value in _braced_objects(text):
        return value, "extracted"
    hint = "unbalanced braces (truncated?)" if text.count("{") > text.count("}") else "no JSON object found"
    raise ParseError("json_parse_failed", f"lenient parsing: {hint}")


class EnvelopeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schemas_dir: str = Field(SCHEMAS_DIR, description="folder of envelope.v0.json and payload.<type>.v1.json, "
                                                     "relative to the stages.yaml")


def _envelope(raw: str, ctx: Any, lenient: bool) -> dict[str, Any]:
    obj, mode = extract_json_object(raw, lenient)
    ctx.notes["parse_mode"] = mode
    schemas_dir = (ctx.options or EnvelopeOptions()).schemas_dir
    ok, code, path, message = check_envelope(obj, ctx.resolve(schemas_dir))
    if not ok:
        ctx.notes["violation_path"] = path
        raise ParseError(code or "envelope_schema_failed", f"{path}: {message}")
    return obj


@parser("envelope_strict", options=EnvelopeOptions)
def envelope_strict(raw: str, ctx: Any) -> dict[str, Any]:
    """The whole answer must be one JSON object that satisfies envelope v0 and its payload v1 schema."""
    try:
        return _envelope(raw, ctx, lenient=False)
    except ParseError:
        ctx.notes.setdefault("parse_mode", "failed")
        raise


@parser("envelope_lenient", options=EnvelopeOptions)
def envelope_lenient(raw: str, ctx: Any) -> dict[str, Any]:
    """Like envelope_strict, but also finds the object in a ```json fence or inside surrounding prose."""
    try:
        return _envelope(raw, ctx, lenient=True)
    except ParseError:
        ctx.notes.setdefault("parse_mode", "failed")
        raise


@parser("json_object_lenient")
def json_object_lenient(raw: str, ctx: Any) -> dict[str, Any]:
    """One JSON object, found leniently (whole text, fence, or braces in prose); the stage schema validates it."""
    try:
        obj, mode = extract_json_object(raw, lenient=True)
    except ParseError:
        ctx.notes["parse_mode"] = "failed"
        raise
    ctx.notes["parse_mode"] = mode
    return obj
