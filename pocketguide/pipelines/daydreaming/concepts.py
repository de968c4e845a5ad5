"""`op: concept_combos`: one record per combination of concepts, the first stage of a cohort study.

The concepts come from the stage's `source:` (a YAML list or JSONL lines of {id, name, description}),
so editing that file marks the stage stale; the combinations come from `options.combos` (usually filled
by the cohort file) or, when absent, every `k`-combination of the concepts in file order."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field

from pocketguide.engine.errors import StageError
from pocketguide.engine.records import child_id
from pocketguide.engine.registry import operation


class ComboOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    combos: list[list[str]] | None = Field(None, description="concept-id combinations (absent: all k-combinations)")
    k: int = Field(2, ge=1, description="combination size when `combos` is absent")


def read_concepts(path: Path) -> list[dict[str, Any]]:
    """Concept rows from YAML (a list, or a mapping with `concepts:`) or JSONL; each needs an `id`."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise StageError(f"concepts file {path} not found — set the stage's `source:` to a YAML or JSONL file") from None
    if path.suffix == ".jsonl":
        rows = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    else:
        rows = yaml.safe_load(text)
        rows = rows.get("concepts") if isinstance(rows, dict) else rows
    if not isinstance(rows, list) or not all(isinstance(r, dict) and r.get("id") for r in rows):
        raise StageError(f"{path}: expected a list of concepts, each with an `id` (and name, description)")
    return rows


@operation("concept_combos", options=ComboOptions)
def concept_combos(ctx: Any, opts: ComboOptions) -> None:
    """One record per concept combination; the id hashes the sorted concept ids (order-free, stable)."""
    if not ctx.stage.source:
        raise StageError(f"stage '{ctx.stage.name}' needs `source: <concepts file>` for op concept_combos")
    concepts = read_concepts(ctx.pipe.resolve(ctx.stage.source))
    by_id = {str(c["id"]): c for c in concepts}
    combos = opts.combos if opts.combos is not None else [
        list(c) for c in itertools.combinations(list(by_id), opts.k)]
    cohort = getattr(ctx.pipe.extras.get("cohort"), "id", None)
    prefix = ctx.stage.id_prefix or "combo"
    seen: set[str] = set()
    for n, combo in enumerate(combos):
        if ctx.run.limit is not None and ctx.accepted >= ctx.run.limit:
            break
        rid = child_id("concepts", {"concepts": sorted(combo)}, prefix)
        rec = ctx.new(rid, data={"combo_id": rid, "concept_ids": list(combo), "cohort": cohort})
        # no timestamp: a rerun (another --limit) then writes byte-identical lines for the same combos,
        # so downstream records keep their input fingerprints and are not redone
        rec["created_at"] = None
        unknown = [c for c in combo if c not in by_id]
        if unknown:
            rec["raw"] = ", ".join(combo)
            ctx.reject(rec, "unknown_concept", error=f"combo {n} names unknown concept(s) {unknown}; known: "
                                                     f"{', '.join(by_id)}")
        elif rid in seen:
            rec["id"] = f"{rid}~dup{n}"
            ctx.reject(rec, "duplicate_id", error=f"combo {n} repeats the concepts of an earlier combo")
        else:
            seen.add(rid)
            rec["parsed"] = {"concepts": [by_id[c] for c in combo]}
            ctx.accept(rec)
