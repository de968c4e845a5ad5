"""The end-of-stage writes: stats.json, then manifest.json (the completion marker) with the stage's recipe
(what decided its records, engine/recipe.py) and a short history of its runs."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any, Callable

from pocketguide.engine.inputs import input_store
from pocketguide.engine.recipe import path_sha
from pocketguide.engine.records import now_iso
from pocketguide.engine.redact import redact
from pocketguide.engine.spec import StageSpec
from pocketguide.engine.stats import StatsAccumulator
from pocketguide.engine.store import RECORDS, REJECTED, StageStore, file_sha256
from pocketguide.engine.version import __version__


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
                    "superseded": result.superseded, "redo": result.redo, "rejudged": result.rejudged,
                    "elapsed_s": result.elapsed_s, "stopped": result.stopped}
    if extra:
        stats.update(extra.get("stats", {}))
    result.stats = stats
    result.accepted, result.rejected = stats["accepted"], stats["rejected"]
    store.write_json("stats.json", stats)
    templates = {str(p.relative_to(pipe.root)) if p.is_relative_to(pipe.root) else str(p): file_sha256(p)
                 for p in (rt.template_files() if rt else [])}
    templates.update(rt.inline_templates() if rt else {})
    manifest = {
        "stage": stage.name,
        "run_id": getattr(result, "run_id", None) or uuid.uuid4().hex,
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
        "outputs": {RECORDS: store.sha256(RECORDS), REJECTED: store.sha256(REJECTED)},
        "counts": {"accepted": result.accepted, "rejected": result.rejected, "pending": result.pending},
    }
    if extra:
        manifest.update(extra.get("manifest", {}))
    result.teacher = manifest["teacher"]
    recipe = (extra or {}).get("recipe") or (rt.recipe if rt else None)
    if recipe is not None:
        if rt is not None:  # the files the parser and gates read this run join those read before (a folder
            # holding the run outputs themselves is left out: it changes with every run)
            read = [p for p in sorted(rt.files_read) if not pipe.data_dir.resolve().is_relative_to(p.resolve())]
            recipe.files_read = {**recipe.files_read, **{_rel(pipe, p): path_sha(p) for p in read}}
        manifest["recipe"] = recipe.to_manifest()
    manifest["history"] = _history(store.manifest(), manifest, stats["run"], result)
    store.write_json("manifest.json", manifest)  # last: its presence means the stage finished


HISTORY = 20  # runs kept in manifest.json's history


def _history(previous: dict[str, Any] | None, manifest: dict[str, Any], run: dict[str, Any],
             result: Any) -> list[dict[str, Any]]:
    """The last runs of this stage that did something, oldest first: when, what decided the records, what
    changed, what was made or redone (a rerun with nothing to do adds no entry)."""
    old = list((previous or {}).get("history") or [])
    if previous and not old:  # a manifest from before histories: its run is the first entry
        old = [{"run_id": previous.get("run_id"), "finished_at": previous.get("finished_at"),
                "counts": previous.get("counts")}]
    if old and not (result.changed or result.superseded or result.new_accepted or result.new_rejected
                    or manifest["complete"] != old[-1].get("complete")):
        return old[-HISTORY:]
    entry = {"run_id": manifest["run_id"], "finished_at": manifest["finished_at"], "complete": manifest["complete"],
             "stopped": manifest["stopped"], "recipe": (manifest.get("recipe") or {}).get("summary"),
             "changed": list(result.changed), "counts": manifest["counts"],
             "run": {k: run[k] for k in ("new_accepted", "new_rejected", "rejudged", "superseded", "redo",
                                         "skipped_done", "pending", "elapsed_s") if k in run}}
    return (old + [entry])[-HISTORY:]


def _rel(pipe: Any, path: Path) -> str:
    return str(path.relative_to(pipe.root)) if path.is_relative_to(pipe.root) else str(path)


def manifest_path(root: Path, stage: str) -> Path:
    return root / stage / "manifest.json"
