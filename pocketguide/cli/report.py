"""`pocketguide report`: one self-contained HTML report of the run; for a judge pipeline also the score
tables in the terminal and as CSV files (the same code makes the page's score pivots)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from pocketguide.cli.app import BASE_URL, GATING, MODEL, TEACHER, _options, _pipe, _settings, app, guarded
from pocketguide.report.collect import DEFAULT_MAX_RECORDS


def _judge_stage(pipe: Any, stage: str | None) -> str | None:
    """--stage, else the input of a `score_report` stage; None for a pipeline that scores nothing."""
    if stage:
        pipe.stage(stage)
        return stage
    return next((s.inputs[0] for s in pipe.stages if s.op == "score_report" and s.inputs), None)


def _table(title: str, rows: list[dict[str, Any]], columns: list[str]):
    from rich.table import Table

    t = Table(title=title)
    for c in columns:
        t.add_column(c, justify="right" if c in ("count", "mean", "min", "max", "n_perfect") else "left")
    for r in rows:
        t.add_row(*("-" if r.get(c) is None else str(r.get(c)) for c in columns))  # "-": no value (copy essays)
    return t


def _score_tables(pipe: Any, name: str, out_dir: Path, top: int, max_score: float, chart: bool,
                  explicit: bool) -> dict[str, Any] | None:
    """Print the score tables and write their CSV files; returns the page section (None: nothing scored yet)."""
    from pocketguide.cli.console import out
    from pocketguide.engine.inputs import input_store
    from pocketguide.pipelines.daydreaming.scores import build_score_report, score_section, write_score_report

    if not explicit and not input_store(pipe, name, False).records_path.exists():
        return None  # the judge stage has not run: the page says so, no tables to print
    rep = build_score_report(pipe, name, lambda n: input_store(pipe, n, False), top_n=top, max_score=max_score)
    files = write_score_report(rep, out_dir / "scores" / name, chart=chart)
    out.print(_table(f"{name}: mean score by model × template", rep.pivot,
                     [f"{name}_model", f"{name}_template", "count", "mean", "min", "max", "n_perfect"]))
    for key, rows in rep.summaries.items():
        out.print(_table(f"by {key}", rows, [key, "count", "mean", "min", "max", "n_perfect"]))
    if rep.top:
        parent = rep.chain[-2]
        cols = [f"{parent}_id"] + [c for c in (f"{parent}_template", f"{parent}_model", "concept_ids")
                                   if c in rep.top[0]]
        out.print(_table(f"top {len(rep.top)} {parent} records by mean score", rep.top,
                         cols + ["count", "mean", "min", "max"]))
    out.print(f"{len(rep.scored)} scored, {len(rep.rows) - len(rep.scored)} without a score (rejected); score tables:")
    for path in files.values():
        out.print(f"  {path}", soft_wrap=True)
    return score_section(rep)


@app.command()
@guarded
def report(open_page: bool = typer.Option(False, "--open", help="open the report in the default web browser"),
           out_dir: Path | None = typer.Option(None, "--out", "-o", help="folder for index.html (default "
                                                  "<data_dir>/report); score CSVs go to <out>/scores/<stage>/"),
           max_records: int = typer.Option(DEFAULT_MAX_RECORDS, "--max-records", min=1,
                                           help="records the page's browser carries; a bigger run is sampled"),
           stage: str | None = typer.Option(None, "--stage", "-s", help="judge pipelines: the scoring stage to "
                                            "tabulate (default: the input of the score_report stage)"),
           top: int = typer.Option(10, "--top", min=1, help="judge pipelines: how many best-scored parents to list"),
           max_score: float = typer.Option(10, "--max-score", help="judge pipelines: top of the score range"),
           chart: bool = typer.Option(True, "--chart/--no-chart", help="judge pipelines: also write scores.png "
                                                                       "(needs matplotlib)"),
           teacher: str | None = TEACHER, model: str | None = MODEL, base_url: str | None = BASE_URL,
           gating_mode: str | None = GATING) -> None:
    """Write one self-contained HTML page of the run: funnel, rejections, records, teacher, training, scores.
    Give the teacher overrides the run used (as for `status`): a stage is marked stale only if a rerun with
    them would redo it."""
    import webbrowser

    from pocketguide.cli.console import out
    from pocketguide.report.collect import build_report_data
    from pocketguide.report.html import default_out_dir, write_page

    pipe = _pipe()
    folder = out_dir or default_out_dir(pipe)
    extra = []
    judge = _judge_stage(pipe, stage)
    if judge:
        section = _score_tables(pipe, judge, folder, top, max_score, chart, explicit=stage is not None)
        in_pipeline = any(s.op == "score_report" and s.inputs[:1] == [judge] for s in pipe.stages)
        if section and not in_pipeline:  # a score_report stage adds its own section to the page
            extra.append(section)
    opts = _options(None, False, False, None, teacher, model, base_url, _settings(gating_mode))
    data = build_report_data(pipe, max_records=max_records, extra_sections=extra, teacher=opts.teacher,
                             settings=opts.settings)
    path = write_page(data, folder)
    b = data["browser"]
    sampled = f", a sample of {b['shown']:,} of {b['total']:,} records" if b["sampled"] else f", {b['total']:,} records"
    out.print(f"report: {path} ({len(data['stages'])} stages{sampled})", soft_wrap=True, highlight=False)
    if open_page:
        webbrowser.open(path.resolve().as_uri())
