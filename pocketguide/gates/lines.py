"""Line-count gate: a draft (or any text) must have at least N non-empty lines."""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field

from ..registry import gate
from ..runtime import GateInput, GateResult


class MinLinesOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_lines: int = Field(3, ge=1, description="fewest non-empty lines the parsed text may have")


@gate("min_lines", options=MinLinesOptions)
def min_lines(item: GateInput, opts: MinLinesOptions) -> GateResult:
    """At least `min_lines` non-empty lines in the parsed value (text, or its JSON)."""
    text = item.parsed if isinstance(item.parsed, str) else json.dumps(item.parsed, ensure_ascii=False, indent=1)
    n = sum(1 for line in text.splitlines() if line.strip())
    if n < opts.min_lines:
        return GateResult(False, "too_few_lines", {"lines": n, "min_lines": opts.min_lines})
    return GateResult(True, None, {"lines": n})
