"""What a stage asks the teacher for when it wants structured output.

Tiny local models loop inside strings and arrays until max_tokens. The measured fix is to send the
model a derived, size-capped copy of the stage's schema (every string's maxLength and every array's
maxItems capped, closed objects), while validation keeps using the real schema. Every cap only
narrows the schema, so anything valid for the copy is valid for the original.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from typing import Any

from pocketguide.engine.teacher_spec import TeacherSettings

log = logging.getLogger(__name__)

#: provider → (max string length, max array items, fit to max_tokens) when the settings leave them unset
PROVIDER_CAPS: dict[str, tuple[int, int, bool]] = {"embedded": (200, 4, True)}
#: characters a free-text string may use in the schema sent to the model (a regex character class body),
#: per provider when `schema_text_chars` is unset. Measured on SmolLM2-135M at temperature 0.7: without
#: it, drafts filled strings with HTML tags, made-up URLs and code fragments (`<img src=…`, `{{>&}}`);
#: plain prose needs none of `< > { } [ ] / : @ \ | ` and backticks.
PROVIDER_TEXT_CHARS: dict[str, str] = {"embedded": "A-Za-z0-9 ,.;'()&%!?+-"}  # the first must be a letter
#: provider → decoding profile when the settings leave it unset: only a small local model needs the compact
#: response_schema; a capable endpoint decoding with it could never write what the contract allows beyond it
#: (a 4-item checklist when the compact profile caps arrays at 3)
PROVIDER_PROFILE: dict[str, str] = {"embedded": "compact"}
#: characters per token assumed when sizing a schema's worst case against max_tokens (conservative:
#: JSON text averages ~3.5; looping junk inside a string is often shorter per token)
CHARS_PER_TOKEN = 3.0
MIN_FIT_STRING = 8
# subschemas an instance must satisfy on its own, so narrowing them narrows the whole schema.
# Never `not` or `if`: narrowing those would widen the schema or switch which branch applies.
_WHOLE_LISTS = ("prefixItems",)
_WHOLE_DICTS = ("properties", "$defs", "definitions", "patternProperties")
_WHOLE_ONE = ("items", "additionalProperties", "contains", "unevaluatedProperties", "unevaluatedItems",
              "propertyNames")
# subschemas that may describe only part of the object (allOf parts, then/else, dependentSchemas)
_PART_LISTS = ("allOf",)
_PART_ONE = ("then", "else")
_ALTERNATIVES = ("anyOf", "oneOf")


@dataclass(frozen=True)
class Caps:
    """Caps for the schema sent to a model; None = leave that kind of node alone."""

    max_string: int | None = None
    max_items: int | None = None
    text_chars: str | None = None  # regex class body: free-text strings become ^[A-Za-z0-9][chars]{m,n}$

    @property
    def active(self) -> bool:
        return bool(self.max_string or self.max_items or self.text_chars)


def _types(node: dict[str, Any]) -> set[str]:
    t = node.get("type")
    return set(t) if isinstance(t, list) else {t} if isinstance(t, str) else set()


def _cap_string(node: dict[str, Any], cap: int | None, chars: str | None) -> None:
    # enum/const/format/pattern strings have their own shape; a cap could make them unsatisfiable
    if any(k in node for k in ("enum", "const", "format", "pattern")):
        return
    floor = node.get("minLength", 0)
    if cap:
        node["maxLength"] = max(min(node.get("maxLength", cap), cap), floor)
    if chars and node.get("maxLength", 0) >= 2:  # a 1-character string keeps its own shape
        # llama.cpp's grammar ignores min/maxLength beside a pattern, so the pattern carries the lengths;
        # a letter first and 2 characters at least: never empty, never "1" or "..." (measured: 9 of 24 drafts
        # had number-only or punctuation-only strings in prose fields)
        lo, hi = max(floor, 2), max(node["maxLength"], 2)
        node["pattern"] = f"^[A-Za-z][{chars}]{{{lo - 1},{hi - 1}}}$"
        node["minLength"] = lo


def _cap_array(node: dict[str, Any], cap: int) -> None:
    floor = node.get("minItems", 0)
    prefix = len(node.get("prefixItems", []) or [])
    node["maxItems"] = max(min(node.get("maxItems", cap), cap), floor, prefix if node.get("items") is False else 0)


def _walk(node: Any, caps: Caps, close: bool = True) -> None:
    if not isinstance(node, dict):
        return
    types = _types(node)
    if (caps.max_string or caps.text_chars) and "string" in types:
        _cap_string(node, caps.max_string, caps.text_chars)
    if caps.max_items and "array" in types:
        _cap_array(node, caps.max_items)
    composed = any(k in node for k in (*_PART_LISTS, *_PART_ONE, *_ALTERNATIVES, "dependentSchemas", "if"))
    if close and not composed and "properties" in node and node.get("additionalProperties", True) is True:
        node["additionalProperties"] = False  # a closed object cannot grow extra keys forever
    for key in _WHOLE_LISTS:
        for sub in node.get(key) or []:
            _walk(sub, caps)
    for key in _WHOLE_DICTS:
        for sub in (node.get(key) or {}).values():
            _walk(sub, caps)
    for key in _WHOLE_ONE:
        _walk(node.get(key), caps)
    # a part of a composed object must stay open: another part may allow the keys it does not name
    for key in _PART_LISTS:
        for sub in node.get(key) or []:
            _walk(sub, caps, close=False)
    for key in _PART_ONE:
        _walk(node.get(key), caps, close=False)
    for sub in (node.get("dependentSchemas") or {}).values():
        _walk(sub, caps, close=False)
    for key in _ALTERNATIVES:  # an alternative describes the whole object unless the parent adds keys
        for sub in node.get(key) or []:
            _walk(sub, caps, close=close and "properties" not in node)


def capped_schema(schema: dict[str, Any], caps: Caps) -> dict[str, Any]:
    """A deep copy of `schema` with strings/arrays capped and objects closed; the original is untouched.

    Local `$ref`s keep pointing into `$defs`/`definitions`, which are capped in place, so the
    referenced shapes are capped too without inlining (recursive schemas stay finite in size).
    """
    out = copy.deepcopy(schema)
    if caps.active:
        _walk(out, caps)
    return out


def _resolve(root: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#"):
        return None
    node: Any = root
    for part in [p for p in ref[1:].split("/") if p]:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def worst_case_chars(schema: dict[str, Any]) -> int | None:
    """Longest JSON text the schema allows (with light indentation), or None when unbounded."""
    return _chars(schema, schema, depth=1, seen=())


def _chars(node: Any, root: dict[str, Any], depth: int, seen: tuple[str, ...]) -> int | None:
    if node is True or not isinstance(node, dict):
        return None if node is True else 0
    if "$ref" in node:
        ref = node["$ref"]
        if ref in seen:
            return None  # recursion: unbounded
        return _chars(_resolve(root, ref), root, depth, (*seen, ref))
    if "const" in node:
        return len(json.dumps(node["const"]))
    if "enum" in node:
        return max((len(json.dumps(v)) for v in node["enum"]), default=0)
    branches = [b for k in ("anyOf", "oneOf") for b in node.get(k) or []]
    if branches:
        sizes = [_chars(b, root, depth, seen) for b in branches]
        return None if None in sizes else max(sizes)  # type: ignore[type-var]
    types = _types(node)
    if not types and "properties" in node:
        types = {"object"}
    sizes = [_type_chars(t, node, root, depth, seen) for t in types or {"any"}]
    return None if None in sizes else max(sizes)  # type: ignore[type-var]


def _type_chars(t: str, node: dict[str, Any], root: dict[str, Any], depth: int, seen: tuple[str, ...]) -> int | None:
    indent = 2 * depth + 2  # newline + indentation before each member
    if t == "string":
        if "maxLength" in node:
            return node["maxLength"] + 2
        return 40 if "format" in node else None  # date, date-time, uuid, email…: short by nature
    if t in ("integer", "number"):
        return 12
    if t in ("boolean", "null"):
        return 5
    if t == "array":
        item = _chars(node.get("items", True), root, depth + 1, seen)
        prefix = [_chars(p, root, depth + 1, seen) for p in node.get("prefixItems") or []]
        if "maxItems" not in node or item is None or None in prefix:
            return None
        return 2 + node["maxItems"] * (max([item, *prefix]) + indent)  # type: ignore[type-var]
    if t == "object":
        if node.get("additionalProperties", True) is not False:
            return None
        total = 2
        for key, sub in (node.get("properties") or {}).items():
            size = _chars(sub, root, depth + 1, seen)
            if size is None:
                return None
            total += len(key) + 4 + indent + size
        return total
    return None


def worst_case_tokens(schema: dict[str, Any]) -> int | None:
    chars = worst_case_chars(schema)
    return None if chars is None else int(chars / CHARS_PER_TOKEN) + 1


def decoding_profile(settings: TeacherSettings) -> str:
    """compact (send the stage's response_schema) or full (send its schema): the setting, else the provider's."""
    return settings.decoding_profile or PROVIDER_PROFILE.get(settings.provider or "openai", "full")


def resolve_caps(settings: TeacherSettings) -> tuple[Caps, bool]:
    """Caps from the settings; unset fields take the provider's default (0 turns a cap off)."""
    provider = settings.provider or "openai"
    d_string, d_items, d_fit = PROVIDER_CAPS.get(provider, (0, 0, False))
    string = d_string if settings.schema_max_string is None else settings.schema_max_string
    items = d_items if settings.schema_max_items is None else settings.schema_max_items
    fit = d_fit if settings.schema_fit_max_tokens is None else settings.schema_fit_max_tokens
    chars = PROVIDER_TEXT_CHARS.get(provider) if settings.schema_text_chars is None else settings.schema_text_chars
    return Caps(string or None, items or None, chars or None), fit


def fit_caps(schema: dict[str, Any], caps: Caps, max_tokens: int) -> Caps:
    """Shrink the string cap until the capped schema's worst case fits in max_tokens (binary search)."""
    if not caps.max_string:
        return caps
    need = worst_case_tokens(capped_schema(schema, caps))
    if need is None or need <= max_tokens:
        return caps
    lo, hi = MIN_FIT_STRING, caps.max_string
    while lo < hi:
        mid = (lo + hi + 1) // 2
        size = worst_case_tokens(capped_schema(schema, Caps(mid, caps.max_items, caps.text_chars)))
        lo, hi = (mid, hi) if size is not None and size <= max_tokens else (lo, mid - 1)
    fitted = Caps(lo, caps.max_items, caps.text_chars)
    size = worst_case_tokens(capped_schema(schema, fitted))
    if size is not None and size > max_tokens:
        log.warning("schema worst case (~%d tokens) exceeds max_tokens=%d even with strings capped at %d; "
                    "raise max_tokens or lower schema_max_items", size, max_tokens, lo)
    return fitted


def model_schema(settings: TeacherSettings, schema: dict[str, Any]) -> dict[str, Any]:
    """The schema the model receives for these settings (capped, fitted to max_tokens when asked)."""
    caps, fit = resolve_caps(settings)
    if fit and settings.max_tokens:
        caps = fit_caps(schema, caps, settings.max_tokens)
    return capped_schema(schema, caps)


def schema_example(schema: dict[str, Any]) -> Any:
    """A small instance of `schema` for a one-shot prompt: its own `examples` first, else a skeleton
    built from enums, defaults, per-field examples and descriptions (valid for the capped schema)."""
    return _example(schema, schema, ())


def _example(node: Any, root: dict[str, Any], seen: tuple[str, ...]) -> Any:
    if not isinstance(node, dict):
        return None
    if "$ref" in node and node["$ref"] not in seen:
        return _example(_resolve(root, node["$ref"]), root, (*seen, node["$ref"]))
    for key in ("const", "default"):
        if key in node:
            return node[key]
    if node.get("examples"):
        return node["examples"][0]
    if node.get("enum"):
        return node["enum"][0]
    for key in ("anyOf", "oneOf"):
        if node.get(key):
            return _example(node[key][0], root, seen)
    types = _types(node) or ({"object"} if "properties" in node else {"string"})
    t = next(x for x in ("object", "array", "string", "integer", "number", "boolean", "null") if x in types)
    return _example_of_type(t, node, root, seen)


def _example_of_type(t: str, node: dict[str, Any], root: dict[str, Any], seen: tuple[str, ...]) -> Any:
    if t == "object":
        props = node.get("properties") or {}
        keys = [k for k in props if k in set(node.get("required") or [])] or list(props)
        return {k: _example(props[k], root, seen) for k in keys}
    if t == "array":
        n = max(node.get("minItems", 1), 1)
        n = min(n, node.get("maxItems", n))
        return [_example(node.get("items", {}), root, seen) for _ in range(n)]
    if t == "string":
        text = str(node.get("description") or "text")
        lo, hi = node.get("minLength", 0), node.get("maxLength", len(text))
        return (text + " " + "x" * lo)[:hi] if len(text) < lo else text[:hi]
    if t in ("integer", "number"):
        lo = node.get("minimum", node.get("exclusiveMinimum", 0) + (1 if "exclusiveMinimum" in node else 0))
        return lo if t == "integer" else float(lo)
    return False if t == "boolean" else None


def one_shot_text(settings: TeacherSettings, model_schema_: dict[str, Any] | None) -> str | None:
    """The example answer shown in the system prompt, or None.

    `one_shot` is literal text, `auto` (build one from the schema sent to the model), or `none`;
    unset means `auto` for providers with default caps (the embedded model) when a schema is sent.
    """
    choice = settings.one_shot
    if choice is None:
        choice = "auto" if (settings.provider or "openai") in PROVIDER_CAPS else "none"
    if choice == "none":
        return None
    if choice == "auto":
        if model_schema_ is None:
            return None
        return json.dumps(schema_example(model_schema_), ensure_ascii=False)
    return choice


def system_prompt_for(settings: TeacherSettings, response_format: dict[str, Any] | None) -> str | None:
    """The system message: the settings' system prompt plus the one-shot example, if any."""
    schema = (response_format or {}).get("json_schema", {}).get("schema")
    example = one_shot_text(settings, schema)
    if not example:
        return settings.system_prompt
    head = (settings.system_prompt + "\n\n") if settings.system_prompt else ""
    return f"{head}Example of the answer format (one JSON object):\n{example}"


def response_format_for(settings: TeacherSettings, schema: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    if settings.response_format == "json_schema" and schema is not None:
        return {"type": "json_schema", "json_schema": {"name": name.replace("-", "_")[:64],
                                                       "schema": model_schema(settings, schema), "strict": True}}
    if settings.response_format == "json_object":
        return {"type": "json_object"}
    return None
