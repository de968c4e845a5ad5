"""Multi-criterion judge replies (the `complex` parser): one score per criterion, and their total.

A judge asked for several criteria writes one line per criterion and often a total:

    **Novelty:** 7/10 — a fresh angle
    - Coherence: 6
    Insight (0-10): 8
    Total: 21/30

Each criterion line is `<name>[ (suffix)]: <value>[/<scale>]`, after the same clean-up as judge_score
(judge.py: `<think>` blocks dropped, markdown ignored, ranges and rubric anchors never values). With
`criteria` set, only those names count (case and spacing ignored) and every one must be there; without it,
a line counts only when its value names the criterion scale (`Novelty: 7/10`), so prose such as
`Note: 3 ideas` is never a score. A value on another explicit scale is rescaled (`3/5` → 6 of 10).

Precision first, like judge_score: a criterion given twice with different values, or whose last value is a
range (`7-8`), is `ambiguous_score`; a value outside 0..criterion_max is `out_of_range`; a listed criterion
with no value is `missing_criteria`; fewer than `min_criteria` is `no_criteria`. A stated total (`Total`,
`Overall`, `Final score`, `Sum`) must agree with the criteria — as their sum (over n × criterion_max), their
mean, or the normalised score (over max_score) — within rounding, else `total_mismatch`.

The result: {"criteria": {name: value}, "total": sum, "max_total": n × criterion_max, "score": the total on
the stage's 0..max_score scale, "stated_total": what the judge wrote or None}. `score` is what score reports
read, so a rubric judged this way sits beside judge_score rubrics in the same pivot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pocketguide.engine.errors import ParseError
from pocketguide.pipelines.daydreaming.judge import (
    _RANGE_AFTER,
    _RUBRIC_AFTER,
    _SUFFIX,
    _VALUE,
    _number,
    _plain,
    answer_text,
)

_LINE = re.compile(rf"^(?:[-•+|]\s*|\d{{1,2}}[.)]\s+)?(?P<name>[A-Za-z][A-Za-z _/&'-]{{0,40}}?){_SUFFIX}"
                   rf"\s*(?:[:=|\-–—]|\bis\b)\s*[\[(]?\s*{_VALUE}", re.IGNORECASE)
TOTAL_NAMES = {"total", "total score", "overall", "overall score", "final", "final score", "sum", "score",
               "final total", "total points", "overall rating", "final rating"}
TOLERANCE = 0.51  # a judge that rounds its total (20.5 → 21) still agrees


@dataclass
class Found:
    value: float | None  # None: a range, not a value
    line: int
    text: str
    scale: float | None = None  # a stated total's denominator (`21/30` → 30)


def criterion_key(name: str) -> str:
    return re.sub(r"[\s_-]+", "_", name.strip().lower()).strip("_")


def _value(m: re.Match, scale: float) -> float | None:
    """The value on the criterion scale; None when the line gives a range."""
    value = _number(m.group(2))
    den, pct = m.group(3), m.group(4)
    if pct:
        return value / 100 * scale
    if den is not None and _number(den) > 0 and _number(den) != scale:
        return value / _number(den) * scale
    return value


def scan(text: str, wanted: set[str] | None, scale: float) -> tuple[dict[str, list[Found]], list[Found]]:
    """Criterion candidates by name, and stated totals, line by line."""
    criteria: dict[str, list[Found]] = {}
    totals: list[Found] = []
    for i, raw in enumerate(text.splitlines()):
        line = _plain(raw)
        m = _LINE.match(line)
        if m is None or _RUBRIC_AFTER.match(line, m.end()):
            continue
        key = criterion_key(m.group("name"))
        ranged = _RANGE_AFTER.match(line, m.end()) is not None
        if key in TOTAL_NAMES:
            if not ranged:
                den = m.group(3)
                totals.append(Found(_number(m.group(2)), i, line[:120], _number(den) if den else None))
            continue
        if wanted is not None and key not in wanted:
            continue
        if wanted is None and (m.group(3) is None or _number(m.group(3)) != scale):
            continue  # without a list of criteria, only values on the criterion scale are scores
        criteria.setdefault(key, []).append(Found(None if ranged else _value(m, scale), i, line[:120]))
    return criteria, totals


def _settled(name: str, found: list[Found], scale: float) -> float:
    if found[-1].value is None:
        raise ParseError("ambiguous_score", f"criterion '{name}' is given as a range: {found[-1].text!r}")
    values = {round(f.value, 4) for f in found if f.value is not None}
    if len(values) > 1:
        shown = ", ".join(f"{v:g}" for v in sorted(values))
        raise ParseError("ambiguous_score", f"criterion '{name}' has {len(values)} different scores ({shown})")
    value = values.pop()
    if not 0 <= value <= scale:
        raise ParseError("out_of_range", f"criterion '{name}' scored {value:g}, outside 0–{scale:g}: "
                                         f"{found[-1].text!r}")
    return value


def _check_total(stated: Found, total: float, max_total: float, score: float, max_score: float, n: int) -> None:
    den, text = stated.scale, stated.text
    v = stated.value or 0.0
    agrees = ((den in (None, max_total) and abs(v - total) <= TOLERANCE)
              or (den in (None, max_score) and abs(v - score) <= TOLERANCE)
              or (den is None and abs(v - total / n) <= TOLERANCE))
    if not agrees:
        raise ParseError("total_mismatch", f"the stated total {v:g}{f'/{den:g}' if den else ''} does not agree with "
                                           f"the criteria (sum {total:g}/{max_total:g}, score {score:g}/{max_score:g})"
                                           f": {text!r}")


def criteria_scores(raw: str, criteria: list[str] | None, criterion_max: float, max_score: float,
                    min_criteria: int) -> dict:
    if not raw or not raw.strip():
        raise ParseError("empty_response", "the judge's response is empty")
    wanted = [criterion_key(c) for c in criteria] if criteria else None
    found, totals = scan(answer_text(raw), set(wanted) if wanted else None, criterion_max)
    if wanted:
        missing = [c for c in wanted if c not in found]
        if missing:
            raise ParseError("missing_criteria", f"no score for {', '.join(missing)} (expected {', '.join(wanted)})")
    elif len(found) < min_criteria:
        raise ParseError("no_criteria", f"{len(found)} criterion line(s) like 'Novelty: 7/{criterion_max:g}'; at "
                                        f"least {min_criteria} needed — list the criteria in parser_options")
    names = wanted or list(found)
    scores = {name: _settled(name, found[name], criterion_max) for name in names}
    total = round(sum(scores.values()), 4)
    max_total = criterion_max * len(scores)
    score = round(total / max_total * max_score, 4)
    if totals:
        _check_total(totals[-1], total, max_total, score, max_score, len(scores))
    return {"criteria": scores, "total": total, "max_total": max_total, "score": score,
            "stated_total": totals[-1].value if totals else None}
