"""Which payload types the student was trained and judged on, against the ones the contract has.

A type the teacher never got through the gates is absent from the training data and the suite alike, and
every rate still looks whole: the original data run here gave 2 of 4 types and an eval suite whose
`missing_from_suite` was [] because it only compared against its own input. The expected types come from
the envelope schema's `payload_type` enum (the contract), not from what survived.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

FACET = "payload_type"


def expected_types(envelope_schema: Path) -> list[str]:
    """The payload types the envelope contract allows (its `payload_type` enum), or [] without one."""
    try:
        env = json.loads(envelope_schema.read_text())
    except (OSError, ValueError):
        return []
    prop = (env.get("properties") or {}).get(FACET) or {}
    return sorted(str(t) for t in prop.get("enum") or ([prop["const"]] if "const" in prop else []))


def coverage(expected: list[str], present: dict[str, Counter[str]]) -> dict[str, Any]:
    """{expected, counts: {where: {type: n}}, missing: {where: [types]}} for each place (train, suite, …)."""
    known = sorted(set(expected) | {t for c in present.values() for t in c})
    return {"facet": FACET, "expected": known,
            "counts": {where: dict(sorted(c.items())) for where, c in present.items()},
            "missing": {where: [t for t in known if not c.get(t)] for where, c in present.items()}}


def missing_line(cov: dict[str, Any]) -> str | None:
    """'payload types missing — train: decision_tree, itinerary; suite: itinerary', or None when none is."""
    parts = [f"{where}: {', '.join(types)}" for where, types in (cov.get("missing") or {}).items() if types]
    return f"payload types missing — {'; '.join(parts)}" if parts else None


def markdown_lines(cov: dict[str, Any] | None) -> list[str]:
    if not cov:
        return []
    lines = ["", "## Payload types covered", "",
             "| payload type | " + " | ".join(cov["counts"]) + " |", "|---|" + "---|" * len(cov["counts"])]
    for t in cov["expected"]:
        lines.append(f"| {t} | " + " | ".join(str(c.get(t, 0)) for c in cov["counts"].values()) + " |")
    line = missing_line(cov)
    lines += ["", (f"**{line[0].upper()}{line[1:]}**: the student never learned them, or no figure here measures "
                   f"them." if line else "Every payload type of the contract is in the training data and the suite.")]
    return lines
