"""What `pocketguide clean` may remove: a pipeline's run outputs, never anything else in the folder."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

# files and folders the store itself writes next to the stage folders
_RUN_FILES = ("cache.sqlite", "cache.sqlite-wal", "cache.sqlite-shm")
_RUN_FOLDERS = ("dry-run", "report", "reports")


def clean_targets(pipe: Any, stage: str | None = None) -> list[Path]:
    """The run outputs of one stage (its folder, its set-aside `.old-*` copies, its dry-run folder) or of
    every stage plus the response cache and reports. Only paths that exist; only names the store makes,
    so a data_dir that holds other files (or is the project folder itself) keeps them."""
    root = pipe.data_dir
    names = [stage] if stage else [s.name for s in pipe.stages]
    out: list[Path] = []
    for base in (root, root / "dry-run"):
        for name in names:
            out.append(base / name)
            out.extend(sorted(base.glob(f"{name}.old-*")))
    if stage is None:
        out += [root / f for f in _RUN_FILES] + [root / d for d in _RUN_FOLDERS]
    return [p for p in dict.fromkeys(out) if p.exists() or p.is_symlink()]


def remove(paths: list[Path]) -> None:
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink(missing_ok=True)
