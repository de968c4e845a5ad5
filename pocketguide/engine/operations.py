"""Whole-dataset stages: one registered operation receives all accepted input records."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from pocketguide.engine.errors import PocketguideError, StageError
from pocketguide.engine.inputs import input_store, read_stage, require_upstream
from pocketguide.engine.loader import Pipeline, load_options
from pocketguide.engine.manifest import finish_stage, input_hashes
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
        self.executor = stage_run.executor  # where ctx.map runs its batches
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

    def map(self, fn: Callable[..., Any], batches: Iterable[Any], *args: Any) -> Iterator[Any]:
        """fn(batch, *args) for each batch, results in input order: in this process, or spread over the
        run's executor's workers (`--executor ray`). fn must be a module-level function that depends only on
        its arguments, so every executor gives the same result."""
        return self.executor.map(fn, batches, *args)

    def write_json(self, name: str, obj: Any) -> None:
        self.store.write_json(name, obj)

    def write_bytes(self, name: str, data: bytes) -> None:
        self.store.write_bytes(name, data)

    def path(self, name: str) -> Path:
        return self.store.dir / name

    def message(self, text: str) -> None:
        self.run.progress.message(f"{self.stage.name}: {text}")


def _up_to_date(pipe: Pipeline, stage: StageSpec, store: StageStore, run: RunOptions) -> bool:
    m = store.manifest()
    if not m or not m.get("complete") or m.get("dry_run") != run.dry_run or m.get("limit") != run.limit:
        return False  # output made under another --limit is redone, else `--limit 2` then `--limit 5` stops at 2
    if m.get("spec", {}).get("options", {}) != stage.model_dump(mode="json", by_alias=True,
                                                                exclude_none=True).get("options", {}):
        return False
    # an op may record the run limit it honoured and the files it read (ctx.manifest_extra):
    # another limit, or a changed file, makes its output out of date
    if "limit" in m and m["limit"] != run.limit:
        return False
    for rel, sha in (m.get("files_read") or {}).items():
        if file_sha256(pipe.resolve(rel)) != sha:
            return False
    return m.get("inputs") == input_hashes(pipe, stage, lambda n: input_store(pipe, n, run.dry_run))


async def run_operation(stage_run: StageRun, stage: StageSpec, store: StageStore, result: Any,
                        started: float) -> Any:
    pipe, run = stage_run.pipe, stage_run.options
    for name in stage.inputs:
        require_upstream(input_store(pipe, name, run.dry_run), stage.name, name, run.dry_run)
    if _up_to_date(pipe, stage, store, run):
        stats = store.stats() or {}
        result.accepted, result.rejected = stats.get("accepted", 0), stats.get("rejected", 0)
        result.complete, result.stats = True, stats
        result.skipped_done = result.accepted + result.rejected
        result.note = (store.manifest() or {}).get("note")
        run.progress.message(f"{stage.name}: up to date (inputs unchanged), nothing to do")
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
        execution = stage_run.executor.report(stage.name)
        finish_stage(pipe, stage, store, None, acc, result, run, started,
                     extra={"stats": {**ctx.stats_extra, **execution["stats"]},
                            "manifest": {"limit": run.limit, **ctx.manifest_extra, **execution["manifest"]}})
    run.progress.stage_finished(stage.name, result)
    return result
