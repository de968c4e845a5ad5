"""Whole-dataset stages: one registered operation receives all accepted input records. It reruns whole
when its recipe changes (options, code, inputs by content, files it read, --limit), else it is skipped."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Iterator

from pocketguide.engine.errors import PocketguideError, StageError
from pocketguide.engine.inputs import content_digest, input_store, read_stage, require_upstream
from pocketguide.engine.loader import Pipeline, load_options
from pocketguide.engine.manifest import finish_stage, input_hashes
from pocketguide.engine.recipe import GEN, Recipe, code_version, path_sha
from pocketguide.engine.records import ACCEPTED, REJECTED, new_record
from pocketguide.engine.registry import OPERATIONS
from pocketguide.engine.session import RunOptions, StageRun
from pocketguide.engine.spec import StageSpec
from pocketguide.engine.stats import StatsAccumulator
from pocketguide.engine.store import RECORDS, StageStore, file_sha256
from pocketguide.engine.store import REJECTED as REJECTED_FILE


class OpContext:
    """What an operation sees: its inputs, its options, and the same store every stage writes through."""

    def __init__(self, stage_run: StageRun, stage: StageSpec, store: StageStore, acc: StatsAccumulator):
        self.pipe, self.stage, self.store = stage_run.pipe, stage, store
        self.run: RunOptions = stage_run.options
        self.services = stage_run.services  # run-scoped resources (a teacher pool, a loaded model)
        self.acc = acc
        self.stats_extra: dict[str, Any] = {}
        self.manifest_extra: dict[str, Any] = {}
        self.accepted = 0
        self.rejected = 0
        self.note: str | None = None  # shown in the run summary (e.g. "skipped: no training data")

    @property
    def dir(self) -> Path:
        return self.store.dir

    def input_store(self, name: str | None = None) -> StageStore:
        return input_store(self.pipe, name or self.stage.inputs[0], self.run.dry_run)

    def records(self, name: str | None = None) -> Iterator[dict[str, Any]]:
        """Accepted records of an input stage (the first by default), streamed."""
        for up in read_stage(self.input_store(name)):
            yield up.record

    def derive(self, parent: dict[str, Any], *, id: str | None = None, **fields: Any) -> dict[str, Any]:
        """A new record descending from `parent` (same id unless given), data carried forward."""
        rec = new_record(id=id or parent["id"], stage=self.stage.name, parent_ids=[parent["id"]],
                         ancestors=[parent["id"], *(parent.get("ancestors") or [])],
                         data=dict(parent.get("data") or {}))
        rec["mode"] = "op"
        rec["parsed"] = parent.get("parsed")
        rec.update(fields)
        return rec

    def new(self, id: str, **fields: Any) -> dict[str, Any]:
        rec = new_record(id=id, stage=self.stage.name, parent_ids=[], ancestors=[], data={})
        rec["mode"] = "op"
        rec.update(fields)
        return rec

    def accept(self, record: dict[str, Any]) -> None:
        record["status"] = ACCEPTED
        self._write(record)

    def reject(self, record: dict[str, Any], *reasons: str, error: str | None = None) -> None:
        record["status"] = REJECTED
        record["reasons"] = list(reasons) or ["rejected"]
        if error:
            record["error"] = error
        self._write(record)

    def _write(self, record: dict[str, Any]) -> None:
        self.store.append(record)
        self.acc.add(record)
        if record["status"] == ACCEPTED:
            self.accepted += 1
        else:
            self.rejected += 1
        self.run.progress.record_done(self.stage.name, record)

    def write_json(self, name: str, obj: Any) -> None:
        self.store.write_json(name, obj)

    def write_bytes(self, name: str, data: bytes) -> None:
        self.store.write_bytes(name, data)

    def path(self, name: str) -> Path:
        return self.store.dir / name

    def message(self, text: str) -> None:
        self.run.progress.message(f"{self.stage.name}: {text}")


def op_recipe(pipe: Pipeline, stage: StageSpec, limit: int | None, dry_run: bool,
              files_read: dict[str, Any] | None) -> Recipe:
    """What decides a whole-dataset stage's output: its options, its code, its inputs by content, the
    files it said it read (ctx.manifest_extra["files_read"]) and the run's --limit."""
    r = Recipe()
    r.add(GEN, "options", stage.options)
    r.add(GEN, f"code of op {stage.op}", code_version(OPERATIONS[stage.op or ""].fn))
    for name in stage.inputs:
        r.add(GEN, f"input {name}", content_digest(input_store(pipe, name, dry_run)))
    if stage.source:
        r.add(GEN, f"source {stage.source}", path_sha(pipe.resolve(stage.source)))
    for rel in sorted(files_read or {}):
        r.add(GEN, f"file {rel}", path_sha(pipe.resolve(rel)))
    r.add(GEN, "limit", limit)  # output made under another --limit is redone: `--limit 2` then 5 must not stop at 2
    r.add(GEN, "facets", stage.facets)
    return r


def op_changes(pipe: Pipeline, stage: StageSpec, manifest: dict[str, Any] | None, limit: int | None,
               dry_run: bool) -> dict[str, dict[str, Any]] | None:
    """What changed since the op last ran (label → change), or None when it must run (never ran, did not
    finish, or ran before recipes and its inputs, options, files or limit differ)."""
    m = manifest
    if not m or not m.get("complete") or m.get("dry_run") != dry_run:
        return None
    if "recipe" not in m:
        return {} if _legacy_up_to_date(pipe, stage, m, limit, dry_run) else None
    return op_recipe(pipe, stage, limit, dry_run, m.get("files_read")).changes(m)


def _legacy_up_to_date(pipe: Pipeline, stage: StageSpec, m: dict[str, Any], limit: int | None,
                       dry_run: bool) -> bool:
    """The checks of a manifest written before recipes: same options, limit, files read and input files."""
    if m.get("limit") != limit:
        return False
    if m.get("spec", {}).get("options", {}) != stage.model_dump(mode="json", by_alias=True,
                                                                exclude_none=True).get("options", {}):
        return False
    for rel, sha in (m.get("files_read") or {}).items():
        if file_sha256(pipe.resolve(rel)) != sha:
            return False
    return m.get("inputs") == input_hashes(pipe, stage, lambda n: input_store(pipe, n, dry_run))


async def run_operation(stage_run: StageRun, stage: StageSpec, store: StageStore, result: Any,
                        started: float) -> Any:
    pipe, run = stage_run.pipe, stage_run.options
    for name in stage.inputs:
        require_upstream(input_store(pipe, name, run.dry_run), stage.name, name, run.dry_run)
    previous = store.manifest()
    changes = op_changes(pipe, stage, previous, run.limit, run.dry_run)
    if changes == {}:
        stats = store.stats() or {}
        result.accepted, result.rejected = stats.get("accepted", 0), stats.get("rejected", 0)
        result.complete, result.stats = True, stats
        result.skipped_done = result.accepted + result.rejected
        result.note = (store.manifest() or {}).get("note")
        run.progress.message(f"{stage.name}: up to date (inputs, options and code unchanged), nothing to do")
        run.progress.stage_finished(stage.name, result)
        return result
    odef = OPERATIONS[stage.op or ""]
    acc = StatsAccumulator(stage.facets)
    with store:
        for name in (RECORDS, REJECTED_FILE):  # a whole-dataset output is rebuilt whole
            os.truncate(store.dir / name, 0)
        ctx = OpContext(stage_run, stage, store, acc)
        run.progress.stage_started(stage.name, None, 0)
        try:
            out = odef.fn(ctx, load_options(stage))
            if inspect.isawaitable(out):
                await out
        except PocketguideError:
            raise
        except Exception as exc:
            raise StageError(f"operation '{stage.op}' of stage '{stage.name}' failed: {type(exc).__name__}: {exc} "
                             f"— rerun with --verbose for the traceback") from exc
        result.new_accepted, result.new_rejected = ctx.accepted, ctx.rejected
        result.note = ctx.note
        if ctx.note:
            ctx.manifest_extra.setdefault("note", ctx.note)
        result.complete = True
        result.changed = list(changes or {})
        recipe = op_recipe(pipe, stage, run.limit, run.dry_run, ctx.manifest_extra.get("files_read"))
        finish_stage(pipe, stage, store, None, acc, result, run, started,
                     extra={"stats": ctx.stats_extra, "manifest": {"limit": run.limit, **ctx.manifest_extra},
                            "recipe": recipe})
    run.progress.stage_finished(stage.name, result)
    return result
