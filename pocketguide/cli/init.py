"""`pocketguide init NAME`: write a bundled pipeline's project files into a folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pocketguide.cli.app import app, guarded


@app.command()
@guarded
def init(name: Optional[str] = typer.Argument(None, help="bundled pipeline: pocketguide, daydreaming or hello"),
         dest: Path = typer.Option(Path("."), "--dir", "-d", help="folder to write into (default: here)"),
         force: bool = typer.Option(False, "--force", help="overwrite files that already exist")) -> None:
    """Write a working project (stages.yaml, templates, data) for a bundled pipeline; no name lists them."""
    from pocketguide.cli.console import out
    from pocketguide.pipelines.projects import BUNDLED, init_project

    if name is None:
        for key, what in BUNDLED.items():
            out.print(f"{key:12} {what}", markup=False, highlight=False)
        return
    written = init_project(name, dest, force)
    out.print(f"wrote {len(written)} files of the '{name}' pipeline into {dest.resolve()}", markup=False)
    out.print("next: pocketguide stages   (then: pocketguide run-all --dry-run, or pocketguide run-all)", markup=False)
