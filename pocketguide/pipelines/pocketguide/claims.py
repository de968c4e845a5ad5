"""Absolute claims in text, told apart from hedges and advice.

An absolute phrase (absolute_phrases.txt: always, never, guaranteed, …) is a claim unless:

* a safe context covers it (safe_phrases.txt: "always verify", "not guaranteed", "to guarantee");
* it is hedged: a negator or qualifier (negators.txt: not, n't, almost, …) stands right before it, or
  one word before it ("not always", "isn't always", "can't say for sure", "almost never");
* it is advice: a one-word absolute phrase (an adverb) right after "should" ("travellers should never
  overstay"), or one that opens a clause — at the start of a line or after . ! ? ; : , ( or a dash, or
  after "to" or "please" — with a verb from advice_verbs.txt next ("Always observe locals", "Tip: never
  pay upfront", "If you rent, always wear…", "remember to never drink"). "Trains always leave on time"
  and "Always open on Sundays" stay claims: a subject comes first, or no advice verb follows.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from pocketguide.pipelines.pocketguide.keywords import keyword_lines, mask_phrases, phrase_pattern

# what may stand right before an adverb that opens an imperative clause
_CLAUSE_START = re.compile(r"(?:^|[.!?;:,(\n•*–—-]|(?<!\w)(?:to|please))\s*$", re.IGNORECASE)
_SHOULD = re.compile(r"(?<!\w)should\s+$", re.IGNORECASE)  # normative whatever the verb: advice
_NEXT_WORD = re.compile(r"\s+([a-z][a-z'-]*)", re.IGNORECASE)
_LOOKBEHIND = 60  # characters of context read before a match


@dataclass(frozen=True)
class ClaimLists:
    absolute: Path
    safe: Path
    negators: Path
    advice_verbs: Path


@dataclass
class ClaimScan:
    claims: list[str] = field(default_factory=list)
    hedged: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)


def _version(path: str) -> tuple[str, int, int]:
    """(path, mtime, size): the cache key of a keyword file, so a list edited between runs is read again."""
    st = os.stat(path)
    return path, st.st_mtime_ns, st.st_size


def _hedge_pattern(path: str) -> re.Pattern[str] | None:
    return _hedge_pattern_of(*_version(path))


@lru_cache(maxsize=32)
def _hedge_pattern_of(path: str, mtime_ns: int, size: int) -> re.Pattern[str] | None:
    """A negator, then at most one word, then the end of the text before the match."""
    pat = phrase_pattern(path)
    return None if pat is None else re.compile(r"(?:" + pat.pattern + r")\s+(?:[\w'-]+\s+)?$", re.IGNORECASE)


def _verbs(path: str) -> frozenset[str]:
    return _verbs_of(*_version(path))


@lru_cache(maxsize=32)
def _verbs_of(path: str, mtime_ns: int, size: int) -> frozenset[str]:
    return frozenset(w.lower() for w in keyword_lines(path) if not w.startswith("re:"))


def _is_advice(text: str, start: int, end: int, phrase: str, verbs: frozenset[str]) -> bool:
    if " " in phrase.strip():
        return False
    before = text[max(0, start - _LOOKBEHIND):start]
    if _SHOULD.search(before):
        return True
    nxt = _NEXT_WORD.match(text, end)
    if not nxt or nxt.group(1).lower() not in verbs:
        return False
    return _CLAUSE_START.search(before) is not None


def scan_claims(text: str, lists: ClaimLists) -> ClaimScan:
    """Every absolute phrase in `text`, sorted into claims, hedged ones and advice (each lower-cased, unique)."""
    text = text.replace("\u2019", "'")  # curly apostrophes: "can’t" is "can't" (same length)
    plain = mask_phrases(text, lists.safe)
    pat = phrase_pattern(str(lists.absolute))
    out = ClaimScan()
    if pat is None:
        return out
    hedge = _hedge_pattern(str(lists.negators)) if lists.negators.exists() else None
    verbs = _verbs(str(lists.advice_verbs)) if lists.advice_verbs.exists() else frozenset()
    for m in pat.finditer(plain):
        phrase = m.group(0).lower()
        if hedge is not None and hedge.search(plain[max(0, m.start() - _LOOKBEHIND):m.start()]):
            bucket = out.hedged
        elif _is_advice(plain, m.start(), m.end(), phrase, verbs):
            bucket = out.advice
        else:
            bucket = out.claims
        if phrase not in bucket:
            bucket.append(phrase)
    out.claims.sort()
    out.hedged.sort()
    out.advice.sort()
    return out
