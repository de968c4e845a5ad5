"""`op: split`: seeded train/val/test split, leakage-free and stratified by payload_type × difficulty."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pocketguide.engine.errors import StageError
from pocketguide.engine.registry import operation
from pocketguide.ops.content import prompt_key, prompt_of
from pocketguide.ops.stratify import Row, assign, split_report

FACETS = ("payload_type", "category", "difficulty")


class SplitOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ratios: dict[str, float] = Field(default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1},
                                     description="split name → share of records (sums to 1)")
    seed: int = Field(13, description="seed of the tie-breaking order; same seed and data → same split")
    max_mix_deviation_points: float | None = Field(
        None, gt=0, description="fail the stage if any split's payload-type or difficulty share is further "
                                "than this many points from the whole dataset's (null: only report it)")

    @model_validator(mode="after")
    def _ratios_sum(self) -> "SplitOptions":
        if not self.ratios or any(v < 0 for v in self.ratios.values()):
            raise ValueError("ratios must be non-negative shares, e.g. {train: 0.8, val: 0.1, test: 0.1}")
        if abs(sum(self.ratios.values()) - 1.0) > 1e-6:
            raise ValueError(f"ratios must sum to 1 (they sum to {sum(self.ratios.values()):.4f})")
        return self


def _row(rec: dict[str, Any]) -> Row:
    d = rec.get("data") or {}
    env = rec.get("parsed") if isinstance(rec.get("parsed"), dict) else {}
    facets = {"payload_type": str(d.get("payload_type") or env.get("payload_type")),
              "category": str(d.get("category")), "difficulty": str(d.get("difficulty"))}
    return Row(id=str(rec["id"]), stratum=f"{facets['payload_type']}/{facets['difficulty']}",
               cluster=str(d.get("cluster_id") or rec["id"]), prompt=prompt_key(prompt_of(rec)), facets=facets)


@operation("split", options=SplitOptions)
def split(ctx: Any, opts: SplitOptions) -> None:
    """Assign every record a split; near-duplicate clusters and shared prompts never cross splits."""
    rows = [_row(rec) for rec in ctx.records()]
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
