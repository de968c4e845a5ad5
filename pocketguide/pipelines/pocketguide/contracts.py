"""The PocketGuide data contracts: envelope v0 + typed payload v1 (JSON Schema draft 2020-12).

`validate_envelope(obj)` is the one check everything shares (the draft/refine parsers, the
`contract_ok` gate, the student evaluator): the envelope first, then the payload its
`payload_type` names, reporting the JSON path of the first violation.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

# where a PocketGuide project keeps its contracts, relative to its stages.yaml (parsers and gates take
# a `schemas_dir` option; the files are the project's, never the package's)
SCHEMAS_DIR = "data/schemas"
PAYLOAD_TYPES = ("itinerary", "checklist", "decision_tree", "procedure")
ENVELOPE_FILE = "envelope.v0.json"
RESPONSE_FILE = "response.v1.json"


def payload_file(payload_type: str) -> str:
    return f"payload.{payload_type}.v1.json"


def _load(schemas_dir: str, name: str) -> dict[str, Any]:
    """Cached per file version: a schema edited between runs of one process is read again."""
    st = (Path(schemas_dir) / name).stat()
    return _load_version(schemas_dir, name, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=32)
def _load_version(schemas_dir: str, name: str, mtime_ns: int, size: int) -> dict[str, Any]:
    return json.loads((Path(schemas_dir) / name).read_text())


def load_schema(name: str, schemas_dir: Path | str) -> dict[str, Any]:
    """A contract schema by file name (a copy: callers may not mutate the cached one)."""
    return copy.deepcopy(_load(str(Path(schemas_dir).resolve()), name))


def _validator(schemas_dir: str, name: str) -> Draft202012Validator:
    st = (Path(schemas_dir) / name).stat()
    return _validator_version(schemas_dir, name, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=32)
def _validator_version(schemas_dir: str, name: str, mtime_ns: int, size: int) -> Draft202012Validator:
    return Draft202012Validator(_load_version(schemas_dir, name, mtime_ns, size))


def json_path(parts: Any, prefix: str = "$") -> str:
    """('payload', 'steps', 0, 'step') → $.payload.steps[0].step"""
    return prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def first_violation(validator: Draft202012Validator, obj: Any) -> ValidationError | None:
    """The most relevant error (jsonschema's best_match: shallowest, deterministic), or None."""
    return best_match(validator.iter_errors(obj))


def violation_path(err: ValidationError, prefix: str = "$") -> str:
    """Where the violation is; a missing required field points at the field itself."""
    parts = list(err.absolute_path)
    if err.validator == "required" and isinstance(err.instance, dict):
        missing = [k for k in err.validator_value if k not in err.instance]
        parts += missing[:1]
    return json_path(parts, prefix)


def check_envelope(obj: Any, schemas_dir: Path | str) -> tuple[bool, str | None, str | None, str | None]:
    """(ok, code, path, message): envelope v0 first, then the payload schema for its payload_type."""
    root = str(Path(schemas_dir).resolve())
    err = first_violation(_validator(root, ENVELOPE_FILE), obj)
    if err is not None:
        return False, "envelope_schema_failed", violation_path(err), err.message[:300]
    payload_validator = _validator(root, payload_file(obj["payload_type"]))
    err = first_violation(payload_validator, obj["payload"])
    if err is not None:
        return False, "payload_schema_failed", violation_path(err, "$.payload"), err.message[:300]
    return True, None, None, None


def _violation(code: str, err: ValidationError, prefix: str = "$") -> dict[str, str]:
    return {"code": code, "path": violation_path(err, prefix), "message": err.message[:300]}


def contract_block(obj: Any, mode: str | None, schemas_dir: Path | str,
                   parse_error: tuple[str, str] | None = None) -> dict[str, Any]:
    """The per-record contract block of the original PocketGuide: strict_json_ok (the whole answer is one
    JSON object), lenient_json_ok (one was found: whole, fenced or in prose), envelope_ok (envelope v0),
    payload_ok (the payload against the schema its payload_type names, checked even when the envelope
    fails) and errors ({code, path, message}, first the one a parser rejects with). `obj` is the object
    found leniently (None: none was), `mode` how it was found."""
    errors = [{"code": parse_error[0], "path": "$", "message": parse_error[1][:300]}] if parse_error else []
    envelope_ok = payload_ok = False
    if isinstance(obj, dict):
        root = str(Path(schemas_dir).resolve())
        err = first_violation(_validator(root, ENVELOPE_FILE), obj)
        envelope_ok = err is None
        if err is not None:
            errors.append(_violation("envelope_schema_failed", err))
        ptype = obj.get("payload_type")
        if ptype in PAYLOAD_TYPES and "payload" in obj:
            err = first_violation(_validator(root, payload_file(ptype)), obj["payload"])
            payload_ok = err is None
            if err is not None:
                errors.append(_violation("payload_schema_failed", err, "$.payload"))
        elif envelope_ok:  # the envelope schema names the types; this is only reached if it stops doing so
            errors.append({"code": "payload_schema_failed", "path": "$.payload_type",
                           "message": f"no payload schema for payload_type {ptype!r}"})
    return {"strict_json_ok": mode == "strict", "lenient_json_ok": isinstance(obj, dict), "envelope_ok": envelope_ok,
            "payload_ok": payload_ok, "errors": errors}


def validate_envelope(obj: Any, schemas_dir: Path | str) -> tuple[bool, str | None, str | None]:
    """(ok, code, path): code is envelope_schema_failed or payload_schema_failed, path the first violation."""
    ok, code, path, _ = check_envelope(obj, schemas_dir)
    return ok, code, path


# The compact decoding profile keeps every required field plus these optional ones, and caps arrays:
# a small teacher fills a smaller worst case with longer, more readable strings (the embedded teacher
# shrinks string caps until the schema's worst case fits max_tokens).
COMPACT_KEEP = frozenset({"priority", "why", "type", "text", "options", "root_question", "edges", "condition"})
COMPACT_MAX_ITEMS = 2  # measured: 3-item lists were where SmolLM2-135M repeated itself and ran long
# The contracts accept what a strong teacher writes (the original project's payload v1 shapes: alternative
# forms, empty strings); a small model decodes one simple form of each. So in the compact profile an `anyOf`
# keeps its first branch (the contract files list the simplest first: a string option, a cost as text),
# and every required free-text string of the payload is non-empty.
# ... and asks for a minimum of substance where the contract allows less: measured on SmolLM2-135M, drafts
# left next_steps and verification_steps empty and wrote one-item groups, steps and days (the critic's
# `thin_structure`), and decision-tree nodes with an id only. A grammar can rule those out; it cannot
# make the content good.
COMPACT_MIN_ITEMS = {"assumptions": 1, "next_steps": 1, "verification_steps": 1, "items": 2, "steps": 2, "nodes": 2}
COMPACT_REQUIRE = {"nodes": ("type", "text")}  # node fields the compact profile makes required
COMPACT_MAX_BY_KEY = {"nodes": 3}  # a decision tree needs its question and two outcomes
COMPACT_INT_MAX = {"day": 14, "step": 9}  # measured: "day": 1089467728 when the grammar left integers unbounded
# ... and shapes free text as words: (fewest, most) words per field, each word up to COMPACT_WORD_CHARS plain
# characters, the first word starting with a letter and 2 characters long at least. Measured on SmolLM2-135M
# (docs/pocketguide.md): one-word sentences ("yes", "Paris", "fijian") in 40 of 96 drafts, and answers that ran to ~600 tokens; the word counts
# rule the first out and keep an answer near 300 tokens (a 135M teacher's long sentences are its worst).
# Lengths go into the pattern (llama.cpp's grammar ignores min/maxLength beside a pattern); maxLength stays
# for the schema's worst-case size.
COMPACT_WORDS = {"summary": (4, 12), "assumptions": (3, 10), "uncertainty_notes": (4, 12), "next_steps": (3, 10),
                 "verification_steps": (3, 10), "text": (3, 10), "activity": (3, 10), "instruction": (3, 10),
                 "why": (3, 10), "root_question": (4, 12), "title": (2, 6), "name": (1, 4), "condition": (1, 6)}
COMPACT_TEXT_CHARS = "A-Za-z0-9,.;'()&%!?+-"  # plain prose: no markup, links or code (a space separates words)
COMPACT_WORD_CHARS = 17


def word_pattern(fewest: int, most: int, chars: str = COMPACT_TEXT_CHARS, word: int = COMPACT_WORD_CHARS) -> str:
    """A regex for `fewest`–`most` space-separated words of plain characters, the first starting with a letter."""
    rest = f"( [{chars}]{{1,{word}}}){{{max(fewest - 1, 0)},{most - 1}}}" if most > 1 else ""
    return f"^[A-Za-z][{chars}]{{1,{word - 1}}}{rest}$"  # a first word of 2 characters at least


def _shape_words(key: str, sub: dict[str, Any]) -> None:
    node = sub.get("items") if sub.get("type") == "array" else sub
    if key in COMPACT_WORDS and isinstance(node, dict) and node.get("type") == "string" and not (
            {"enum", "const", "pattern", "format"} & set(node)):
        fewest, most = COMPACT_WORDS[key]
        node["pattern"] = word_pattern(fewest, most)
        node["minLength"] = max(node.get("minLength", 0), 2)
        node["maxLength"] = most * (COMPACT_WORD_CHARS + 1)


def _compact(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            required = set(node.get("required", []))
            node["properties"] = {k: v for k, v in node["properties"].items() if k in required or k in COMPACT_KEEP}
            for key, sub in node["properties"].items():
                if isinstance(sub, dict):
                    _shape_words(key, sub)
                    if key in COMPACT_INT_MAX and sub.get("type") == "integer":
                        sub["maximum"] = min(sub.get("maximum", COMPACT_INT_MAX[key]), COMPACT_INT_MAX[key])
                if isinstance(sub, dict) and sub.get("type") == "array":
                    if key in COMPACT_MIN_ITEMS:
                        sub["minItems"] = max(sub.get("minItems", 0), COMPACT_MIN_ITEMS[key])
                    item = sub.get("items")
                    if key in COMPACT_REQUIRE and isinstance(item, dict):
                        item["required"] = list(dict.fromkeys([*item.get("required", []), *COMPACT_REQUIRE[key]]))
        if node.get("type") == "array":
            node["maxItems"] = min(node.get("maxItems", COMPACT_MAX_ITEMS), COMPACT_MAX_ITEMS)
        for v in node.values():
            _compact(v)
    elif isinstance(node, list):
        for v in node:
            _compact(v)


def _key_caps(node: Any) -> None:
    if isinstance(node, dict):
        for key, sub in (node.get("properties") or {}).items() if node.get("type") == "object" else ():
            if key in COMPACT_MAX_BY_KEY and isinstance(sub, dict) and sub.get("type") == "array":
                sub["maxItems"] = COMPACT_MAX_BY_KEY[key]
        for v in node.values():
            _key_caps(v)
    elif isinstance(node, list):
        for v in node:
            _key_caps(v)


def _one_form(node: Any) -> Any:
    """The schema with every `anyOf` replaced by its first branch."""
    if isinstance(node, dict):
        if "anyOf" in node:
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            return _one_form({**node["anyOf"][0], **rest})
        return {k: _one_form(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_one_form(v) for v in node]
    return node


def _nonempty_required_strings(node: Any) -> None:
    if isinstance(node, dict):
        for key in node.get("required", []) if node.get("type") == "object" else []:
            sub = (node.get("properties") or {}).get(key)
            if isinstance(sub, dict) and sub.get("type") == "string" and not ({"enum", "const"} & set(sub)):
                sub.setdefault("minLength", 1)
        for v in node.values():
            _nonempty_required_strings(v)
    elif isinstance(node, list):
        for v in node:
            _nonempty_required_strings(v)


def compact_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """A payload contract's compact decoding form: one form, non-empty required text (then `_compact`)."""
    out = _one_form(payload)
    _nonempty_required_strings(out)
    return out


def compose_response_schema(schemas_dir: Path | str, profile: str = "compact") -> dict[str, Any]:
    """One self-contained schema for constrained decoding: anyOf over the payload types, each branch the
    envelope with `payload_type` fixed and the payload inlined (no $ref: grammar engines and the
    embedded teacher's size capping walk plain nested schemas). `full` (response.full.v1.json) admits
    exactly what the contracts admit: the stages validate with it. `compact` (response.v1.json) is the
    decoding profile sent to the teacher: no open `metadata`/`extra`, most optional fields dropped,
    arrays capped at 3; everything it admits satisfies the contracts."""
    env = load_schema(ENVELOPE_FILE, schemas_dir)
    branches = []
    for ptype in PAYLOAD_TYPES:
        payload = load_schema(payload_file(ptype), schemas_dir)
        for key in ("$schema", "$id", "version", "title", "description"):
            payload.pop(key, None)
        props = copy.deepcopy(env["properties"])
        if profile == "compact":  # open objects a small model could wander into
            payload = compact_payload(payload)
            payload["properties"].pop("extra", None)
            props.pop("metadata", None)
        props["payload_type"] = {"type": "string", "const": ptype}
        props["payload"] = payload
        branches.append({"type": "object", "properties": props, "required": list(env["required"]),
                         "additionalProperties": False})
    if profile == "compact":
        _compact(branches)
        _key_caps(branches)
        _nonempty_required_strings(branches)  # again: _compact made more text required (e.g. a node's text)
    elif profile != "full":
        raise ValueError(f"unknown response profile '{profile}' — use compact or full")
    name = "response.v1.json" if profile == "compact" else "response.full.v1.json"
    return {"$schema": env["$schema"], "$id": f"pocketguide/{name}", "version": "v1",
            "title": f"PocketGuide answer ({profile}): envelope v0 with a typed v1 payload", "anyOf": branches}


def compose_typed_response_schema(payload_type: str, schemas_dir: Path | str) -> dict[str, Any]:
    """The compact decoding profile for one payload type (response.<type>.v1.json): when the plan already
    fixes the type, the teacher cannot answer with another one, and the smaller worst case leaves
    room for longer strings."""
    (branch,) = [b for b in compose_response_schema(schemas_dir)["anyOf"]
                 if b["properties"]["payload_type"]["const"] == payload_type]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"pocketguide/response.{payload_type}.v1.json", "version": "v1",
            "title": f"PocketGuide answer (compact, {payload_type})", **branch}


def write_response_schemas(schemas_dir: Path | str) -> list[Path]:
    """Regenerate the derived decoding/validation schemas from the contract files."""
    root = Path(schemas_dir)
    out = {"response.v1.json": compose_response_schema(root),
           "response.full.v1.json": compose_response_schema(root, profile="full")}
    for ptype in PAYLOAD_TYPES:
        out[f"response.{ptype}.v1.json"] = compose_typed_response_schema(ptype, root)
    for name, schema in out.items():
        (root / name).write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n")
    return [root / n for n in out]


__all__ = [
    "PAYLOAD_TYPES",
    "SCHEMAS_DIR",
    "check_envelope",
    "compose_response_schema",
    "compose_typed_response_schema",
    "json_path",
    "load_schema",
    "validate_envelope",
    "write_response_schemas",
]
