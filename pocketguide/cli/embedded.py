"""`pocketguide doctor`: render the embedded teacher's self-check (the logic is in teachers/doctor.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from pocketguide.cli.app import STATE, app, guarded


def _pipeline_settings():
    """The pipeline's local-runtime settings (model_path, threads, n_ctx, n_parallel) for the doctor's check,
    when stages.yaml exists and loads; the probe brings its own sampling and output settings."""
    from pocketguide.engine.errors import PocketguideError
    from pocketguide.engine.teacher_spec import TeacherSettings

    path = Path(STATE["pipeline"])
    if not path.is_file():
        return None
    try:
        from pocketguide.engine.loader import load_pipeline

        t = load_pipeline(path).spec.pipeline.teacher
    except PocketguideError:
        return None
    return TeacherSettings(**t.group("local"))


@app.command()
@guarded
def doctor(model_path: Path | None = typer.Option(None, "--model-path", help="a .gguf model to check instead"),
           threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads for llama.cpp"),
           no_generate: bool = typer.Option(False, "--no-generate", help="skip the test generation"),
           as_json: bool = typer.Option(False, "--json", help="print the report as JSON")) -> None:
    """Check the embedded offline teacher: runtime, model, threads, and one schema-constrained generation."""
    from rich.table import Table

    from pocketguide.cli.console import out
    from pocketguide.engine.teacher_spec import TeacherSettings
    from pocketguide.teachers.doctor import diagnose

    base = _pipeline_settings() or TeacherSettings()
    flags = TeacherSettings(model_path=str(model_path) if model_path else None, threads=threads)
    report = diagnose(base.merged(flags), generate=not no_generate)
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        t = Table(title="pocketguide doctor: embedded teacher", show_header=False)
        for key in ("runtime", "runtime_version", "model", "model_path", "model_size_mb", "model_sha256",
                    "threads", "n_ctx", "load_s", "listener"):
            if key in report:
                t.add_row(key, str(report[key]))
        gen = report.get("generation")
        if gen:
            verdict = "[green]schema-valid JSON[/]" if gen["schema_valid"] else f"[red]FAILED[/] {gen['errors']}"
            t.add_row("test generation", verdict)
            t.add_row("time / tokens/s", f"{gen['seconds']} s, {gen['completion_tokens']} tokens, "
                                         f"{gen['tokens_per_s']} tokens/s ({gen['finish_reason']})")
        out.print(t)
        if gen:
            out.print(gen["text"], markup=False)
        if report.get("error"):
            out.print(f"[bold red]error:[/] {report['error']}")
    if not report["ok"]:
        raise typer.Exit(1)
