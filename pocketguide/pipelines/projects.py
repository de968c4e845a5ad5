"""The built-in pipelines' project files (stages.yaml, templates, data), shipped as package data, and
`init`: copy one into a folder so it runs anywhere, outside any checkout."""

from __future__ import annotations

import os
import shutil
from importlib.resources import files
from pathlib import Path

from pocketguide.engine.errors import PocketguideError

BUNDLED = {
    "pocketguide": "travel-assistant SFT data: plan → draft → critique → refine → dataset → qa → split → sft → train",
    "daydreaming": "creative-writing study: concept combinations → drafts → essays → judges → score report",
    "hello": "the smallest copy-mode pipeline: no model, no key, no network",
}

def project_files(name: str) -> Path:
    """The folder holding a bundled project's files (inside the installed package)."""
    if name not in BUNDLED:
        from pocketguide.engine.registry import closest

        raise PocketguideError(f"no bundled pipeline '{name}'; {closest(name, BUNDLED)}")
    return Path(str(files(f"pocketguide.pipelines.{name}") / "project"))


def init_project(name: str, dest: Path, force: bool = False) -> list[Path]:
    """Copy a bundled project into `dest`; refuses to overwrite files unless `force`. Returns what it wrote."""
    src = project_files(name)
    planned = [p for p in _files(src) if not _skipped(p.relative_to(src))]
    clashes = [dest / p.relative_to(src) for p in planned if (dest / p.relative_to(src)).exists()]
    if clashes and not force:
        raise PocketguideError(f"{len(clashes)} file(s) already exist in {dest} (e.g. {clashes[0]}) — pick an "
                               f"empty folder with --dir, or pass --force to overwrite them")
    written = []
    for p in planned:
        target = dest / p.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, target)  # follows a checkout's symlinks: the copy holds real files
        written.append(target)
    return written


def _files(root: Path) -> list[Path]:
    """Every file under root, through symlinked folders (a checkout links the project's real folders)."""
    return sorted(Path(d) / f for d, _, names in os.walk(root, followlinks=True) for f in names)


def _skipped(rel: Path) -> bool:
    """Run outputs and caches that may sit in a checkout's project folder are never copied."""
    return any(part in ("runs", "__pycache__", ".DS_Store") or part.endswith(".pyc") for part in rel.parts)
