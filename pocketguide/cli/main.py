"""The pipeline commands: stages, run, run-all, status, inspect, export."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from pocketguide.cli.app import (
    ADDRESS,
    BASE_URL,
    CONC,
    DRY,
    EXECUTOR,
    FRESH,
    GATING,
    LIMIT,
    MAX_COST,
    MAX_REQ,
    MODEL,
    NO_CACHE,
    TEACHER,
    THREADS,
    _executor,
    _options,
    _pipe,
    _settings,
    app,
    guarded,
)
from pocketguide.engine.errors import PocketguideError


def _report(results, stopped=None) -> None:
    from pocketguide.cli.console import out, summary_notes, summary_table

    out.print(summary_table(results))
    for line in summary_notes(results):
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    if any(r.dry_run for r in results):
        out.print("[yellow]DRY RUN: no teacher was called; output is under the data dir's dry-run/ folder[/]")
    if stopped:
        out.print(f"[yellow]stopped early: {stopped}. Finished records are kept; rerun the same command to resume.[/]")


@app.command()
@guarded
def stages(teacher: Optional[str] = TEACHER, model: Optional[str] = MODEL,
           base_url: Optional[str] = BASE_URL, executor: Optional[str] = EXECUTOR,
           address: Optional[str] = ADDRESS) -> None:
    """Validate stages.yaml and list its stages, with where each one runs under the executor, and how each
    route resolves for the teacher of this run."""
    from rich.table import Table

    from pocketguide.cli.console import out
    from pocketguide.engine.executors import build_executor, stage_work

    pipe = _pipe()
    overrides = _options(None, False, False, None, teacher, model, base_url).teacher  # this run's teacher
    over = _executor(pipe, executor, address)
    runner = build_executor(pipe, over)  # builds nothing remote: placement is decided from the spec
    t = Table(title=f"{pipe.spec.pipeline.name} ({pipe.path}) — executor {runner.name}")
    spread = runner.name != "local"  # the local executor runs everything in this process: no column for that
    columns = ("#", "stage", "inputs", "kind", "template", "parser", "schema", "gates", *(["runs on"] if spread else []))
    for col in columns:
        t.add_column(col, min_width=max(len(s.name) for s in pipe.stages) if col == "stage" else None)
    for i, s in enumerate(pipe.stages, 1):
        kind = f"op:{s.op}" if s.op else (s.mode or "") + (" +route" if s.route else "") + (" +variants" if s.variants else "")
        fanned = s.variants.templates if s.variants else []  # cohort/catalog stages: show what they fan out to
        template = s.template or ", ".join(t.id for t in fanned)
        parser = ", ".join(dict.fromkeys(t.parser or s.parser or "identity" for t in fanned)) or s.parser
        t.add_row(str(i), s.name, ", ".join(s.inputs) or (s.source or ""), kind, template,
                  parser or ("" if s.op else "identity"), s.schema_ or "", ", ".join(g.name for g in s.gates),
                  *([runner.placement(stage_work(pipe, s, overrides))] if spread else []))
    out.print(t)
    for line in [*_route_lines(pipe, overrides), *_transport_lines(pipe, overrides)]:
        out.print(line, markup=False, highlight=False)
    out.print("[green]stages.yaml is valid[/]")


def _transport_lines(pipe, overrides) -> list[str]:
    """Which teacher stages use the opt-in lean HTTP client (the default, the openai SDK's, goes unsaid)."""
    from pocketguide.engine import registry
    from pocketguide.engine.session import resolved_teacher

    lean = []
    for s in pipe.stages:
        modes = {s.mode or ""} | ({c.mode for c in [*s.route.cases.values(), s.route.default]} if s.route else set())
        settings = resolved_teacher(pipe.spec.pipeline.teacher, s, overrides)
        if settings.transport == "lean" and (settings.provider or "openai") == "openai" and any(
                registry.calls_teacher(m) for m in modes):
            lean.append(s.name)
    return [f"teacher HTTP client: lean (teachers/wire.py; the openai SDK's behind a proxy) for {', '.join(lean)}"
            ] if lean else []


def _route_lines(pipe, overrides) -> list[str]:
    """One line per routed stage: the cases, and for a route on the teacher which case this run takes."""
    from pocketguide.engine.runtime import route_on_teacher
    from pocketguide.engine.session import resolved_teacher

    lines = []
    for s in pipe.stages:
        if s.route is None:
            continue
        cases = ", ".join(f"{k} → {c.mode}" for k, c in s.route.cases.items())
        line = f"{s.name}: route on {' / '.join(s.route.paths)}: {cases}"
        facts = resolved_teacher(pipe.spec.pipeline.teacher, s, overrides).facts()
        fixed = route_on_teacher(s, facts)
        if fixed:
            line += (f" — with this teacher ({facts['provider']}, {s.route.on} = {fixed[0]}): "
                     f"{fixed[1].mode}")
        lines.append(line)
    return lines


@app.command()
@guarded
def run(stage: str = typer.Argument(..., help="stage name"), limit: Optional[int] = LIMIT, fresh: bool = FRESH,
        dry_run: bool = DRY, concurrency: Optional[int] = CONC, teacher: Optional[str] = TEACHER,
        model: Optional[str] = MODEL, base_url: Optional[str] = BASE_URL, no_cache: bool = NO_CACHE,
        max_cost: Optional[float] = MAX_COST, max_requests: Optional[int] = MAX_REQ,
        gating_mode: Optional[str] = GATING, threads: Optional[int] = THREADS,
        executor: Optional[str] = EXECUTOR, address: Optional[str] = ADDRESS) -> None:
    """Run one stage (resuming where it stopped)."""

    from pocketguide.cli.console import RichProgress
    from pocketguide.engine.runner import run_stage

    pipe = _pipe()
    spec = pipe.stage(stage)
    opts = _options(limit, fresh, dry_run, concurrency, teacher, model, base_url, _settings(gating_mode),
                    threads=threads, cache=not no_cache, max_cost=max_cost, max_requests=max_requests,
                    executor=_executor(pipe, executor, address))

    with RichProgress() as progress:
        opts.progress = progress
        result = run_stage(spec, pipe, options=opts)
    _report([result], result.stopped)
    if result.stopped:
        raise typer.Exit(3)


@app.command("run-all")
@guarded
def run_all(limit: Optional[int] = typer.Option(None, "--limit", "-n", min=0,
                                                help="cap the first stage at N records in total"),
            fresh: bool = typer.Option(False, "--fresh", help="move every stage's output aside and start over"),
            dry_run: bool = DRY, concurrency: Optional[int] = CONC, teacher: Optional[str] = TEACHER,
            model: Optional[str] = MODEL, base_url: Optional[str] = BASE_URL, no_cache: bool = NO_CACHE,
            max_cost: Optional[float] = MAX_COST, max_requests: Optional[int] = MAX_REQ,
            gating_mode: Optional[str] = GATING, threads: Optional[int] = THREADS,
            executor: Optional[str] = EXECUTOR, address: Optional[str] = ADDRESS) -> None:
    """Run every stage in order; a rerun resumes and redoes only what changed (re-judging stored
    answers with no teacher call when only parsers, schemas or gates changed)."""
    from pocketguide.cli.console import RichProgress
    from pocketguide.engine.pipeline import run_pipeline

    pipe = _pipe()
    opts = _options(limit, fresh, dry_run, concurrency, teacher, model, base_url, _settings(gating_mode),
                    threads=threads, cache=not no_cache, max_cost=max_cost, max_requests=max_requests,
                    executor=_executor(pipe, executor, address))
    with RichProgress() as progress:
        opts.progress = progress
        result = run_pipeline(pipe, options=opts)
    _report(result.stages, result.stopped)
    if result.stopped:
        raise typer.Exit(3)


@app.command()
@guarded
def status(dry_run: bool = typer.Option(False, "--dry-run", help="show the dry-run outputs"),
           explain: Optional[str] = typer.Option(None, "--explain", "-e", metavar="STAGE",
                                                 help="list what changed in STAGE, record counts, recent runs"),
           teacher: Optional[str] = TEACHER, model: Optional[str] = MODEL, base_url: Optional[str] = BASE_URL,
           gating_mode: Optional[str] = GATING) -> None:
    """Per stage: done, partial or stale (why, how many records, and what becomes stale downstream).
    Give the teacher overrides and gating mode the next run will use: records are judged against them."""
    from rich.table import Table

    from pocketguide.cli.console import explain_stage, out
    from pocketguide.engine.pipeline import pipeline_status

    pipe = _pipe()
    opts = _options(None, False, dry_run, None, teacher, model, base_url, _settings(gating_mode))
    states = pipeline_status(pipe, dry_run, teacher=opts.teacher, settings=opts.settings)
    if explain:
        pipe.stage(explain)
        explain_stage(next(s for s in states if s.name == explain))
        return
    t = Table(title=f"status of {pipe.path}")
    for col in ("stage", "kind", "state", "accepted", "rejected", "stale because", "finished"):
        t.add_column(col, overflow="fold")
    for s in states:
        state = ("[red]stale[/]" if s.stale else "[green]done[/]" if s.complete else
                 "[yellow]partial[/]" if s.ran else "[dim]not run[/]")
        why = "; ".join(s.reasons) + (f"; then stale: {', '.join(s.downstream)}" if s.downstream else "")
        t.add_row(s.name, s.kind, state, str(s.accepted), str(s.rejected), why, s.finished_at or "")
    out.print(t)
    for s in states:  # values the plan had and a stage lost: a payload type with no training data, say
        for line in s.missing:
            out.print(f"[yellow]{s.name}: missing {line}[/]", soft_wrap=True)
    if any(s.stale for s in states):
        out.print("[dim]`pocketguide run-all` redoes only what changed; `pocketguide status --explain STAGE` "
                  "lists the changed parts[/]")


@app.command()
@guarded
def inspect(stage: str = typer.Argument(...), record_id: str = typer.Argument(..., metavar="ID"),
            as_json: bool = typer.Option(False, "--json", help="print the whole record as JSON")) -> None:
    """Show one record: prompt, raw output, parsed value, gates, teacher provenance."""
    from rich.panel import Panel
    from rich.text import Text

    from pocketguide.cli.console import out
    from pocketguide.engine.store import StageStore

    pipe = _pipe()
    pipe.stage(stage)
    rec = StageStore(pipe.data_dir, stage).find(record_id)
    if rec is None:
        raise PocketguideError(f"no record '{record_id}' in stage '{stage}' — `pocketguide status` shows what ran")
    if as_json:
        sys.stdout.write(json.dumps(rec, indent=2, ensure_ascii=False) + "\n")
        return
    colour = "green" if rec["status"] == "accepted" else "red"
    out.print(Text.assemble((f"{stage}/{rec['id']} ", "bold"), (rec["status"], colour), " ",
                            ", ".join(rec.get("reasons") or [])))
    if rec.get("error"):
        out.print(Text.assemble(("error: ", "red"), str(rec["error"])))
    for title in ("prompt", "raw"):
        if rec.get(title) is not None:
            out.print(Panel(Text(str(rec[title])), title=title, expand=False))
    if rec.get("parsed") is not None:
        out.print(Panel(Text(json.dumps(rec["parsed"], indent=2, ensure_ascii=False)[:8000]), title="parsed",
                        expand=False))
    for g in rec.get("gates") or []:
        mark = ("pass", "green") if g["passed"] else (f"fail {g.get('reason')}", "red")
        out.print(Text.assemble(f"gate {g['name']}: ", mark, " ", json.dumps(g.get("details") or {})[:300]))
    if rec.get("teacher"):
        out.print(Panel(Text(json.dumps(rec["teacher"], indent=2)), title="teacher", expand=False))


@app.command()
@guarded
def export(stage: str = typer.Argument(...), fmt: str = typer.Option("jsonl", "--format", "-f", help="export format"),
           out: Optional[Path] = typer.Option(None, "--out", "-o", help="where to write (default under data dir)")) -> None:
    """Write a stage's accepted records in another format."""
    from pocketguide.cli.console import out as console_out
    from pocketguide.engine.registry import EXPORTERS, closest
    from pocketguide.engine.store import StageStore

    pipe = _pipe()
    spec = pipe.stage(stage)
    if fmt not in EXPORTERS:
        raise PocketguideError(f"unknown export format '{fmt}'; {closest(fmt, EXPORTERS)}")
    store = StageStore(pipe.data_dir, stage)
    if not store.records_path.exists():
        raise PocketguideError(f"stage '{stage}' has no output yet — run `pocketguide run {stage}` first")
    path = EXPORTERS[fmt](pipe, spec, store, out)
    console_out.print(f"wrote {path}")


@app.command()
@guarded
def clean(stage: Optional[str] = typer.Option(None, "--stage", "-s", help="only this stage's outputs"),
          yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation")) -> None:
    """Remove run outputs (stage folders, set-aside copies, dry runs, the response cache) after confirming."""
    from pocketguide.cli.console import out
    from pocketguide.engine.clean import clean_targets, remove

    pipe = _pipe()
    if stage is not None:
        pipe.stage(stage)
    targets = clean_targets(pipe, stage)
    if not targets:
        out.print(f"nothing to clean under {pipe.data_dir}", markup=False)
        return
    for p in targets:
        out.print(f"  {p}", markup=False, highlight=False)
    if not yes and not typer.confirm(f"remove these {len(targets)} path(s)?", default=False):
        out.print("kept everything", markup=False)
        raise typer.Exit(1)
    remove(targets)
    out.print(f"removed {len(targets)} path(s)", markup=False)
