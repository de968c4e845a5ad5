"""The deterministic critic: a registered generator mode that writes a critique v1 object from checks.

Why: SmolLM2-135M as critic said `reject` to 12/12 of its own drafts at temperature 0 and 0.7 — its
verdicts are noise. These checks (checks.py) find what a small model's drafts really get wrong and say
`revise` with concrete rewrite instructions when a rewrite can fix it, `reject` when not. The stage
chooses between this critic and the LLM one with a route on the teacher's `judge` capability
(stages.yaml); the runner treats this mode like any other generator.
"""

from __future__ import annotations

import json
from typing import Any

from pocketguide.engine.generators import Generated, Generator, GeneratorRecipe
from pocketguide.engine.recipe import code_version, path_sha
from pocketguide.engine.registry import generator
from pocketguide.pipelines.pocketguide.checks import Finding, Question, run_checks, time_sensitive, verdict
from pocketguide.pipelines.pocketguide.gates import KEYWORDS_DIR

CRITIC_ID = "pocketguide_critic:v1"  # stored on each record as made_by; bump when the checks change meaning


def _clamp(x: int) -> int:
    return max(1, min(5, x))


def _scores(findings: list[Finding]) -> dict[str, int]:
    kinds = {f.check for f in findings}
    return {
        "actionability": _clamp(5 - 2 * bool(kinds & {"placeholder", "thin_structure", "copied_prompt"})
                                - bool(kinds & {"destination_missing", "repeated_items"})),
        "clarity": _clamp(5 - 2 * bool(kinds & {"placeholder", "traveller_voice"})
                          - bool(kinds & {"repeated_items", "copied_prompt"})),
        "schema_compliance": 1 if "not_an_object" in kinds else 5,
        "safety_risk": _clamp(1 + 2 * bool(kinds & {"missing_verification"})
                              + bool(kinds & {"absolute_claim", "fake_link"})),
    }


def critique(env: Any, question: Question) -> dict[str, Any]:
    """A critique v1 object (data/schemas/critique.v1.json) for one answer."""
    findings = run_checks(env, question)
    v = verdict(findings)
    instructions = list(dict.fromkeys(f.instruction for f in findings)) if v == "revise" else []
    risky = [f.message for f in findings if f.issue in ("hallucination", "overconfidence")]
    missing = [f for f in findings if f.check == "missing_verification"]
    hits = time_sensitive(env, question) if isinstance(env, dict) else []
    risk = "high" if any(f.check == "fake_link" for f in findings) else "medium" if risky else "low"
    return {
        "verdict": v,
        "issues": [{"type": f.issue, "severity": f.severity, "message": f.message} for f in findings],
        "scores": _scores(findings),
        "hallucination": {"risk_level": risk, "risky_claims": risky},
        "verification": {"missing_when_needed": bool(missing),
                         "suggested_steps": [f"Check the current {h} with an official source before you travel."
                                             for h in hits[:2]] if missing else []},
        "rewrite_instructions": instructions,
    }


@generator("pocketguide_critic")
class DeterministicCritic(Generator):
    """Critiques the driving input record's parsed envelope (a draft) against its planned question; the
    word lists are the project's (data/keywords/ beside its stages.yaml)."""

    calls_teacher = False

    @classmethod
    def recipe(cls, rt: Any) -> GeneratorRecipe:
        """The checks' code and the word lists they read decide each critique: a change to either re-critiques."""
        code = [code_version(f) for f in (critique, run_checks, Question)]
        return GeneratorRecipe({"critic": CRITIC_ID, "critic code": code,
                                "critic word lists": path_sha(rt.pipe.resolve(KEYWORDS_DIR))})

    def generate(self, item: Any) -> Generated:
        draft = item.context.get("input") or {}
        if item.runtime.dry_run and draft.get("dry_run"):
            return Generated(raw=None, dry_run=True)
        question = Question.from_record(draft, self.rt.pipe.resolve(KEYWORDS_DIR))
        return Generated(raw=json.dumps(critique(draft.get("parsed"), question), ensure_ascii=False), made_by=CRITIC_ID)

    def describe(self) -> dict[str, Any] | None:
        return {"generator": CRITIC_ID, "teacher": None}
