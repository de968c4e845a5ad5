"""`op: score_report`: aggregate the scores of its input stage (see reports/scores.py) inside the pipeline.

Writes scores.csv, pivot.csv, summary_by_*.csv, top.csv (and scores.png) into the stage folder, and one
accepted record per scored input record (its joined row), so the report reruns when the scores change."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pocketguide.engine.loader import load_options
from pocketguide.engine.registry import operation, report_section
from pocketguide.pipelines.daydreaming.scores import build_score_report, score_section, write_score_report


class ScoreReportOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    top: int = Field(10, ge=1, description="how many of the best-scored parents (e.g. essays) to list")
    max_score: float = Field(10, description="top of the score range; scores equal to it count as perfect")
    chart: bool = Field(True, description="write scores.png when matplotlib is installed")


@operation("score_report", options=ScoreReportOptions)
def score_report(ctx: Any, opts: ScoreReportOptions) -> None:
    """Aggregated scores: one row per evaluation joined with its ancestors, pivots, summaries, top list."""
    stage = ctx.stage.inputs[0]
    report = build_score_report(ctx.pipe, stage, ctx.input_store, top_n=opts.top, max_score=opts.max_score)
    files = write_score_report(report, ctx.dir, chart=opts.chart)
    by_id = {r["id"]: r for r in ctx.records(stage)}
    for row in report.scored:
        parent = by_id.get(row[f"{stage}_id"])
        if parent is not None:
            ctx.accept(ctx.derive(parent, parsed=row))
    ctx.stats_extra["report"] = {"rows": len(report.rows), "scored": len(report.scored),
                                 "files": sorted(p.name for p in files.values())}
    ctx.manifest_extra["report_files"] = sorted(p.name for p in files.values())


@report_section("score_report")
def score_report_section(pipe: Any, spec: Any, store_of: Any) -> dict[str, Any] | None:
    """The stage's pivots in `pocketguide report`, computed by the same code as its CSV files."""
    opts = load_options(spec)
    if not store_of(spec.inputs[0]).records_path.exists():
        return None
    return score_section(build_score_report(pipe, spec.inputs[0], store_of, top_n=opts.top, max_score=opts.max_score))
