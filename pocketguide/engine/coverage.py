"""Facet values a stage lost, for `pocketguide status`: a value (a payload type, say) that the farthest
ancestor accepted records of, but no record here has — the plan asked for it and it never reached the
dataset, the training data or the eval suite. An operation may add its own view in stats.json → coverage
({facet, missing: {where: [values]}}), as the train stage does for its training data and eval suite."""

from __future__ import annotations

from typing import Any

from pocketguide.engine.loader import Pipeline


def _accepted_values(stats: dict[str, Any] | None, facet: str) -> set[str] | None:
    by_value = ((stats or {}).get("facets") or {}).get(facet)
    return None if by_value is None else {v for v, c in by_value.items() if (c or {}).get("accepted")}


def missing_values(pipe: Pipeline, stage: Any, stats: dict[str, dict[str, Any] | None]) -> list[str]:
    """'facet: a, b' lines for this stage (stats: every stage's stats.json by name, None where absent)."""
    out = []
    for facet in ((stats.get(stage.name) or {}).get("facets") or {}):
        here, ref, name = _accepted_values(stats.get(stage.name), facet), None, stage.name
        while pipe.stage(name).inputs:  # walk up along first inputs; the farthest that counts the facet wins
            name = pipe.stage(name).inputs[0]
            ref = _accepted_values(stats.get(name), facet) or ref
        lost = sorted((ref or set()) - (here or set()))
        if lost:
            out.append(f"{facet}: {', '.join(lost)}")
    cov = (stats.get(stage.name) or {}).get("coverage") or {}
    for where, values in (cov.get("missing") or {}).items():
        if values:
            out.append(f"{where} {cov.get('facet', '')}: {', '.join(values)}".replace("  ", " "))
    return out
