"""SFT record format: chat `messages`, canonical JSON targets, schema loading.

End of sequence: targets hold NO end-of-sequence token. The trainer appends the tokenizer's
`eos_token` after the assistant target (and learns it); a target that already contains a known
special token is rejected, so a token can never be doubled or silently missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import exceptions as js_exceptions
from jsonschema.validators import validator_for

from pocketguide.engine.errors import StageError
from pocketguide.engine.store import file_sha256

SPECIAL_TOKENS = ["</s>", "<s>", "<|endoftext|>", "<|im_end|>", "<|im_start|>", "<|eot_id|>", "<|end|>",
                  "<eos>", "<|end_of_text|>"]
EOS_POLICY = ("targets contain no end-of-sequence token; the trainer appends tokenizer.eos_token after the "
              "assistant message and trains on it")

def _ordered(value: Any) -> Any:
    """Nested objects get sorted keys: one stable byte form for equal content."""
    if isinstance(value, dict):
        return {k: _ordered(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_ordered(v) for v in value]
    return value


def _schema_ordered(value: Any, schema: Any) -> Any:
    """Nested objects in the schema's `properties` order (the order schema-constrained decoding writes them),
    keys the schema does not name after them, sorted; where the schema says nothing, sorted keys."""
    if not isinstance(schema, dict):
        return _ordered(value)
    if isinstance(value, dict):
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        known = [k for k in props if k in value]
        rest = sorted(k for k in value if k not in props)
        return {**{k: _schema_ordered(value[k], props[k]) for k in known},
                **{k: _ordered(value[k]) for k in rest}}
    if isinstance(value, list):
        items = schema.get("items")
        return [_schema_ordered(v, items) for v in value]
    return value


def canonical_target(envelope: dict[str, Any], order: list[str],
                     payload_schema: dict[str, Any] | None = None) -> str:
    """The target as one JSON text: top-level keys in `order` (unknown keys before the last ordered key,
    sorted; all sorted when `order` is empty), non-ASCII kept. Nested keys are sorted, except the payload's
    when `payload_schema` is given: those follow the schema's property order."""
    head = [k for k in order[:-1] if k in envelope]
    tail = [k for k in order[-1:] if k in envelope]
    extra = sorted(k for k in envelope if k not in order)
    doc = {k: _ordered(envelope[k]) for k in head + extra + tail}
    if payload_schema is not None and "payload" in doc:
        doc["payload"] = _schema_ordered(envelope["payload"], payload_schema)
    return json.dumps(doc, ensure_ascii=False)


def special_tokens_in(text: str) -> list[str]:
    return [t for t in SPECIAL_TOKENS if t in text]


class SchemaCheck:
    """A JSON Schema validator loaded once; first violation as (json_path, message)."""

    def __init__(self, path: Path, what: str, name: str | None = None):
        if not path.exists():
            raise StageError(f"{what} schema {path} not found — create it or set the stage's `schema` option")
        try:
            self.schema = json.loads(path.read_text())
            cls = validator_for(self.schema)
            cls.check_schema(self.schema)
        except (ValueError, js_exceptions.SchemaError) as exc:
            raise StageError(f"{what} schema {path} is not a valid JSON Schema: {exc}") from exc
        self.validator = cls(self.schema)
        self.path, self.name = path, name or str(path)
        self.sha256 = file_sha256(path)

    def first_error(self, value: Any) -> tuple[str, str] | None:
        errors = sorted(self.validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if not errors:
            return None
        e = errors[0]
        return e.json_path, e.message

    def describe(self) -> dict[str, Any]:
        return {"path": self.name, "sha256": self.sha256, "id": self.schema.get("$id"),
                "version": self.schema.get("version")}
