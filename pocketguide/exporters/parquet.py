"""`--format parquet`: one Parquet file of the stage's accepted records (pyarrow), card beside it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from pocketguide.engine.errors import PocketguideError
from pocketguide.engine.registry import exporter
from pocketguide.engine.store import atomic_write_bytes
from pocketguide.exporters.tabular import dataset_card, default_target, to_rows


@exporter("parquet")
def export_parquet(pipe: Any, stage: Any, store: Any, out: Path | None) -> Path:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise PocketguideError("Parquet export needs pyarrow — pip install 'pocketguide[dataset]'") from exc
    rows = to_rows(store.accepted())
    target = default_target(pipe, stage, out, ".parquet")
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    atomic_write_bytes(target, buf.getvalue())
    atomic_write_bytes(target.with_suffix(".README.md"), dataset_card(pipe, stage, rows).encode())
    return target
