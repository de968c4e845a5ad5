"""What the PocketGuide checks look at: one answer (an envelope) and the question it answers, the strings
in it with their JSON paths, and a Finding (what is wrong, where, what a rewrite must do)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pocketguide.pipelines.pocketguide.gates import KEYWORDS_DIR

#: keys whose strings are codes, labels or enum-like values, not prose a reader is meant to read
CODE_KEYS = frozenset({"payload_type", "id", "from", "to", "type", "priority", "mode", "condition", "options",
                       "time_block", "timezone", "estimated_time", "cost_estimate", "total_budget"})
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Finding:
    check: str  # which check (placeholder, repeated_items, …)
    issue: str  # critique v1 issue type
    severity: str  # low | medium | high
    path: str  # where, as a JSON path; "$" for the whole answer
    message: str  # what is wrong, quoting the text
    instruction: str  # what a rewrite must do
    fatal: bool = False  # no rewrite of this draft can fix it


def bundled_keywords() -> Path:
    """The keyword lists of the bundled PocketGuide project (for use outside a pipeline run)."""
    from pocketguide.pipelines.projects import project_files

    return project_files("pocketguide") / KEYWORDS_DIR


@dataclass
class Question:
    """What the answer is checked against: the traveller's question, the plan's facets, the word lists."""

    prompt: str = ""
    destination: str | None = None
    payload_type: str | None = None
    example_strings: frozenset[str] = field(default_factory=frozenset)  # what the prompt offered to copy
    keywords: Path = field(default_factory=bundled_keywords)  # folder of the word lists

    @classmethod
    def from_record(cls, record: dict[str, Any], keywords: Path | None = None) -> Question:
        """From a draft (or any downstream) record: `data` has the plan's facets, `prompt` the rendered one."""
        data = record.get("data") or {}
        return cls(prompt=str(data.get("prompt") or ""), destination=data.get("destination"),
                   payload_type=data.get("payload_type"),
                   example_strings=example_strings(str(record.get("prompt") or ""), str(data.get("prompt") or "")),
                   keywords=keywords or bundled_keywords())


def _objects(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of every top-level balanced {…} in text."""
    depth, start = 0, 0
    for i, c in enumerate(text):
        if c == "{":
            start = i if depth == 0 else start
            depth += 1
        elif c == "}" and depth:
            depth -= 1
            if depth == 0:
                yield start, i + 1


def example_strings(rendered_prompt: str, question: str) -> frozenset[str]:
    """What a model may copy from its prompt instead of answering: the quoted strings of a format example
    (`payload example: {…}`) and the prompt's own phrases (≥ 2 words, split at punctuation). The question is
    left out (copying it is `copied_prompt`), and so is an answer embedded to be rewritten (refine's prompt)."""
    text = rendered_prompt.replace(question, " ") if question else rendered_prompt
    out: set[str] = set()
    plain, last = [], 0
    for start, end in _objects(text):
        chunk = text[start:end]
        try:
            embedded_answer = "payload_type" in json.loads(chunk)
        except ValueError:
            embedded_answer = False
        if not embedded_answer:
            out.update(x.group(1).strip() for x in QUOTED.finditer(chunk))
        plain.append(text[last:start])
        last = end
    plain.append(text[last:])
    for fragment in re.split(r"[.,;:()\n]|\bor\b|\band\b", " ".join(plain)):
        if len(words(fragment)) >= 2:
            out.add(norm(fragment))
    return frozenset(x for x in out if x)


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def norm(text: str) -> str:
    return " ".join(words(text))


def _field(path: str) -> str:
    """A JSON path as a reader names the field: "$.payload.steps[1].why" → "payload.steps[1].why"."""
    return path.removeprefix("$.")


def _quote(text: str, n: int = 60) -> str:
    t = " ".join(str(text).split())
    return t if len(t) <= n else t[: n - 1] + "…"


def strings(value: Any, path: str = "$", key: str = "") -> Iterator[tuple[str, str, str]]:
    """(json path, owning key, text) for every string in the answer; list items carry the list's key."""
    if isinstance(value, str):
        yield path, key, value
    elif isinstance(value, dict):
        for k, v in value.items():
            if k not in ("metadata", "extra"):
                yield from strings(v, f"{path}.{k}", k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from strings(v, f"{path}[{i}]", key)


def prose(env: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The strings a reader reads (not codes such as ids, priorities or time blocks)."""
    return [(p, k, t) for p, k, t in strings(env) if k not in CODE_KEYS]


def envelope_of(raw: Any) -> Any:
    """A parsed envelope from a dict or a JSON string (None when it does not parse)."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return None
    return raw
