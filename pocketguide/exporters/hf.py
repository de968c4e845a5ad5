"""`--format hf`: a Hugging Face `datasets` folder (`load_from_disk`), one split per `data.split`
value when the records carry one, with a dataset card README.md."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from pocketguide.engine.errors import PocketguideError
from pocketguide.engine.registry import exporter
from pocketguide.exporters.tabular import dataset_card, default_target, to_rows

HF_SPLIT_NAMES = {"val": "validation"}  # the names the Hub and trainers expect
SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}


@exporter("hf")
def export_hf(pipe: Any, stage: Any, store: Any, out: Path | None) -> Path:
    try:
        import datasets
        from datasets import Dataset, DatasetDict
    except ImportError as exc:
        raise PocketguideError("hf export needs datasets — pip install 'pocketguide[dataset]'") from exc
    rows = to_rows(store.accepted())
    if not rows:
        raise PocketguideError(f"stage '{stage.name}' has no accepted records to export")
    target = default_target(pipe, stage, out, "_hf")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # the library never prints; the CLI reports the result
    try:
        if all(r.get("split") for r in rows):
            names = sorted({r["split"] for r in rows}, key=lambda n: (SPLIT_ORDER.get(n, 9), n))
            parts = {HF_SPLIT_NAMES.get(n, n): Dataset.from_list([r for r in rows if r["split"] == n]) for n in names}
            DatasetDict(parts).save_to_disk(str(tmp))
        else:
            Dataset.from_list(rows).save_to_disk(str(tmp))
        (tmp / "README.md").write_text(dataset_card(pipe, stage, rows))
        if target.exists():  # replace whole: a half-old, half-new dataset folder is worse than none
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if bars:
            datasets.enable_progress_bars()
    return target
