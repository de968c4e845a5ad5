"""Parsers of the creative-writing study (examples/daydreaming): essay extraction for drafts and essays,
and judge-score extraction for evaluations. Each failure is a ParseError whose code is the reason."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pocketguide.engine.errors import ParseError
from pocketguide.engine.registry import parser
from pocketguide.pipelines.daydreaming.judge import answer_text, final_score

TEXT_STAGES = ("draft", "essay")  # essay-extracting parsers serve LLM essays too

# Attribute runs are bounded ({0,500}): an unbounded [^>]* rescans to the end of the text from every
# unclosed `<essay ` and makes `"<essay " * 100_000` take minutes.
_ESSAY_OPEN = re.compile(r"<essay(?:\s[^<>]{0,500})?>", re.IGNORECASE)  # not <essay-idea>
_ESSAY_CLOSE = re.compile(r"</essay\s*>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<thinking(?:\s[^<>]{0,500})?>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</thinking\s*>", re.IGNORECASE)
_IDEA = re.compile(r"<essay-idea\b([^<>]{0,500})>(.*?)(?:</essay-idea\s*>|(?=<essay-idea\b)|\Z)",
                   re.IGNORECASE | re.DOTALL)
_IDEA_STAGE = re.compile(r"""stage\s*=\s*["']?0*(\d+)""", re.IGNORECASE)


def drop_blocks(raw: str, opener: re.Pattern, closer: re.Pattern) -> str:
    """Text with every closed opener…closer block removed, in one left-to-right pass (an unclosed opener
    and what follows it are kept)."""
    out, pos = [], 0
    while (start := opener.search(raw, pos)) is not None:
        end = closer.search(raw, start.end())
        if end is None:
            break
        out.append(raw[pos:start.start()])
        pos = end.end()
    out.append(raw[pos:])
    return "".join(out)


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
    cleaned = drop_blocks(raw, _THINK_OPEN, _THINK_CLOSE)
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
        # (digit count, digits) orders stage numbers of any length without int(), which refuses 4,300+ digits
        number = (len(stage.group(1)), stage.group(1)) if stage else None
        blocks.append((number, order, m.group(2).strip()))
    blocks = [b for b in blocks if b[2]]
    if not blocks:
        code = "empty_response" if not raw.strip() else "no_essay_idea"
        raise ParseError(code, "no non-empty <essay-idea> block in the response")
    numbered = [b for b in blocks if b[0] is not None]
    # highest stage wins; among equal stages the later block (a revision) wins
    best = max(numbered, key=lambda b: (b[0], b[1])) if numbered else blocks[-1]
    ctx.notes["parse_mode"] = f"stage_{best[0][1][:20]}" if best[0] is not None else "last_block"
    return best[2]


# --- evaluation scores ------------------------------------------------------------------------

class ScoreBounds(BaseModel):
    """Options of `judge_score`: the accepted score range, both ends INCLUDED (max_score is also the scale
    a fraction must use: `7/10` on 0–10)."""

    model_config = ConfigDict(extra="forbid")
    min_score: float = Field(0, description="lowest accepted score (inclusive)")
    max_score: float = Field(10, description="highest accepted score (inclusive), and the judge's scale")

    @model_validator(mode="after")
    def _ordered(self) -> "ScoreBounds":
        if self.min_score >= self.max_score:
            raise ValueError(f"min_score {self.min_score} must be below max_score {self.max_score}")
        return self


class ScoreRange(ScoreBounds):
    """Options of `in_last_line`: the score range, and how many non-empty lines from the end to read."""

    last_lines: int = Field(3, ge=1, description="how many non-empty lines from the end to search")


def _scored(raw: str, ctx: Any, opts: ScoreBounds) -> float:
    value, found = final_score(raw, opts.min_score, opts.max_score)
    ctx.notes.update(parse_mode=found.kind, score_line=found.text[:200])
    return value


@parser("judge_score", stage="evaluation", options=ScoreBounds)
def judge_score(raw: str, ctx: Any) -> float:
    """The judge's one unambiguous final score anywhere in its reply (judge.py: headings, bold, `x/10`,
    `x out of 10`, JSON, `<think>` ignored, sub-scores and rubric ranges never taken); else a rejection:
    empty_response, no_final_score, ambiguous_score, out_of_range."""
    return _scored(raw, ctx, ctx.options or ScoreBounds())


@parser("in_last_line", stage="evaluation", options=ScoreRange)
def in_last_line(raw: str, ctx: Any) -> float:
    """judge_score's rules on the last `last_lines` non-empty lines only (after <think> blocks are dropped);
    nothing there is `no_score_last_lines`."""
    opts: ScoreRange = ctx.options or ScoreRange()
    if not raw or not raw.strip():
        raise ParseError("empty_response", "the judge's response is empty")
    lines = [line for line in answer_text(raw).splitlines() if line.strip()][-opts.last_lines:]
    try:
        return _scored("\n".join(lines), ctx, opts)
    except ParseError as exc:
        if exc.code in ("no_final_score", "empty_response"):
            tail = " | ".join(line.strip() for line in lines)[:200]
            raise ParseError("no_score_last_lines", f"no score in the last {opts.last_lines} non-empty lines: "
                                                    f"{tail!r}") from None
        raise
