"""`op: cohort_membership`: the cohort's membership table — the one list of what runs.

One accepted record per (stage, id) to make: the stages that say `members: <this stage>`, in pipeline
order, each fanned out from its first input. A stage's parents are the accepted records of an input of
this stage (e.g. the concept combinations) or the rows just listed for an earlier member stage (essays
come from the listed drafts). Per parent: each template the cohort picked, × each model × each replicate
for a template that calls the teacher; one row for a `copy` template (no call, so no model or replicate).

Ids are `child_id(parent id, variant, prefix)` (engine/records.py), the ids the same axes gave before there
was a table: the same cohort file gives the same table and the same ids on any machine. Rows are written
without timestamps, so an unchanged table is byte-identical. Besides the records, the stage folder gets
`membership.csv` (stage, gen_id, parent_gen_id, parent_stage, combo_id, template_id, model_id, replicate,
mode, parser, cohort_id); `pocketguide export <stage> --format csv` writes the same rows from the records.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
from typing import Any, Iterator

from pydantic import BaseModel, ConfigDict, Field

from pocketguide.engine import registry
from pocketguide.engine.errors import StageError
from pocketguide.engine.records import child_id
from pocketguide.engine.spec import StageSpec

CSV_NAME = "membership.csv"
COLUMNS = ("stage", "gen_id", "parent_gen_id", "parent_stage", "combo_id", "template_id", "model_id", "replicate",
           "mode", "parser", "cohort_id")


def member_stages(pipe: Any, table: str) -> list[StageSpec]:
    return [s for s in pipe.stages if s.members == table]


class MembershipOptions(BaseModel):
    """Filled by the loader, not by hand: what the table is built from, so that another cohort, catalog row or
    axis makes the table out of date (a whole-dataset stage reruns when its options change)."""

    model_config = ConfigDict(extra="forbid")
    cohort: str | None = Field(None, description="the cohort id (set by the loader)")
    axes_sha256: str | None = Field(None, description="hash of the member stages' axes (set by the loader)")


def stamp_axes(pipe: Any, table: StageSpec) -> None:
    """Put what the table is built from into its options: cohort id and a hash of every member stage's axes."""
    axes = [{"stage": s.name, "from": s.inputs[0], "prefix": s.id_prefix, "mode": s.mode, "route": bool(s.route),
             "variants": s.variants.model_dump(mode="json") if s.variants else None}
            for s in member_stages(pipe, table.name)]
    cohort = getattr(pipe.extras.get("cohort"), "id", None)
    digest = hashlib.sha256(json.dumps([cohort, axes], sort_keys=True).encode()).hexdigest()
    table.options = {**table.options, "cohort": cohort, "axes_sha256": digest}


def membership_problems(pipe: Any) -> list[str]:
    """Load-time checks: each member stage has templates, and its parents are listed or read by the table."""
    problems = []
    for table in {s.members for s in pipe.stages if s.members}:
        spec = next((s for s in pipe.stages if s.name == table), None)
        if spec is None or spec.op != "cohort_membership":
            continue
        stamp_axes(pipe, spec)
        listed: set[str] = set()
        for stage in member_stages(pipe, table):
            parent = stage.inputs[0]
            if stage.catalog is None and not (stage.variants and stage.variants.templates):
                problems.append(f"{stage.name}.members: the table lists templates, but '{stage.name}' has none — "
                                f"give it a `catalog:`")
            if parent not in listed and parent not in spec.inputs:
                problems.append(f"{stage.name}.members: its first input '{parent}' is neither listed by '{table}' "
                                f"nor read by it — add '{parent}' to the inputs of '{table}'")
            listed.add(stage.name)
    return problems


def _fan_out(stage: StageSpec, parent_id: str) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(id, variant, template) per record `stage` makes from one parent, in a fixed order."""
    v = stage.variants
    assert v is not None
    for t in v.templates:
        copy = not registry.calls_teacher(t.mode or stage.mode or "copy") and not stage.route
        models: list[str | None] = [None] if copy or not v.models else list(v.models)
        for model, rep in itertools.product(models, range(1 if copy else v.replicates)):
            variant: dict[str, Any] = {"template": t.id}
            if model is not None:
                variant["model"] = model
            if v.replicates > 1 and not copy:
                variant["replicate"] = rep
            yield child_id(parent_id, variant, stage.id_prefix or stage.name), variant, t


def _row(stage: StageSpec, rid: str, parent: str, combo: str, variant: dict[str, Any], t: Any,
         cohort: str | None) -> dict[str, Any]:
    return {"stage": stage.name, "gen_id": rid, "parent_gen_id": parent, "parent_stage": stage.inputs[0],
            "combo_id": combo, "template_id": t.id, "model_id": variant.get("model"),
            "replicate": variant.get("replicate", 0), "mode": t.mode or stage.mode,
            "parser": t.parser or stage.parser or "identity", "cohort_id": cohort}


def build_rows(ctx: Any) -> Iterator[dict[str, Any]]:
    """Every row of the table, stage by stage, parents in their own order."""
    cohort = getattr(ctx.pipe.extras.get("cohort"), "id", None)
    listed: dict[str, list[tuple[str, str]]] = {}  # stage → [(id, combo id)]
    for stage in member_stages(ctx.pipe, ctx.stage.name):
        source = stage.inputs[0]
        if source in listed:
            parents = listed[source]
        elif source in ctx.stage.inputs:
            parents = [(str(r["id"]), str((r.get("data") or {}).get("combo_id") or r["id"]))
                       for r in ctx.records(source)]
        else:
            raise StageError(f"stage '{stage.name}' fans out from '{source}', which '{ctx.stage.name}' neither lists "
                             f"nor reads — add it to the inputs of '{ctx.stage.name}'")
        rows = listed[stage.name] = []
        for parent, combo in parents:
            for rid, variant, t in _fan_out(stage, parent):
                rows.append((rid, combo))
                yield {**_row(stage, rid, parent, combo, variant, t, cohort), "variant": variant}


def to_csv(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


@registry.operation("cohort_membership", options=MembershipOptions)
def cohort_membership(ctx: Any, opts: Any) -> None:
    """The membership table: one record per (stage, id) to make, with its template, model and parent."""
    stages = member_stages(ctx.pipe, ctx.stage.name)
    if not stages:
        ctx.note = f"no stage says `members: {ctx.stage.name}` — the table is empty"
    rows, seen, counts = [], set(), {s.name: 0 for s in stages}
    for row in build_rows(ctx):
        variant = row.pop("variant")
        rec = ctx.new(row["gen_id"], data={**row, "parent_id": row["parent_gen_id"], "variant": variant},
                      parsed=dict(row))
        rec["created_at"] = None  # an unchanged table is byte-identical, so what reads it is not redone
        if row["gen_id"] in seen:
            rec["id"] = f"{row['gen_id']}~dup{len(rows)}"
            ctx.reject(rec, "duplicate_id", error=f"stage '{row['stage']}' row {row['gen_id']} repeats an earlier id")
            continue
        seen.add(row["gen_id"])
        rows.append(row)
        counts[row["stage"]] += 1
        ctx.accept(rec)
    ctx.write_bytes(CSV_NAME, to_csv(rows))
    ctx.stats_extra["membership"] = {"rows": len(rows), "by_stage": counts}
    ctx.manifest_extra["membership"] = {"csv": CSV_NAME, "by_stage": counts,
                                        "cohort": getattr(ctx.pipe.extras.get("cohort"), "id", None)}
