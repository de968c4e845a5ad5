"""The one runner: per-record loop (route → render → generate → parse → validate → gates → write)
and the dispatch to whole-dataset operations. Nothing in here knows any particular stage."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from pocketguide.engine import registry
from pocketguide.engine.errors import RecordRejected, StageError, StageStopped, StoreError, TeacherError
from pocketguide.engine.fused import plain_copy, run_fused
from pocketguide.engine.generators import Generated
from pocketguide.engine.inputs import (
    Joined,
    input_store,
    store_root,
)
from pocketguide.engine.items import driving_inputs, joined_inputs, stage_items
from pocketguide.engine.loader import Pipeline, load_pipeline
from pocketguide.engine.manifest import finish_stage
from pocketguide.engine.operations import run_operation
from pocketguide.engine.recipe import build_recipe
from pocketguide.engine.records import ACCEPTED, now_iso
from pocketguide.engine.resume import scan_existing, teacher_failed
from pocketguide.engine.runtime import StageRuntime, build_runtime
from pocketguide.engine.session import NullProgress, RunOptions, Services, StageRun, resolved_teacher
from pocketguide.engine.spec import StageSpec
from pocketguide.engine.steps import (
    Item,
    Prepared,
    _reject,
    error_text,
    failed_record,
    finish,
    prepare,
    record_failed,
    restored,
    unwritable,
)
from pocketguide.engine.store import StageStore, loads
from pocketguide.engine.timings import since_ms

log = logging.getLogger("pocketguide.engine.runner")
STATS_EVERY_S = 5.0
FLUSH_EVERY_S = 0.5  # free (copy-mode) records are batched at most this long


@dataclass
class StageResult:
    stage: str
    output_dir: Path
    new_accepted: int = 0
    new_rejected: int = 0
    skipped_done: int = 0
    accepted: int = 0
    rejected: int = 0
    pending: int = 0
    complete: bool = False
    dry_run: bool = False
    stopped: str | None = None  # why the stage ended early (budget, circuit breaker)
    superseded: int = 0  # old records set aside to superseded.jsonl (redone unless no longer produced)
    redo: dict[str, int] = field(default_factory=dict)  # why records were set aside → how many (engine/resume.py)
    rejudged: int = 0  # records re-parsed, re-validated and re-gated from their stored raw output: no teacher call
    changed: list[str] = field(default_factory=list)  # recipe parts changed since the last run (engine/recipe.py)
    note: str | None = None  # what a whole-dataset stage wants the user to see (e.g. "skipped: no data")
    teacher: dict[str, Any] | None = None  # the stage's teacher as its manifest describes it (model, threads…)
    elapsed_s: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # this run of the stage (records, manifest)


def _timings(record: dict[str, Any]) -> dict[str, Any]:
    timings = record.get("timings")
    if timings is None:
        timings = record["timings"] = {}
    return timings


# --- the loop --------------------------------------------------------------------------------
class _Loop:
    def __init__(self, rt: StageRuntime, store: StageStore, acc: Any, result: StageResult, progress: Any,
                 generators: dict[str, Any], salvage: dict[tuple[str, str], bytes]):
        self.rt, self.store, self.acc, self.result, self.progress = rt, store, acc, result, progress
        self.last_stats = self.last_flush = time.monotonic()
        self.generators = generators
        self.recipe = rt.recipe
        self.salvage = salvage  # (id, input fp) → a set-aside record (its line) whose raw output is judged again

    def write(self, record: dict[str, Any]) -> None:
        if "gen_fp" not in record:  # what decided it (engine/recipe.py); a re-judged record keeps its own
            record["gen_fp"] = self.recipe.gen_of(record)
        teacher = record.get("teacher")
        # paid-for answers are written at once; free records (copy mode, re-judged) are batched briefly: a kill
        # loses only lines redone for free (a re-judge finds its raw output again in superseded.jsonl)
        buffered = not teacher or bool(teacher.get("cached")) or "rejudged_from" in record
        _timings(record)["finished_at"] = now_iso()
        record["run_id"] = self.result.run_id  # the run that wrote it (manifest.json's run_id, history)
        t0 = time.perf_counter()
        try:
            self.store.append(record, buffered=buffered)
        except (OSError, StoreError):
            raise  # the store itself failed (a full disk…): the stage stops
        except Exception as exc:  # this record cannot be stored as it is (nested too deep for JSON…)
            record = unwritable(record, exc)
            self.store.append(record, buffered=buffered)
        self.acc.phases.add_one("write_ms", (time.perf_counter() - t0) * 1000)  # a line cannot hold its own
        # write time: stats only
        self.acc.add(record)
        if record["status"] == ACCEPTED:
            self.result.new_accepted += 1
        else:
            self.result.new_rejected += 1
        self.progress.record_done(self.rt.stage.name, record)
        now = time.monotonic()
        if now - self.last_flush > FLUSH_EVERY_S:
            self.last_flush = now
            self.store.flush()
        if now - self.last_stats > STATS_EVERY_S:
            self.last_stats = now
            self.store.write_json("stats.json", self.acc.to_dict())

    async def run_one(self, p: Prepared) -> None:
        t0 = time.perf_counter()
        try:
            gen = await self.generators[p.mode].generate(p)
        except Exception as exc:
            self.write(self.generation_failed(p, exc, t0))
            return
        _timings(p.record)["llm_ms"] = since_ms(t0)
        self.write(self.finished(p, gen))

    def run_sync(self, p: Prepared) -> None:
        t0 = time.perf_counter()
        try:
            gen = self.generators[p.mode].generate(p)
        except Exception as exc:
            self.write(self.generation_failed(p, exc, t0))
            return
        _timings(p.record)["llm_ms"] = since_ms(t0)
        self.write(self.finished(p, gen))

    @staticmethod
    def generation_failed(p: Prepared, exc: Exception, t0: float) -> dict[str, Any]:
        """The record of a failed generation; record_failed re-raises what stops the stage."""
        _timings(p.record)["llm_ms"] = since_ms(t0)
        if isinstance(exc, TeacherError):
            rec = _reject(p.record, f"teacher_error:{exc.kind}", str(exc))
            rec["teacher"] = getattr(exc, "provenance", None)
            return rec
        if isinstance(exc, RecordRejected):
            return _reject(p.record, exc.code, str(exc))
        return record_failed(p.record, "generator_error", exc)  # a generator's bug fails this record

    def finished(self, p: Prepared, gen: Any) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            record = finish(self.rt, p, gen)
        except Exception as exc:  # finish catches each step's errors; this is the engine's own safety net
            return record_failed(p.record, "internal_error", exc)
        if not gen.dry_run:  # parse_ms: parser and schema validation (finish's time less its gates)
            timings = _timings(record)
            gate = timings.get("gate_ms")
            timings["parse_ms"] = since_ms(t0) if gate is None else max(0, int(
                (time.perf_counter() - t0) * 1e6) - int(gate * 1000 + 0.5)) / 1000
        return record

    def prepared(self, item: Item, joined: list[Joined]) -> Prepared | dict[str, Any]:
        """Render the record, then the generator's own per-record preparation (e.g. its response format)."""
        try:
            p = prepare(self.rt, item, joined)
        except Exception as exc:
            return record_failed(failed_record(self.rt, item), "internal_error", exc)
        if isinstance(p, dict):
            return p
        try:
            self.generators[p.mode].prepare(p)
        except RecordRejected as exc:
            return _reject(p.record, exc.code, str(exc))
        except Exception as exc:
            return record_failed(p.record, "generator_error", exc)
        return p

    def rejudge_stored(self, item: Item) -> bool:
        """When a stored version was made from the same inputs the same way (only how it is judged changed),
        judge its raw output again — parse, validate, gates — instead of generating it."""
        line = self.salvage.pop((item.id, item.fp), None)
        if line is None:
            return False
        old = loads(line)
        teacher = old.get("teacher")
        gen = Generated(old.get("raw"), teacher, (teacher or {}).get("finish_reason"), made_by=old.get("made_by"))
        self.write(self.finished(restored(self.rt, old), gen))
        self.result.rejudged += 1
        return True


async def _drive(loop: _Loop, items: Iterator[Item], joined: list[Joined], concurrency: int) -> str | None:
    """Feed items through at most `concurrency` teacher calls; free items run inline. Generators that hold
    their own calls to `concurrency` (caps_own_calls) get twice as many records going: the others wait for
    a slot or sleep before a retry, so a record waiting out a Retry-After does not idle a slot."""
    paid = [g for g in loop.generators.values() if g.calls_teacher]
    own = bool(paid) and all(getattr(g, "caps_own_calls", False) for g in paid)
    sem = asyncio.Semaphore(2 * concurrency if own else concurrency)
    tasks: set[asyncio.Task] = set()
    stop: list[str] = []

    def done(task: asyncio.Task) -> None:
        tasks.discard(task)
        sem.release()
        exc = task.exception() if not task.cancelled() else None
        if isinstance(exc, StageStopped):
            stop.append(str(exc))
        elif exc is not None:  # only what concerns the whole stage gets here (a full disk, a config error)
            log.error("stage stopped: %s", error_text(exc))
            stop.append(error_text(exc))

    n = 0
    for item in items:
        if stop:
            break
        n += 1
        try:
            if loop.salvage and loop.rejudge_stored(item):
                continue
            p = loop.prepared(item, joined)
            if isinstance(p, dict):
                loop.write(p)
            elif loop.generators[p.mode].calls_teacher:
                await sem.acquire()
                if stop:
                    sem.release()
                    break
                task = asyncio.ensure_future(loop.run_one(p))
                tasks.add(task)
                task.add_done_callback(done)
            else:
                loop.run_sync(p)
        except StageStopped as exc:
            stop.append(str(exc))
            break
        if n % 512 == 0:
            await asyncio.sleep(0)
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
    return stop[0] if stop else None


def _take(items: Iterator[Item], done: dict[str, str], limit: int | None, result: StageResult,
          pending: list[int], limit_total: bool = False) -> Iterator[Item]:
    """Skip finished ids (same inputs); stop after `limit` new items (or `limit` in all, counting
    finished ones, when `limit_total`); count what is left."""
    taken = 0
    for item in items:
        if done.get(item.id) == item.fp:
            result.skipped_done += 1
            if limit_total:
                taken += 1
            continue
        if limit is not None and taken >= limit:
            pending[0] += 1
            continue
        taken += 1
        yield item


def _redo_message(stage: str, redo: dict[str, int], changed: list[str]) -> str:
    what = ", ".join(f"{n} {why}" for why, n in sorted(redo.items()))
    return f"{stage}: set aside {sum(redo.values())} records ({what})" + (
        f"; changed: {', '.join(changed)}" if changed else "")


def _estimate_total(pipe: Pipeline, stage: StageSpec, options: RunOptions, done: int,
                    members: Any = None) -> int | None:
    """New records this run will make, for the progress bar (counting lines is cheap)."""
    if stage.inputs:
        path = input_store(pipe, stage.inputs[0], options.dry_run).records_path
    else:
        path = pipe.resolve(stage.source or "")
    try:
        with open(path, "rb") as fh:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    except OSError:
        return None
    v = stage.variants
    fan = 1
    if members is not None:  # the table says how many (rows whose parent was rejected included)
        total = max(0, members.count - done)
        return total if options.limit is None else min(total, options.limit)
    if v:  # copy templates yield one child each (see _variants)
        per_llm = max(1, len(v.models)) * v.replicates
        modes = [t.mode or stage.mode for t in v.templates] or [stage.mode]
        fan = sum(per_llm if registry.calls_teacher(m or "") or stage.route else 1 for m in modes)
    total = max(0, lines * fan - done)
    if options.limit is not None:
        total = min(total, max(0, options.limit - (done if options.settings.get("limit_total") else 0)))
    return total


async def arun_stage(pipe: Pipeline, stage: StageSpec, options: RunOptions, services: Services) -> StageResult:
    """Run one stage to completion (or to its limit / budget) and write stats + manifest."""
    started = time.monotonic()
    root = store_root(pipe, options.dry_run)
    store = StageStore(root, stage.name)
    result = StageResult(stage.name, store.dir, dry_run=options.dry_run)
    if options.fresh:
        aside = store.move_aside()
        if aside:
            options.progress.message(f"{stage.name}: previous output kept at {aside}")
    run = StageRun(pipe, options, services, options.concurrency or pipe.spec.pipeline.concurrency)
    if stage.is_operation:
        return await run_operation(run, stage, store, result, started)
    settings = resolved_teacher(pipe.spec.pipeline.teacher, stage, options.teacher)
    rt = build_runtime(pipe, stage, settings, options.dry_run, options.settings)
    previous = store.manifest()
    rt.recipe = build_recipe(rt, previous)
    result.changed = list(rt.recipe.changes(previous))
    generators = {mode: registry.GENERATORS[mode](rt, run) for mode in sorted(rt.modes)}
    joined = joined_inputs(pipe, rt, options.dry_run)
    driving = driving_inputs(pipe, stage, options.dry_run)
    with store:
        expected = stage_items(rt, driving_inputs(pipe, stage, options.dry_run), joined)
        scan = scan_existing(store, stage, expected, rt.recipe, retry=teacher_failed)
        done, acc, result.superseded, result.redo = scan.done, scan.acc, scan.superseded, dict(scan.redo)
        if scan.redo:
            options.progress.message(_redo_message(stage.name, scan.redo, result.changed))
        concurrency = min(x for x in (run.concurrency, *(g.max_concurrency for g in generators.values())) if x)
        pending = [0]
        loop = _Loop(rt, store, acc, result, options.progress, generators, scan.salvage)
        # how many new records, for a progress bar (none to show: no need to count the input's lines)
        total = None if isinstance(options.progress, NullProgress) else \
            _estimate_total(pipe, stage, options, len(done), rt.members)
        options.progress.stage_started(stage.name, total, len(done))
        limit_total = bool(options.settings.get("limit_total"))
        if plain_copy(rt, joined, scan.salvage, options.dry_run):  # engine/fused.py: one tight loop
            source = None if stage.inputs else pipe.resolve(stage.source or "")
            upstream = input_store(pipe, stage.inputs[0], options.dry_run) if stage.inputs else None
            run_fused(loop, source, upstream, done, options.limit, limit_total, pending)
            stopped = None
        else:
            taken = _take(stage_items(rt, driving, joined), done, options.limit, result, pending, limit_total)
            stopped = await _drive(loop, taken, joined, concurrency)
        result.pending = pending[0]
        result.stopped = stopped
        result.complete = stopped is None and pending[0] == 0
        # what made the records (the teacher's flow: limits, retries, cache), as of the end of the stage
        rt.teacher_info = next((d for g in generators.values() if (d := g.describe()) is not None), None)
        rt.generator_stats = [s for g in generators.values() if (s := getattr(g, "stats", lambda: None)())]
        finish_stage(pipe, stage, store, rt, acc, result, options, started, extra=run.executor.report(stage.name))
    options.progress.stage_finished(stage.name, result)
    return result


def run_stage(stage: StageSpec | str, pipeline: Pipeline | str | Path = "stages.yaml", *, limit: int | None = None,
              fresh: bool = False, dry_run: bool = False, concurrency: int | None = None,
              options: RunOptions | None = None) -> StageResult:
    """Library entry point: run one stage by spec or name."""
    pipe = pipeline if isinstance(pipeline, Pipeline) else load_pipeline(pipeline)
    spec = pipe.stage(stage) if isinstance(stage, str) else stage
    if options is None:
        options = RunOptions(limit=limit, fresh=fresh, dry_run=dry_run, concurrency=concurrency)

    async def main() -> StageResult:
        services = Services()
        try:
            return await arun_stage(pipe, spec, options, services)
        finally:
            await services.aclose()

    return asyncio.run(main())


__all__ = ["StageResult", "run_stage", "arun_stage", "StageError"]
