"""Precision and recall of the keyword gates on labelled sentences, through the real registered gates.

A sentence file is JSONL: `{"text", "absolute": bool, "time_sensitive": bool, "kind"}`. Each sentence
becomes the summary of an otherwise neutral envelope:

* `overconfidence_guard` is asked with a time-sensitive question and full verification, so it fails
  exactly when it finds an absolute claim in the sentence (label: `absolute`);
* `verification_when_needed` is asked with a neutral question and no verification steps, so it fails
  exactly when it finds the sentence time-sensitive (label: `time_sensitive`).

Edit a keyword list, rerun (`python bench/gate_precision.py`), and see what it cost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pocketguide.engine.runtime import GateInput
from pocketguide.pipelines.pocketguide.gates import (
    KeywordOptions,
    OverconfidenceOptions,
    overconfidence_guard,
    verification_when_needed,
)

TIME_SENSITIVE_QUESTION = "Do I need a visa for this trip?"
NEUTRAL_QUESTION = "Help me plan this part of the trip."


@dataclass
class GateScore:
    gate: str
    label: str
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    false_positives: list[str] = field(default_factory=list)
    false_negatives: list[str] = field(default_factory=list)

    def add(self, flagged: bool, expected: bool, text: str) -> None:
        if flagged and expected:
            self.tp += 1
        elif flagged:
            self.fp += 1
            self.false_positives.append(text)
        elif expected:
            self.fn += 1
            self.false_negatives.append(text)
        else:
            self.tn += 1

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    def line(self) -> str:
        p, r = self.precision, self.recall
        return (f"{self.gate}: precision {p:.2f} recall {r:.2f} (tp {self.tp}, fp {self.fp}, fn {self.fn}, "
                f"tn {self.tn})" if p is not None and r is not None else f"{self.gate}: no positives")


def _envelope(summary: str, verified: bool) -> dict[str, Any]:
    return {"summary": summary, "assumptions": ["You travel with a carry-on bag"],
            "uncertainty_notes": "Details can differ from what is written here." if verified else "",
            "next_steps": ["Write down the plan"], "verification_steps": ["Check the official site"] if verified else [],
            "payload_type": "checklist",
            "payload": {"title": "Plan", "groups": [{"name": "Plan", "items": [{"text": "Write it down"}]}]}}


def _ask(gate: Any, opts: Any, summary: str, question: str, verified: bool, root: Path) -> bool:
    """True when the gate rejects the envelope (flags the sentence)."""
    item = GateInput(_envelope(summary, verified), None, {"data": {"prompt": question}}, {}, root)
    return not gate(item, opts).passed


def load_sentences(path: Path | str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def score_gates(sentences: list[dict[str, Any]], root: Path | str) -> dict[str, GateScore]:
    """Both gates' confusion counts over the sentences; `root` is the pipeline folder holding data/keywords."""
    root = Path(root)
    over = GateScore("overconfidence_guard", "absolute")
    verify = GateScore("verification_when_needed", "time_sensitive")
    for s in sentences:
        text = s["text"]
        over.add(_ask(overconfidence_guard, OverconfidenceOptions(), text, TIME_SENSITIVE_QUESTION, True, root),
                 bool(s["absolute"]), text)
        verify.add(_ask(verification_when_needed, KeywordOptions(), text, NEUTRAL_QUESTION, False, root),
                   bool(s["time_sensitive"]), text)
    return {over.gate: over, verify.gate: verify}
