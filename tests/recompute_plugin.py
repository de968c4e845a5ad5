"""A plugin for tests/test_recompute.py and tests/test_crash_safety.py: a parser with options, a gate that
reads a word list through `resolve()`, a gate whose work takes a set time (to kill a re-judge mid-way) and
a whole-dataset operation with an option."""

from __future__ import annotations

import json
import time

from pydantic import BaseModel, ConfigDict

from pocketguide.engine.errors import ParseError
from pocketguide.engine.registry import gate, operation, parser
from pocketguide.engine.runtime import GateInput, GateResult


CALLS = {"fields": 0}  # how often the `fields` parser ran (a gate-only re-judge keeps the stored parse)


class FieldsOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keep: list[str] = ["answer"]


@parser("fields", options=FieldsOptions)
def fields(raw: str, ctx) -> dict:
    """One JSON object, reduced to the fields listed in `keep`."""
    CALLS["fields"] += 1
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        raise ParseError("parse_failed", f"not JSON: {exc}") from None
    return {k: obj[k] for k in ctx.options.keep if k in obj}


class BannedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str = "banned.txt"


@gate("banned_words", options=BannedOptions)
def banned_words(item: GateInput, opts: BannedOptions) -> GateResult:
    """No word of the list file (relative to the stages.yaml) in the parsed answer."""
    words = item.resolve(opts.file).read_text().split()
    text = json.dumps(item.parsed).lower()
    hits = [w for w in words if w.lower() in text]
    return GateResult(not hits, "banned_word" if hits else None, {"hits": hits})


class SlowOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_chars: int = 1
    delay_s: float = 0.0


@gate("slow_length", options=SlowOptions)
def slow_length(item: GateInput, opts: SlowOptions) -> GateResult:
    """The raw answer has at least min_chars characters; takes delay_s per record."""
    time.sleep(opts.delay_s)
    n = len(item.raw or "")
    return GateResult(n >= opts.min_chars, None if n >= opts.min_chars else "too_short", {"chars": n})


class CountOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_words: int = 0


@operation("count_words", options=CountOptions)
def count_words(ctx, opts: CountOptions) -> None:
    """Every input record with its word count; rejected below min_words."""
    for rec in ctx.records():
        n = len(str(rec.get("parsed") or "").split())
        out = ctx.derive(rec, words=n)
        if n >= opts.min_words:
            ctx.accept(out)
        else:
            ctx.reject(out, "too_few_words")
