"""Line-count gate: a draft (or any text) must have at least N non-empty lines."""

from __future__ import annotations

import json
import re

from pydantic import BaseModel, ConfigDict, Field

from pocketguide.engine.registry import gate
from pocketguide.engine.runtime import GateInput, GateResult

_SENTENCE_END = re.compile(r"(?<=[^\d\s][.!?])\s+(?=\S)")  # not after "1." of a numbered list


class MinLinesOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_lines: int = Field(3, ge=1, description="fewest non-empty lines the parsed text may have")
    sentences: bool = Field(False, description="count sentences too (a line with three sentences counts 3): "
                                               "small models often write one paragraph instead of lines")


@gate("min_lines", options=MinLinesOptions)
def min_lines(item: GateInput, opts: MinLinesOptions) -> GateResult:
    """At least `min_lines` non-empty lines (or sentences) in the parsed value (text, or its JSON)."""
    text = item.parsed if isinstance(item.parsed, str) else json.dumps(item.parsed, ensure_ascii=False, indent=1)
    lines = [line for line in text.splitlines() if line.strip()]
    if opts.sentences:
        lines = [part for line in lines for part in _SENTENCE_END.split(line) if part.strip()]
    n = len(lines)
    if n < opts.min_lines:
        return GateResult(False, "too_few_lines", {"lines": n, "min_lines": opts.min_lines})
    return GateResult(True, None, {"lines": n})
