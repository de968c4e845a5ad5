"""The typer app and what every command shares: global options, one-line errors, run options."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer

from pocketguide.engine.errors import PocketguideError

app = typer.Typer(help="pocketguide: declarative synthetic-training-data pipelines.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
STATE: dict = {"pipeline": Path("stages.yaml"), "verbose": False, "data_dir": None, "cohort": None}


@app.callback()
def main(pipeline: Path = typer.Option(Path("stages.yaml"), "--pipeline", "-p", help="the stages.yaml to use"),
         data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="where run outputs go for this "
                                                 "command (default: pipeline.data_dir in stages.yaml)"),
         cohort: Optional[str] = typer.Option(None, "--cohort", help="cohort id or file for this command (cohort "
                                              "studies; default: $DD_COHORT, else pipeline.cohort)"),
         verbose: bool = typer.Option(False, "--verbose", "-v", help="full tracebacks and debug logs")) -> None:
    STATE["pipeline"], STATE["verbose"], STATE["data_dir"] = pipeline, verbose, data_dir
    # a file is taken relative to where the user typed it; an id is looked up in the pipeline's cohorts folder
    STATE["cohort"] = str(Path(cohort).resolve()) if cohort and Path(cohort).is_file() else cohort
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    setup_log_safety()


# HTTP libraries log full URLs (httpx at INFO) and request details (openai, httpcore at DEBUG): even with
# --verbose they stay at WARNING, and every handler scrubs registered secrets from what it writes
QUIET_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2", "openai", "urllib3", "huggingface_hub.utils._http")


def setup_log_safety() -> None:
    from pocketguide.engine.redact import SecretFilter

    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, SecretFilter) for f in handler.filters):
            handler.addFilter(SecretFilter())


def fail(exc: BaseException) -> None:
    import traceback

    from pocketguide.cli.console import console
    from pocketguide.engine.redact import scrub

    if STATE["verbose"]:  # the traceback as plain text, so that it can be scrubbed like everything else
        console.out(scrub("".join(traceback.format_exception(exc))), highlight=False)
    message = scrub(str(exc) if isinstance(exc, PocketguideError) else f"{type(exc).__name__}: {exc}")
    from rich.text import Text

    console.print(Text.assemble(("error: ", "bold red"), message), soft_wrap=True)
    if not isinstance(exc, PocketguideError):
        console.print("[dim]this looks like a bug in pocketguide; rerun with --verbose and report the traceback[/]")
    raise typer.Exit(2)


def guarded(fn):
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            from pocketguide.cli.console import console

            console.print("[yellow]interrupted — finished records are saved; run the same command to resume[/]")
            raise typer.Exit(130)
        except Exception as exc:  # every failure becomes one clear line
            fail(exc)

    return wrapper


def _pipe():
    from pocketguide.engine.loader import load_pipeline

    pipe = load_pipeline(STATE["pipeline"], settings={"cohort": STATE["cohort"]} if STATE["cohort"] else None)
    if STATE["data_dir"] is not None:  # relative to where the user typed it, not to stages.yaml
        pipe.data_dir_override = Path(STATE["data_dir"]).resolve()
    return pipe


def _options(limit, fresh, dry_run, concurrency, teacher, model, base_url, extra=None, threads=None, **run_knobs):
    from pocketguide.engine.session import RunOptions
    from pocketguide.engine.teacher_spec import TeacherSettings

    overrides = None
    if teacher or model or base_url or threads:
        overrides = TeacherSettings(provider=teacher, model=model, base_url=base_url, threads=threads)
    settings = dict(extra or {})
    if threads:
        settings["threads"] = threads  # the train stage reads it too
    return RunOptions(limit=limit, fresh=fresh, dry_run=dry_run, concurrency=concurrency, teacher=overrides,
                      settings=settings, **run_knobs)


LIMIT = typer.Option(None, "--limit", "-n", min=0, help="process at most N new records")
FRESH = typer.Option(False, "--fresh", help="move the old output aside and start the stage over")
DRY = typer.Option(False, "--dry-run", help="render and validate everything; call no teacher")
CONC = typer.Option(None, "--concurrency", "-c", min=1, help="teacher requests in flight (default 16)")
TEACHER = typer.Option(None, "--teacher", help="teacher provider for this run: openai or embedded")
MODEL = typer.Option(None, "--model", help="teacher model for this run")
BASE_URL = typer.Option(None, "--base-url", help="OpenAI-compatible base URL for this run")
THREADS = typer.Option(None, "--threads", min=1, help="CPU threads for the embedded teacher and for training "
                                                      "(default: the cores this process may use)")
GATING = typer.Option(None, "--gating-mode", help="run setting gating_mode for gates that read it: strict or lenient")
EXECUTOR = typer.Option(None, "--executor", help="where the work runs: local (default: this process) or ray "
                        "(the ray extra); overrides pipeline.executor")
ADDRESS = typer.Option(None, "--address", help="ray: the cluster — auto, ray://head:10001 or head:6379 "
                       "(default: RAY_ADDRESS, else a Ray started for this run)")


def _executor(pipe, name, address):
    """The run's executor override, checked now: a missing extra fails here with the install line."""
    if name is None and address is None:
        return None
    from pocketguide.engine.executors import effective_spec, executor_problems
    from pocketguide.engine.registry import EXECUTORS
    from pocketguide.engine.spec import ExecutorSpec

    spec = ExecutorSpec(name=name or pipe.spec.pipeline.executor.name, options={"address": address} if address else {})
    edef = EXECUTORS.get(spec.name)
    if address and edef is not None and not (edef.options and "address" in edef.options.model_fields):
        raise PocketguideError(f"--address is for an executor that takes one (--executor ray), not '{spec.name}'")
    problems = executor_problems(effective_spec(pipe, spec), "--executor")
    if problems:
        raise PocketguideError("; ".join(problems))
    return spec


def _settings(gating_mode):
    if gating_mode not in (None, "strict", "lenient"):
        raise typer.BadParameter(f"--gating-mode must be strict or lenient, not '{gating_mode}'")
    return {"gating_mode": gating_mode} if gating_mode else {}
NO_CACHE = typer.Option(False, "--no-cache", help="neither reuse nor store teacher answers in the response cache")
MAX_COST = typer.Option(None, "--max-cost", min=0, help="stop cleanly once this many USD are spent (needs prices)")
MAX_REQ = typer.Option(None, "--max-requests", min=0, help="stop cleanly once this many teacher requests were sent")


