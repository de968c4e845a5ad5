"""Parsers of the creative-writing study (examples/daydreaming): essay extraction for drafts and essays,
and judge-score extraction for evaluations. Each failure is a ParseError whose code is the reason."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pocketguide.engine.errors import ParseError
from pocketguide.engine.registry import parser

TEXT_STAGES = ("draft", "essay")  # essay-extracting parsers serve LLM essays too

_ESSAY_OPEN = re.compile(r"<essay\b[^>]*>", re.IGNORECASE)
_ESSAY_CLOSE = re.compile(r"</essay\s*>", re.IGNORECASE)
_THINKING = re.compile(r"<thinking\b[^>]*>.*?</thinking\s*>", re.IGNORECASE | re.DOTALL)
_IDEA = re.compile(r"<essay-idea\b([^>]*)>(.*?)(?:</essay-idea\s*>|(?=<essay-idea\b)|\Z)", re.IGNORECASE | re.DOTALL)
_IDEA_STAGE = re.compile(r"""stage\s*=\s*["']?(\d+)""", re.IGNORECASE)


def _register(name: str, stages: tuple[str, ...] = TEXT_STAGES, options: type[BaseModel] | None = None):
    def decorate(fn):
        for stage in stages:
            parser(name, stage=stage, options=options)(fn)
        return fn

    return decorate


def _essay_block(raw: str) -> str | None:
    """The first <essay>…</essay> block; an unclosed tag takes the rest. None when there is no tag."""
    start = _ESSAY_OPEN.search(raw)
    if start is None:
        return None
    end = _ESSAY_CLOSE.search(raw, start.end())
    return raw[start.end(): end.start() if end else len(raw)].strip()


@_register("essay_block")
def essay_block(raw: str, ctx: Any) -> str:
    """The first `<essay>` block (an unclosed tag takes the rest of the text)."""
    if not raw.strip():
        raise ParseError("empty_response", "the response is empty")
    text = _essay_block(raw)
    if text is None:
        raise ParseError("no_essay_block", "no <essay> tag in the response — use essay_block_lenient to fall back")
    if not text:
        raise ParseError("empty_essay", "the <essay> block is empty")
    ctx.notes["parse_mode"] = "closed" if _ESSAY_CLOSE.search(raw) else "unclosed"
    return text


@_register("essay_block_lenient")
def essay_block_lenient(raw: str, ctx: Any) -> str:
    """`<thinking>` blocks dropped, then the first `<essay>` block, else the whole remaining text."""
    cleaned = _THINKING.sub("", raw)
    text = _essay_block(cleaned)
    if text:
        ctx.notes["parse_mode"] = "essay_block"
        return text
    text = cleaned.strip()
    if not text:
        raise ParseError("empty_response", "nothing is left once <thinking> blocks are removed")
    ctx.notes["parse_mode"] = "whole_text"
    return text


@_register("essay_idea_last")
def essay_idea_last(raw: str, ctx: Any) -> str:
    """The `<essay-idea stage="N">` block with the highest N; without numbered stages, the last block."""
    blocks = []
    for order, m in enumerate(_IDEA.finditer(raw)):
        stage = _IDEA_STAGE.search(m.group(1))
        blocks.append((int(stage.group(1)) if stage else None, order, m.group(2).strip()))
    blocks = [b for b in blocks if b[2]]
    if not blocks:
        code = "empty_response" if not raw.strip() else "no_essay_idea"
        raise ParseError(code, "no non-empty <essay-idea> block in the response")
    numbered = [b for b in blocks if b[0] is not None]
    # highest stage wins; among equal stages the later block (a revision) wins
    best = max(numbered, key=lambda b: (b[0], b[1])) if numbered else blocks[-1]
    ctx.notes["parse_mode"] = f"stage_{best[0]}" if best[0] is not None else "last_block"
    return best[2]


# --- evaluation scores ------------------------------------------------------------------------

class ScoreRange(BaseModel):
    """Options of `in_last_line`: the accepted score range, both ends INCLUDED."""

    model_config = ConfigDict(extra="forbid")
    min_score: float = Field(0, description="lowest accepted score (inclusive)")
    max_score: float = Field(10, description="highest accepted score (inclusive)")
    last_lines: int = Field(3, ge=1, description="how many non-empty lines from the end to search")

    @model_validator(mode="after")
    def _ordered(self) -> ScoreRange:
        if self.min_score >= self.max_score:
            raise ValueError(f"min_score {self.min_score} must be below max_score {self.max_score}")
        return self


_NUM = r"[-+]?\d+(?:[.,]\d+)?"
_FRACTION = rf"({_NUM})(?:\s*/\s*({_NUM}))?"
_NOT_ANOTHER_NUMBER = r"(?!\s*[,;]?\s*[-+]?\d)"
_PATTERNS = [  # (method, regex) in order of preference
    ("SCORE", re.compile(rf"\bSCORE\s*:\s*{_FRACTION}{_NOT_ANOTHER_NUMBER}")),
    ("labelled", re.compile(rf"\b(?:final\s+score|total\s+score|score)\s*:\s*{_FRACTION}{_NOT_ANOTHER_NUMBER}",
                            re.IGNORECASE)),
]
_THREE = re.compile(rf"\bscore\s*:\s*({_NUM})[\s,;]+({_NUM})[\s,;]+({_NUM})\s*\.?\s*$", re.IGNORECASE)


def _num(text: str) -> float:
    return float(text.replace(",", "."))


def _value(m: re.Match, top: float) -> float:
    """`7`, `7.5`, or a fraction `7/10` (out of the range's top: as is; out of 5 or 100: rescaled)."""
    value = _num(m.group(1))
    if m.group(2) is not None:
        denominator = _num(m.group(2))
        if denominator <= 0:
            raise ParseError("no_score_last_lines", f"score fraction with denominator {m.group(2)}")
        if denominator != top:
            value = value / denominator * top
    return value


def _last_lines(raw: str, n: int) -> list[str]:
    lines = [re.sub(r"[*#]", "", line).strip() for line in raw.splitlines()]
    return [line for line in lines if line][-n:]


@parser("in_last_line", stage="evaluation", options=ScoreRange)
def in_last_line(raw: str, ctx: Any) -> float:
    """The judge's score from the last non-empty lines: `SCORE: n`, else `Score:`/`Final score:`/`Total
    score: n`, else `Score: a b c` averaged. Markdown `*` and `#` are ignored; the range is inclusive."""
    opts: ScoreRange = ctx.options or ScoreRange()
    if not raw or not raw.strip():
        raise ParseError("empty_response", "the judge's response is empty")
    lines = _last_lines(raw, opts.last_lines)
    found = None
    for method, pattern in _PATTERNS:
        for line in reversed(lines):  # the nearest the end wins within one pattern
            m = pattern.search(line)
            if m:
                found = (method, line, _value(m, opts.max_score))
                break
        if found:
            break
    if found is None:
        for line in reversed(lines):
            m = _THREE.search(line)
            if m:
                found = ("average", line, sum(_num(g) for g in m.groups()) / 3)
                break
    if found is None:
        tail = " | ".join(lines)[:200]
        raise ParseError("no_score_last_lines", f"no score in the last {opts.last_lines} non-empty lines: {tail!r}")
    method, line, value = found
    ctx.notes.update(parse_mode=method, score_line=line[:200])
    value = round(value, 4)
    if not opts.min_score <= value <= opts.max_score:
        raise ParseError("out_of_range", f"score {value} is outside {opts.min_score}–{opts.max_score} "
                                         f"(inclusive) in line {line[:120]!r}")
    return value
