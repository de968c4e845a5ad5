"""Generic gates: length bounds and required fields."""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field

from pocketguide.engine.records import lookup
from pocketguide.engine.registry import gate
from pocketguide.engine.runtime import GateInput, GateResult


class LengthOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_chars: int = Field(0, ge=0, description="shortest accepted text")
    max_chars: int | None = Field(None, ge=1, description="longest accepted text")


@gate("length", options=LengthOptions)
def length(item: GateInput, opts: LengthOptions) -> GateResult:
    """Length of the parsed value (text, or its JSON) within bounds."""
    text = item.parsed if isinstance(item.parsed, str) else json.dumps(item.parsed, ensure_ascii=False)
    n = len(text)
    if n < opts.min_chars:
        return GateResult(False, "too_short", {"chars": n, "min_chars": opts.min_chars})
    if opts.max_chars is not None and n > opts.max_chars:
        return GateResult(False, "too_long", {"chars": n, "max_chars": opts.max_chars})
    return GateResult(True, None, {"chars": n})


class RequiredOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fields: list[str] = Field(description="dotted paths that must be present and non-empty in the parsed value")


@gate("required_fields", options=RequiredOptions)
def required_fields(item: GateInput, opts: RequiredOptions) -> GateResult:
    """Each listed path exists in the parsed value and is not empty."""
    missing = [f for f in opts.fields if lookup(item.parsed, f, None) in (None, "", [], {})]
    return GateResult(not missing, "missing_fields" if missing else None, {"missing": missing})
