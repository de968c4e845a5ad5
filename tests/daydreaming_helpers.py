"""Shared pieces of the daydreaming tests: a copy of the example pipeline and a scripted fake teacher."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from pocketguide.testing import Reply

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "daydreaming"


def copy_example(tmp_path: Path) -> Path:
    """The example pipeline copied into tmp_path (its runs/ folder stays out of the repo)."""
    target = tmp_path / "daydreaming"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("runs"))
    return target / "stages.yaml"


def judge_reply(req: dict) -> Reply:
    """Answers like a real model would, per kind of prompt; the judge's score depends on the prompt
    text so scores vary, and one rubric ends in a markdown-bold score."""
    prompt = req["messages"][-1]["content"]
    if "SCORE: <number" in prompt:
        score = 3 + len(prompt) % 7
        if "COHERENCE" in prompt:
            return Reply(text=f"The argument mostly holds.\n\n**Final score:** {score}/10\n")
        return Reply(text=f"Fresh angle, thin evidence.\nIt connects the ideas.\nSCORE: {score}")
    if "Rewrite them as a clear essay" in prompt:
        return Reply(text="<essay>Boredom is a signal, not a failure.\nIt pushes the mind to wander elsewhere.\nWandering is how ideas find each other.</essay>")
    concepts = re.findall(r"^- ([^:]+):", prompt, re.MULTILINE)
    body = "\n".join(f"{i}. {c} meets the others." for i, c in enumerate(concepts, 1))
    return Reply(text=f"<thinking>plan</thinking>\n<essay>Notes:\n{body}\nThey share one root.</essay>")
