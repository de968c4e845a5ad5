"""`op: split`: seeded train/val/test split, leakage-free and stratified by the record fields you name."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pocketguide.engine.errors import StageError
from pocketguide.engine.records import lookup
from pocketguide.engine.registry import operation
from pocketguide.ops.content import prompt_key, prompt_of
from pocketguide.ops.stratify import Row, assign, split_report

class SplitOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ratios: dict[str, float] = Field(default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1},
                                     description="split name → share of records (sums to 1)")
    seed: int = Field(13, description="seed of the tie-breaking order; same seed and data → same split")
    stratify_by: list[str] = Field(default_factory=list, description="record fields (looked up in data, then in "
                                   "parsed) whose mix every split keeps, e.g. [payload_type, difficulty]")
    report_by: list[str] = Field(default_factory=list, description="more fields to count per split in the report")
    max_mix_deviation_points: float | None = Field(
        None, gt=0, description="fail the stage if any split's share of a stratify_by value is further "
                                "than this many points from the whole dataset's (null: only report it)")

    @model_validator(mode="after")
    def _ratios_sum(self) -> "SplitOptions":
        if not self.ratios or any(v < 0 for v in self.ratios.values()):
            raise ValueError("ratios must be non-negative shares, e.g. {train: 0.8, val: 0.1, test: 0.1}")
        if abs(sum(self.ratios.values()) - 1.0) > 1e-6:
            raise ValueError(f"ratios must sum to 1 (they sum to {sum(self.ratios.values()):.4f})")
        return self


def facet_value(rec: dict[str, Any], name: str) -> str:
    """A record's value for a facet: from its data, else from its parsed value; "None" when absent."""
    value = lookup(rec.get("data") or {}, name, None)
    if value is None and isinstance(rec.get("parsed"), dict):
        value = lookup(rec["parsed"], name, None)
    return str(value)


def _row(rec: dict[str, Any], opts: SplitOptions) -> Row:
    facets = {f: facet_value(rec, f) for f in dict.fromkeys([*opts.stratify_by, *opts.report_by])}
    d = rec.get("data") or {}
    return Row(id=str(rec["id"]), stratum="/".join(facets[f] for f in opts.stratify_by) or "all",
               cluster=str(d.get("cluster_id") or rec["id"]), prompt=prompt_key(prompt_of(rec)), facets=facets,
               margins=tuple(opts.stratify_by))


@operation("split", options=SplitOptions)
def split(ctx: Any, opts: SplitOptions) -> None:
    """Assign every record a split; near-duplicate clusters and shared prompts never cross splits."""
    rows = [_row(rec, opts) for rec in ctx.records()]
    splits = assign(rows, opts.ratios, opts.seed)
    report = split_report(rows, splits, list(opts.ratios))
    report["ratios_target"] = opts.ratios
    report["seed"] = opts.seed
    ctx.stats_extra["split"] = report
    if report["clusters_spanning_splits"] or report["prompts_spanning_splits"]:
        # impossible by construction; if it ever happens, no leaky split is written
        raise StageError(f"split leaked: {report['clusters_spanning_splits']} clusters and "
                         f"{report['prompts_spanning_splits']} prompts span splits — report this bug")
    limit = opts.max_mix_deviation_points
    if limit is not None and report["max_mix_deviation_points"] > limit:
        raise StageError(f"split mix deviates {report['max_mix_deviation_points']} points from the whole "
                         f"(max_mix_deviation_points {limit}) — the dataset is too small or too skewed to "
                         f"stratify; add data or raise the limit")
    for i, rec in enumerate(ctx.records()):
        if i >= len(rows) or rows[i].id != str(rec["id"]):
            raise StageError("the split input changed while split was running — rerun `pocketguide run split`")
        out = ctx.derive(rec)
        out["data"]["split"] = splits[i]
        ctx.accept(out)
