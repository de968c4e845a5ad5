"""`--format csv`: the stage's accepted records as one CSV table (exporters/tabular.py's rows: id, stage, `parsed`
as JSON text, one column per scalar `data` field, the rest as JSON in data_extra), written atomically."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from pocketguide.engine.registry import exporter
from pocketguide.engine.store import atomic_write_bytes
from pocketguide.exporters.tabular import to_rows


@exporter("csv")
def export_csv(pipe: Any, stage: Any, store: Any, out: Path | None) -> Path:
    target = out or (pipe.data_dir / "exports" / f"{stage.name}.csv")
    rows = to_rows(store.accepted())
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns or ["id", "stage"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(target, text.getvalue().encode("utf-8"))
    return target
