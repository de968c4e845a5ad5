"""Resume scans and the end-of-stage writes: stats.json, then manifest.json (the completion marker)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

from pocketguide.engine.inputs import input_store
from pocketguide.engine.records import now_iso
from pocketguide.engine.redact import redact
from pocketguide.engine.spec import StageSpec
from pocketguide.engine.stats import StatsAccumulator
from pocketguide.engine.store import (
    RECORDS,
    REJECTED,
    StageStore,
    atomic_write_bytes,
    dumps_line,
    file_sha256,
    iter_jsonl,
)
from pocketguide.engine.version import __version__


def scan_existing(store: StageStore, stage: StageSpec, items: Iterable[Any],
                  retry: Callable[[dict[str, Any]], bool] | None = None
                  ) -> tuple[dict[str, str], StatsAccumulator, int]:
    """Ids already written (id → input fingerprint), stats of what is there, and how many old
    records were set aside because their inputs changed, the spec no longer produces them, or
    `retry` asks to redo them."""
    done: dict[str, str] = {}
    acc = StatsAccumulator(stage.facets)
    redo: set[str] = set()
    for rec in store.all_records():
        done[rec["id"]] = rec.get("input_fp")
        if retry is not None and rec.get("status") != "accepted" and retry(rec):
            redo.add(rec["id"])
    if done:
        current = {it.id: it.fp for it in items}
        redo |= {rid for rid, fp in done.items() if rid in current and current[rid] != fp}
        # ids the spec no longer produces (a cohort axis dropped, an input gone) would otherwise linger
        # and flow downstream; they are set aside like changed ones, and not redone
        redo |= {rid for rid in done if rid not in current}
    if redo:
        _set_aside(store, redo)
        for rid in redo:
            done.pop(rid, None)
    for rec in store.all_records():
        acc.add(rec)
    return done, acc, len(redo)


def _set_aside(store: StageStore, ids: set[str]) -> None:
    """Rewrite both JSONL files without `ids`; the old lines go to superseded.jsonl, never lost."""
    kept_aside = []
    for name in (RECORDS, REJECTED):
        path = store.dir / name
        keep = []
        for rec in iter_jsonl(path):
            (kept_aside if rec["id"] in ids else keep).append(rec)
        atomic_write_bytes(path, b"".join(dumps_line(r) for r in keep))
    with open(store.dir / "superseded.jsonl", "ab") as fh:
        for rec in kept_aside:
            rec["superseded_at"] = now_iso()
            fh.write(dumps_line(rec))
    store.close()
    store.open()


def input_hashes(pipe: Any, stage: StageSpec, root_of: Callable[[str], StageStore]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in stage.inputs:
        out[name] = file_sha256(root_of(name).records_path)
    if stage.source:
        out["source:" + stage.source] = file_sha256(pipe.resolve(stage.source))
    return out


def finish_stage(pipe: Any, stage: StageSpec, store: StageStore, rt: Any, acc: StatsAccumulator, result: Any,
                 options: Any, started: float, extra: dict[str, Any] | None = None) -> None:
    result.elapsed_s = round(time.monotonic() - started, 3)
    store.flush()  # batched (free) lines first: the manifest hashes what is on disk
    stats = acc.to_dict()
    for extra_stats in (rt.generator_stats if rt else []):  # e.g. the teacher's flow: 429s, waits, pauses
        for key, value in extra_stats.items():
            if isinstance(value, dict) and isinstance(stats.get(key), dict):
                stats[key].update(value)
            else:
                stats[key] = value
    stats["run"] = {"new_accepted": result.new_accepted, "new_rejected": result.new_rejected,
                    "skipped_done": result.skipped_done, "pending": result.pending,
                    "superseded": result.superseded, "elapsed_s": result.elapsed_s, "stopped": result.stopped}
    if extra:
        stats.update(extra.get("stats", {}))
    result.stats = stats
    result.accepted, result.rejected = stats["accepted"], stats["rejected"]
    store.write_json("stats.json", stats)
    templates = {str(p.relative_to(pipe.root)) if p.is_relative_to(pipe.root) else str(p): file_sha256(p)
                 for p in (rt.template_files() if rt else [])}
    manifest = {
        "stage": stage.name,
        "run_id": uuid.uuid4().hex,
        "finished_at": now_iso(),
        "pocketguide_version": __version__,
        "dry_run": options.dry_run,
        "complete": result.complete,
        "stopped": result.stopped,
        "spec": redact(stage.model_dump(mode="json", by_alias=True, exclude_none=True)),
        "teacher_settings": (redact(rt.teacher_settings.model_dump(exclude_none=True)) if rt and rt.calls_teacher
                             else None),
        "teacher": rt.teacher_info if rt else None,
        "templates": templates,
        "schema": ({"path": stage.schema_, "sha256": file_sha256(rt.schema_path),
                    "id": (rt.schema or {}).get("$id"), "version": (rt.schema or {}).get("version")}
                   if rt and rt.schema_path else None),
        "inputs": input_hashes(pipe, stage, lambda n: input_store(pipe, n, options.dry_run)),
        "outputs": {RECORDS: file_sha256(store.records_path), REJECTED: file_sha256(store.rejected_path)},
        "counts": {"accepted": result.accepted, "rejected": result.rejected, "pending": result.pending},
    }
    if extra:
        manifest.update(extra.get("manifest", {}))
    store.write_json("manifest.json", manifest)  # last: its presence means the stage finished


def manifest_path(root: Path, stage: str) -> Path:
    return root / stage / "manifest.json"
