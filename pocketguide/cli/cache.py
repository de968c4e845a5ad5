"""`pocketguide cache stats` and `pocketguide cache clear [--stage S]`: the teacher response cache."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from pocketguide.cli.app import _pipe, app, guarded

cache_app = typer.Typer(help="Inspect or clear the teacher response cache (<data_dir>/cache.sqlite).",
                        no_args_is_help=True)
app.add_typer(cache_app, name="cache")

PATH = typer.Option(None, "--path", help="cache file (default <data_dir>/cache.sqlite of the pipeline)")


def _open(path: Optional[Path]):
    from pocketguide.engine.errors import PocketguideError
    from pocketguide.teachers.cache import ResponseCache

    target = path or _pipe().data_dir / "cache.sqlite"
    if not target.exists():
        raise PocketguideError(f"no response cache at {target} yet — it is created by the first teacher call "
                               f"of `pocketguide run`")
    return ResponseCache(target)


@cache_app.command("stats")
@guarded
def cache_stats(path: Optional[Path] = PATH) -> None:
    """Entries, size, and counts by stage and model."""
    from rich.table import Table

    from pocketguide.cli.console import out

    cache = _open(path)
    try:
        s = cache.stats()
    finally:
        cache.close()
    when = (lambda t: time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-")
    out.print(f"[bold]{s['path']}[/]: {s['entries']} cached answers, {s['response_bytes'] / 1e6:.2f} MB of answers, "
              f"{s['file_bytes'] / 1e6:.2f} MB on disk; oldest {when(s['oldest'])}, newest {when(s['newest'])}")
    for title, rows in (("stage", s["by_stage"]), ("model", s["by_model"])):
        t = Table(title=f"by {title}")
        t.add_column(title)
        t.add_column("answers", justify="right")
        for k, v in rows.items():
            t.add_row(str(k), str(v))
        out.print(t)


@cache_app.command("clear")
@guarded
def cache_clear(stage: Optional[str] = typer.Option(None, "--stage", help="only answers made for this stage"),
                path: Optional[Path] = PATH) -> None:
    """Delete cached answers (all, or one stage's); the next run asks the teacher again."""
    from pocketguide.cli.console import out

    if stage is not None and path is None:
        _pipe().stage(stage)  # an unknown stage name fails with the closest match
    cache = _open(path)
    try:
        n = cache.clear(stage)
    finally:
        cache.close()
    out.print(f"removed {n} cached answer(s)" + (f" of stage '{stage}'" if stage else ""))
