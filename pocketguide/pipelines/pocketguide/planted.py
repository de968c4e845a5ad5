"""Score the deterministic critic on a planted-defect set (tests/data/planted_drafts.yaml): hand-written
drafts, good or with one known defect, each critiqued as the critique stage would critique it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pocketguide.engine.templates import Renderer
from pocketguide.pipelines.pocketguide.checks import Question, run_checks
from pocketguide.pipelines.pocketguide.critic import critique


@dataclass
class Scored:
    id: str
    defect: str  # "good" or the check that should fire
    verdict: str
    checks: list[str]  # the checks that fired

    @property
    def flagged(self) -> bool:
        return self.verdict != "pass"

    @property
    def right_check(self) -> bool:
        return self.defect in self.checks


def draft_record(entry: dict[str, Any], templates_dir: Path, hints: dict[str, str]) -> dict[str, Any]:
    """The draft record the critique stage would see: plan facets in `data`, the rendered draft prompt."""
    data = {"prompt": entry["prompt"], "destination": entry["destination"], "payload_type": entry["payload_type"]}
    prompt = Renderer(templates_dir, "draft.j2").render({"plan": {"data": data}, "vars": {"payload_hints": hints}})
    return {"id": entry["id"], "data": data, "prompt": prompt, "parsed": entry["envelope"]}


def score(path: Path, templates_dir: Path, hints: dict[str, str]) -> list[Scored]:
    out = []
    for entry in yaml.safe_load(path.read_text()):
        rec = draft_record(entry, templates_dir, hints)
        q = Question.from_record(rec)
        c = critique(rec["parsed"], q)
        out.append(Scored(entry["id"], entry["defect"], c["verdict"],
                          sorted({f.check for f in run_checks(rec["parsed"], q)})))
    return out


def confusion(rows: list[Scored]) -> list[dict[str, Any]]:
    """Per planted defect: how many drafts, and verdicts pass / revise / reject, and the intended check firing."""
    table = []
    for defect in ["good"] + sorted({r.defect for r in rows} - {"good"}):
        sel = [r for r in rows if r.defect == defect]
        v = Counter(r.verdict for r in sel)
        table.append({"defect": defect, "n": len(sel), "pass": v["pass"], "revise": v["revise"],
                      "reject": v["reject"], "intended_check": None if defect == "good" else
                      sum(r.right_check for r in sel)})
    return table


def rates(rows: list[Scored]) -> tuple[float, float]:
    """(share of defective drafts flagged, share of good drafts passed)."""
    bad = [r for r in rows if r.defect != "good"]
    good = [r for r in rows if r.defect == "good"]
    return (sum(r.flagged for r in bad) / len(bad) if bad else 1.0,
            sum(not r.flagged for r in good) / len(good) if good else 1.0)


def markdown(rows: list[Scored]) -> str:
    lines = ["| planted | n | pass | revise | reject | intended check fired |", "|---|---|---|---|---|---|"]
    for t in confusion(rows):
        fired = "–" if t["intended_check"] is None else f"{t['intended_check']}/{t['n']}"
        lines.append(f"| {t['defect']} | {t['n']} | {t['pass']} | {t['revise']} | {t['reject']} | {fired} |")
    good = [r for r in rows if r.defect == "good"]
    bad = [r for r in rows if r.defect != "good"]
    lines += ["", "| | critic: pass | critic: flagged (revise or reject) |", "|---|---|---|"]
    for label, sel in ((f"good ({len(good)})", good), (f"defective ({len(bad)})", bad)):
        flagged = sum(r.flagged for r in sel)
        lines.append(f"| {label} | {len(sel) - flagged} | {flagged} |")
    caught, passed = rates(rows)
    lines.append("")
    lines.append(f"defective drafts flagged (revise or reject): {caught:.0%}; good drafts passed: {passed:.0%}")
    return "\n".join(lines)
