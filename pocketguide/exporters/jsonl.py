"""`--format jsonl`: the stage's accepted records, one JSON object per line, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pocketguide.engine.registry import exporter
from pocketguide.engine.store import atomic_write_bytes, dumps_line


@exporter("jsonl")
def export_jsonl(pipe: Any, stage: Any, store: Any, out: Path | None) -> Path:
    target = out or (pipe.data_dir / "exports" / f"{stage.name}.jsonl")
    atomic_write_bytes(target, b"".join(dumps_line(r) for r in store.accepted()))
    return target
