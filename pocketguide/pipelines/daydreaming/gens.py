"""`--format gens`: one folder per record, `gens/<stage>/<id>/{prompt.txt,raw.txt,parsed.txt,metadata.json}`.

Every file is written atomically (temp file + fsync + rename), so a reader never sees half a file and
a rerun overwrites in place. Rejected records are exported too: their metadata says why (error).
The folder name is the id made safe (engine/safenames.py: `..`, `/`, NUL bytes, 300 characters, case
twins); `names.json` beside the folders maps every folder name back to its id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pocketguide.engine.registry import exporter
from pocketguide.engine.safenames import NameMap
from pocketguide.engine.store import atomic_write_bytes, atomic_write_json

NAMES_FILE = "names.json"


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)


def metadata(rec: dict[str, Any], cohort: str | None) -> dict[str, Any]:
    variant = rec.get("variant") or {}
    teacher = rec.get("teacher") or {}
    parents = rec.get("parent_ids") or []
    return {
        "stage": rec.get("stage"),
        "id": rec.get("id"),
        "parent_id": parents[0] if parents else None,
        "ancestors": rec.get("ancestors") or [],
        "status": rec.get("status"),
        "template": rec.get("template") or variant.get("template"),
        "model": variant.get("model") or teacher.get("model"),
        "mode": rec.get("mode"),
        "replicate": variant.get("replicate", 0),
        "cohort": (rec.get("data") or {}).get("cohort") or cohort,
        "usage": teacher.get("usage"),
        "timings": {"latency_s": teacher.get("latency_s"), "created_at": rec.get("created_at")},
        "finish_reason": teacher.get("finish_reason"),
        "parser": rec.get("parse_notes"),
        "error": ({"reasons": rec.get("reasons"), "message": rec.get("error")}
                  if rec.get("status") != "accepted" else None),
    }


@exporter("gens")
def export_gens(pipe: Any, stage: Any, store: Any, out: Path | None) -> Path:
    root = (out or (pipe.data_dir / "gens")) / stage.name
    cohort = getattr(pipe.extras.get("cohort"), "id", None)
    parsers = {}  # template id → parser name, for the metadata
    if stage.variants:
        parsers = {t.id: t.parser or stage.parser or "identity" for t in stage.variants.templates}
    names = NameMap(reserved=(NAMES_FILE,))
    for rec in store.all_records():
        folder = root / names.name(str(rec["id"]))
        meta = metadata(rec, cohort)
        meta["parser"] = {"name": parsers.get(meta["template"] or "", stage.parser or "identity"),
                          "notes": rec.get("parse_notes")}
        for name, value in (("prompt.txt", rec.get("prompt")), ("raw.txt", rec.get("raw")),
                            ("parsed.txt", rec.get("parsed"))):
            atomic_write_bytes(folder / name, _text(value).encode("utf-8", "replace"))
        atomic_write_json(folder / "metadata.json", meta)
    atomic_write_json(root / NAMES_FILE, names.mapping())  # folder name → record id
    return root
