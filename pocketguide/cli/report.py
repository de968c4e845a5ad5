"""`pocketguide report`: aggregate a scoring stage into CSV files, a chart and terminal tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from pocketguide.cli.app import _pipe, app, guarded


def _default_stage(pipe: Any) -> str:
    """The input of a `score_report` stage if the pipeline has one, else the last per-record stage."""
    for s in pipe.stages:
        if s.op == "score_report" and s.inputs:
            return s.inputs[0]
    per_record = [s.name for s in pipe.stages if not s.is_operation]
    if not per_record:
        from pocketguide.engine.errors import StageError

        raise StageError("the pipeline has no per-record stage to report on — pass --stage NAME")
    return per_record[-1]


def _table(title: str, rows: list[dict[str, Any]], columns: list[str]):
    from rich.table import Table

    t = Table(title=title)
    for c in columns:
        t.add_column(c, justify="right" if c in ("count", "mean", "min", "max", "n_perfect") else "left")
    for r in rows:
        t.add_row(*("-" if r.get(c) is None else str(r.get(c)) for c in columns))  # "-": no value (copy essays)
    return t


@app.command()
@guarded
def report(stage: str | None = typer.Option(None, "--stage", "-s", help="the scoring stage (default: the "
                                               "score_report stage's input, else the last per-record stage)"),
           out_dir: Path | None = typer.Option(None, "--out", "-o", help="folder for the CSV files and chart "
                                                  "(default <data_dir>/reports/<stage>)"),
           top: int = typer.Option(10, "--top", min=1, help="how many best-scored parents to list"),
           max_score: float = typer.Option(10, "--max-score", help="top of the score range (counts perfect scores)"),
           chart: bool = typer.Option(True, "--chart/--no-chart", help="write scores.png if matplotlib is installed"),
           ) -> None:
    """Aggregate scores: one row per evaluation with its essay and draft, pivots, summaries, top essays."""
    from pocketguide.cli.console import out
    from pocketguide.engine.inputs import input_store
    from pocketguide.pipelines.daydreaming.scores import build_score_report, write_score_report

    pipe = _pipe()
    name = stage or _default_stage(pipe)
    pipe.stage(name)
    rep = build_score_report(pipe, name, lambda n: input_store(pipe, n, False), top_n=top, max_score=max_score)
    files = write_score_report(rep, out_dir or pipe.data_dir / "reports" / name, chart=chart)
    out.print(_table(f"{name}: mean score by model × template", rep.pivot,
                     [f"{name}_model", f"{name}_template", "count", "mean", "min", "max", "n_perfect"]))
    for key, rows in rep.summaries.items():
        out.print(_table(f"by {key}", rows, [key, "count", "mean", "min", "max", "n_perfect"]))
    if rep.top:
        parent = rep.chain[-2]
        cols = [f"{parent}_id"] + [c for c in (f"{parent}_template", f"{parent}_model", "concept_ids") if c in rep.top[0]]
        out.print(_table(f"top {len(rep.top)} {parent} records by mean score", rep.top, cols + ["count", "mean", "min", "max"]))
    rejected = len(rep.rows) - len(rep.scored)
    out.print(f"{len(rep.scored)} scored, {rejected} without a score (rejected); files:")
    for path in files.values():
        out.print(f"  {path}")
