"""The final score in what real LLM judges write — precision first.

Judges put the score under a heading (`## Final Score` and `**7**` on the next line), in bold, as
`7/10`, `7 out of 10`, `Score: 7`, `[[7]]`, `\\boxed{7}`, in JSON (`"overall_score": 7`), in a sentence
("I would rate it 7 out of 10"), after sub-score lines of their own (`Score: 3/4 pts` per criterion) and
after restating the rubric (`0 = a cliché, 10 = genuinely new`, `Score (0-10):`). Reasoning inside
`<think>…</think>` is not the answer.

Candidates, strongest first:
  final     a final/overall/total label (`Final score: 7`, `Overall: 8/10`, `SCORE: 7`, `My score: 7`,
            `[[7]]`, `[RESULT] 7`, `\\boxed{7}`, JSON final keys), or such a heading with the value alone
            on the next line; a fraction over another scale is rescaled (`Final score: 4/5` → 8)
  label     `Score: 7` / `Rating: 7/10` at the start of a line
  sentence  a scoring verb with an explicit scale: "I'd give it a 7/10", "earns 6.5 out of 10"
  bare      the last line is only a value: `7`, `**8/10**`
A label, sentence or bare value over another scale (`Score: 3/4 pts`) is a sub-score and never taken;
numbers in a range (`7-8`, `0-10`) or a rubric (`10 = perfect`) are never values.

The strongest kind present decides: its values must agree, and nothing after the last of them may name
another score on the scale — a label, a sentence, or a plain mention ("On reflection, 6/10 is fairer.";
criterion lines such as `- Novelty: 6/10` are breakdowns, not doubts). Anything else is rejected with a
reason — a guessed score is worse than none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pocketguide.engine.errors import ParseError

_NUM = r"(\d{1,4}(?:[.,]\d{1,3})?)"  # bounded: no 5,000-digit conversions
_SCALE = rf"(?:\s*(?:/|out\s+of|of)\s*{_NUM}|\s*(%))?"
_VALUE = rf"(?<![\w.,/-])(-?\d{{1,4}}(?:[.,]\d{{1,3}})?)(?!\w|[.,]\d){_SCALE}"  # signed: -2 is out of range
# after a value: a range or a list (`7-8`, `7 to 8`, `5, 6, 10`, `6 7 8`) makes it no single score; a rubric anchor
# (`10 = perfect`, `0 means none`) makes it no score at all
_RANGE_AFTER = re.compile(r"\s*(?:[-–—]|to\b|[,;&]|and\b)\s*\d|\s+\d", re.IGNORECASE)
_RUBRIC_AFTER = re.compile(r"\s*(?:=|means\b|is\s+(?:the\s+)?(?:best|worst|highest|lowest|perfect|max|min))",
                           re.IGNORECASE)
_MENTION = re.compile(rf"(?<![\w.,/-]){_NUM}\s*(?:/|out\s+of)\s*{_NUM}", re.IGNORECASE)
_FINAL = (r"(?:(?:my|the)\s+)?(?:(?:final|overall|total)(?:\s+(?:score|rating|grade|mark|verdict|assessment|"
          r"evaluation|judge?ment|result|answer))?|my\s+(?:score|rating))")
_GENERIC = r"(?:score|rating|grade|mark)"
_SUFFIX = r"(?:\s*[(\[][^()\[\]\n]{0,40}[)\]]|\s+out\s+of\s+\d{1,4})?"  # `(0-10)`, `[1-10]`, `out of 10`
_SEP = r"\s*(?:[:=|\-–—]|\bis\b|\bof\b)?\s*[\[(]?\s*"
_START = r"(?:^|(?<=[.!?|])\s+)(?:[-•+]\s+|\d{1,2}[.)]\s+)?"
_FINAL_LINE = re.compile(rf"{_START}{_FINAL}{_SUFFIX}{_SEP}{_VALUE}", re.IGNORECASE)
_CAPS_LINE = re.compile(rf"{_START}SCORE{_SUFFIX}{_SEP}{_VALUE}")  # the format judges are asked for
_LABEL_LINE = re.compile(rf"{_START}{_GENERIC}{_SUFFIX}{_SEP}{_VALUE}", re.IGNORECASE)
_MARKED = re.compile(rf"\[\[\s*{_NUM}\s*\]\]|\[RESULT\]\s*{_NUM}(?!\d)|\\boxed\{{\s*{_NUM}{_SCALE}\s*\}}",
                     re.IGNORECASE)
_JSON_KEY = re.compile(rf'"(final_score|overall_score|total_score|overall|final|score|rating)"\s*:\s*"?{_VALUE}',
                       re.IGNORECASE)
_HEADING = re.compile(rf"^(?:[-•+]\s+)?({_FINAL}|SCORE|{_GENERIC}){_SUFFIX}\s*:?$", re.IGNORECASE)
_BARE = re.compile(rf"^[\[(]?\s*{_VALUE}\s*[\])]?\s*(?:points?|pts)?\.?$", re.IGNORECASE)
_VERB = re.compile(r"\b(?:rate|rating|rated|give|giving|gave|score|scoring|scored|assign\w*|award\w*|deserv\w*|"
                   r"earn\w*|merit\w*|worth|say|put|land\w*|settle\w*|revis\w*|lower\w*|rais\w*)\b[^.\n]{0,60}?"
                   rf"{_NUM}\s*(?:/|out\s+of)\s*{_NUM}", re.IGNORECASE)
_CRITERION = re.compile(r"^(?:[-•+]\s+|\d{1,2}[.)]\s+)?[A-Za-z][\w &/()-]{0,40}:|^\|")  # `- Novelty: 6/10`, a table
_DIGIT = re.compile(r"\d")
_LINE_MARKUP = str.maketrans("", "", "*`$")  # bold, code, LaTeX math: removed anywhere in a line


def _plain(line: str) -> str:
    """A line without markdown emphasis, code ticks, math dollars and heading/quote marks."""
    return line.translate(_LINE_MARKUP).strip().lstrip("#>").strip()


# which patterns can match at all: a cheap substring test first (a judge reply may be 10 MB of prose)
_GUARDS = {"final": ("final", "overall", "total", "my "), "label": ("score", "rating", "grade", "mark")}
_THINK_OPEN = re.compile(r"<(?:think|thinking|reasoning)>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</(?:think|thinking|reasoning)\s*>", re.IGNORECASE)


@dataclass
class Candidate:
    kind: str  # final | label | sentence | bare
    value: float
    line: int
    text: str


def _number(text: str) -> float:
    return float(text.replace(",", "."))


def answer_text(raw: str) -> str:
    """The reply without its reasoning: closed think blocks dropped, text before a stray closing tag
    dropped, an unclosed block (the judge was cut off) dropped with all that follows it."""
    closes = list(_THINK_CLOSE.finditer(raw))
    if closes:
        last = closes[-1]
        opener = _THINK_OPEN.search(raw)
        if opener is None or opener.start() < last.start():
            # everything up to the last closing tag is reasoning (some models omit the opening tag)
            raw = raw[last.end():]
    opener = _THINK_OPEN.search(raw)
    return raw[:opener.start()] if opener else raw


def _value(m: re.Match, first: int, top: float, final: bool) -> float | None:
    """The score from value groups (number, denominator, percent); None for a sub-score on another scale."""
    value = _number(m.group(first))
    den, pct = m.group(first + 1), m.group(first + 2)
    if pct:
        return value / 100 * top if final else None
    if den is None:
        return value
    d = _number(den)
    if d == top:
        return value
    return value / d * top if final and d > 0 else None


def _scan_line(text: str, i: int, top: float) -> list[Candidate]:
    out: list[Candidate] = []
    low = text.lower()
    if not _DIGIT.search(text):
        return out
    mentions = _MENTION.finditer(text) if ("/" in text or "out of" in low) else ()
    on_scale = {mm.group(1) for mm in mentions if _number(mm.group(2)) == top}
    patterns = [(kind, p) for kind, p, ok in (
        ("final", _FINAL_LINE, any(g in low for g in _GUARDS["final"])),
        ("final", _CAPS_LINE, "SCORE" in text),
        ("label", _LABEL_LINE, any(g in low for g in _GUARDS["label"]))) if ok]
    for kind, pattern in patterns:
        for m in pattern.finditer(text):
            if _RUBRIC_AFTER.match(text, m.end()):
                continue
            # `Score: 7/10 for novelty, 5/10 for coherence` is sub-scores: a plain label naming two is no score
            if _RANGE_AFTER.match(text, m.end()) or (kind == "label" and len(on_scale) > 1):
                out.append(Candidate("range", float("nan"), i, text))
                continue
            v = _value(m, 1, top, kind == "final")
            if v is not None:
                out.append(Candidate(kind, v, i, text))
    for m in (_MARKED.finditer(text) if ("[" in text or "boxed" in text) else ()):
        num = next(g for g in m.groups()[:3] if g is not None)
        den = m.group(4)
        value = _number(num) if den is None else _number(num) / max(_number(den), 1e-9) * top
        out.append(Candidate("final", value, i, text))
    for m in (_JSON_KEY.finditer(text) if '"' in text else ()):
        final = m.group(1).lower() not in ("score", "rating")
        v = _value(m, 2, top, final)
        if v is not None:
            out.append(Candidate("final" if final else "label", v, i, text))
    # a sentence counts only when it names one score on the judge's scale ("novelty 8/10 and coherence
    # 6/10" names sub-scores)
    if len(on_scale) == 1:
        for m in _VERB.finditer(text):
            if _number(m.group(2)) == top:
                out.append(Candidate("sentence", _number(m.group(1)), i, text))
        if not out and not _CRITERION.match(text):  # "On reflection, 6/10 is fairer.": no score, but a doubt
            out.append(Candidate("mention", _number(next(iter(on_scale))), i, text))
    return out


def _heading_value(head: re.Match, line: str, i: int, top: float) -> Candidate | None:
    """`## Final Score` / `**Score:**` with the value alone on the next line."""
    m = _BARE.match(line)
    if m is None:
        return None
    label = head.group(1)
    final = label == "SCORE" or not re.fullmatch(_GENERIC, label, re.IGNORECASE)
    v = _value(m, 1, top, final)
    return None if v is None else Candidate("final" if final else "label", v, i, line)


def candidates(text: str, top: float) -> list[Candidate]:
    lines = [_plain(line) for line in text.splitlines()]
    found: list[Candidate] = []
    nonempty = [i for i, line in enumerate(lines) if line]
    for pos, i in enumerate(nonempty):
        found += _scan_line(lines[i], i, top)
        head = _HEADING.match(lines[i])
        if head and pos + 1 < len(nonempty):
            c = _heading_value(head, lines[nonempty[pos + 1]], nonempty[pos + 1], top)
            if c is not None:
                found.append(c)
    if nonempty:  # the last line alone is a value
        last = nonempty[-1]
        m = _BARE.match(lines[last])
        if m and not any(c.line == last and c.kind != "mention" for c in found):
            v = _value(m, 1, top, False)
            if v is not None:
                found.append(Candidate("bare", v, last, lines[last]))
    return found


def _same(values: list[float]) -> bool:
    return max(values) - min(values) < 1e-9


def final_score(raw: str, min_score: float, max_score: float) -> tuple[float, Candidate]:
    """(score, the candidate it came from), or ParseError(empty_response | no_final_score | ambiguous_score |
    out_of_range)."""
    if not raw or not raw.strip():
        raise ParseError("empty_response", "the judge's response is empty")
    text = answer_text(raw)
    found = candidates(text, max_score)
    ranges = [c for c in found if c.kind == "range"]
    for kind in ("final", "label", "sentence", "bare"):
        chosen = [c for c in found if c.kind == kind]
        if not chosen:
            continue
        if ranges and ranges[-1].line >= chosen[-1].line:
            raise ParseError("ambiguous_score", f"a score given as a range: {ranges[-1].text[:120]!r}")
        values = [c.value for c in chosen]
        if not _same(values):
            shown = ", ".join(f"{v:g}" for v in values[:6])
            raise ParseError("ambiguous_score", f"{len(values)} different {kind} scores ({shown}) and none is "
                                                f"marked final")
        later = [c for c in found if c.kind in ("label", "sentence", "bare", "mention") and c.line > chosen[-1].line
                 and abs(c.value - values[0]) > 1e-9]
        if later:
            raise ParseError("ambiguous_score", f"{kind} score {values[0]:g}, then {later[0].value:g} in "
                                                f"{later[0].text[:120]!r}")
        best = chosen[-1]
        value = round(best.value, 4)
        if not min_score <= value <= max_score:
            raise ParseError("out_of_range", f"score {value:g} is outside {min_score:g}–{max_score:g} (inclusive) "
                                             f"in {best.text[:120]!r}")
        return value, best
    if ranges:
        raise ParseError("ambiguous_score", f"a score given as a range: {ranges[-1].text[:120]!r}")
    if not text.strip():
        raise ParseError("no_final_score", "nothing is left once <think> blocks are removed (cut off?)")
    tail = " | ".join(line.strip() for line in text.strip().splitlines()[-3:])[:200]
    raise ParseError("no_final_score", f"no unambiguous final score; the reply ends: {tail!r}")
