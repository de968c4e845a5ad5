"""Keyword files (`data/keywords/*.txt`): one phrase a line, `#` comments, `re:` lines for regular expressions.

Phrases match case-insensitively on word boundaries ("now" is not in "know"); spaces match any run of
whitespace. A line starting with `re:` is a regular expression (an amount of money: `re:[$€£¥] ?[0-9]`).
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any


def keyword_lines(path: str) -> list[str]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def _phrase_regex(phrase: str) -> str:
    body = r"\s+".join(re.escape(w) for w in phrase.split())
    # (?<!\w)…(?!\w) rather than \b so phrases that start or end in a symbol ("100%", "n't") still bound correctly
    return (r"(?<!\w)" if phrase[0].isalnum() else "") + body + (r"(?!\w)" if phrase[-1].isalnum() else "")


def phrase_pattern(path: str) -> re.Pattern[str] | None:
    """One regex for every phrase (longest first) and `re:` expression in a keyword file, or None for an empty
    list; cached per file version, so a list edited between runs of one process is read again."""
    st = os.stat(path)
    return _phrase_pattern(path, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=32)
def _phrase_pattern(path: str, mtime_ns: int, size: int) -> re.Pattern[str] | None:
    lines = keyword_lines(path)
    regexes = [ln[3:].strip() for ln in lines if ln.startswith("re:")]
    phrases = sorted({ln.lower() for ln in lines if not ln.startswith("re:")}, key=lambda p: (-len(p), p))
    if not phrases and not regexes:
        return None
    alts = [_phrase_regex(p) for p in phrases] + [f"(?:{r})" for r in regexes]
    return re.compile("(?:" + "|".join(alts) + ")", re.IGNORECASE)


def find_phrases(text: str, path: Path | str) -> list[str]:
    pat = phrase_pattern(str(path))
    return [] if pat is None else sorted({m.group(0).lower() for m in pat.finditer(text)})


def mask_phrases(text: str, path: Path | str) -> str:
    """The text with every listed phrase blanked out (same length, so offsets stay meaningful)."""
    pat = phrase_pattern(str(path))
    return text if pat is None else pat.sub(lambda m: " " * len(m.group(0)), text)


def envelope_text(value: Any) -> str:
    """Every string value of the parsed answer (not its keys), one per line."""
    out: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(value)
    return "\n".join(out)
