"""Run every stage in order, and report each stage's state (done, partial, stale)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pocketguide.engine.inputs import input_store, store_root
from pocketguide.engine.loader import Pipeline, load_pipeline
from pocketguide.engine.manifest import input_hashes
from pocketguide.engine.runner import StageResult, arun_stage
from pocketguide.engine.session import RunOptions, Services
from pocketguide.engine.store import StageStore


@dataclass
class PipelineResult:
    stages: list[StageResult] = field(default_factory=list)
    stopped: str | None = None

    @property
    def ok(self) -> bool:
        return self.stopped is None


def run_pipeline(path: str | Path | Pipeline = "stages.yaml", *, limit: int | None = None, dry_run: bool = False,
                 options: RunOptions | None = None, only: list[str] | None = None) -> PipelineResult:
    """Each stage in order; `limit` caps the first stage's records (in total, so a rerun resumes)."""
    pipe = path if isinstance(path, Pipeline) else load_pipeline(path)
    base = options or RunOptions(limit=limit, dry_run=dry_run)

    async def main() -> PipelineResult:
        out = PipelineResult()
        services = Services()
        try:
            for i, stage in enumerate(pipe.stages):
                if only and stage.name not in only:
                    continue
                opts = RunOptions(**{**base.__dict__})
                opts.limit = base.limit if i == 0 else None
                opts.settings = {**base.settings, "limit_total": i == 0}
                res = await arun_stage(pipe, stage, opts, services)
                out.stages.append(res)
                if res.stopped:
                    out.stopped = f"{stage.name}: {res.stopped}"
                    break
        finally:
            await services.aclose()
        return out

    return asyncio.run(main())


@dataclass
class StageState:
    name: str
    kind: str  # per-record mode or op name
    ran: bool
    complete: bool
    accepted: int
    rejected: int
    stale: bool
    stale_inputs: list[str]
    dry_run: bool
    output_dir: Path
    finished_at: str | None
    missing: list[str] = field(default_factory=list)  # facet values upstream has and this stage lost


def _accepted_values(stats: dict[str, Any] | None, facet: str) -> set[str] | None:
    by_value = ((stats or {}).get("facets") or {}).get(facet)
    return None if by_value is None else {v for v, c in by_value.items() if (c or {}).get("accepted")}


def missing_values(pipe: Pipeline, stage: Any, stats: dict[str, dict[str, Any] | None]) -> list[str]:
    """Facet values this stage lost: accepted by the farthest ancestor (along first inputs) that counts the
    same facet, but by no record here — e.g. a payload type the plan asked for that never reached the
    dataset. An operation may add its own in stats.json → coverage ({facet, missing: {where: [values]}})."""
    out = []
    for facet in ((stats.get(stage.name) or {}).get("facets") or {}):
        here, ref, name = _accepted_values(stats.get(stage.name), facet), None, stage.name
        while pipe.stage(name).inputs:
            name = pipe.stage(name).inputs[0]
            ref = _accepted_values(stats.get(name), facet) or ref
        lost = sorted((ref or set()) - (here or set()))
        if lost:
            out.append(f"{facet}: {', '.join(lost)}")
    cov = (stats.get(stage.name) or {}).get("coverage") or {}
    for where, values in (cov.get("missing") or {}).items():
        if values:
            out.append(f"{where} {cov.get('facet', '')}: {', '.join(values)}".replace("  ", " "))
    return out


def pipeline_status(pipe: Pipeline, dry_run: bool = False) -> list[StageState]:
    states = []
    stale_upstream: set[str] = set()
    stats = {s.name: StageStore(store_root(pipe, dry_run), s.name).stats() for s in pipe.stages}
    for stage in pipe.stages:
        store = StageStore(store_root(pipe, dry_run), stage.name)
        m: dict[str, Any] | None = store.manifest()
        kind = f"op:{stage.op}" if stage.op else (stage.mode or ("route" if stage.route else "variants"))
        if m is None:
            counts = _count_lines(store)
            states.append(StageState(stage.name, kind, bool(sum(counts)), False, counts[0], counts[1],
                                     False, [], dry_run, store.dir, None))
            continue
        current = input_hashes(pipe, stage, lambda n: input_store(pipe, n, dry_run))
        changed = [k for k, v in current.items() if (m.get("inputs") or {}).get(k) != v]
        changed += [s for s in stage.inputs if s in stale_upstream and s not in changed]
        stale = bool(changed)
        if stale:
            stale_upstream.add(stage.name)
        counts = m.get("counts") or {}
        states.append(StageState(stage.name, kind, True, bool(m.get("complete")) and not stale,
                                 counts.get("accepted", 0), counts.get("rejected", 0), stale, changed,
                                 bool(m.get("dry_run")), store.dir, m.get("finished_at"),
                                 missing_values(pipe, stage, stats)))
    return states


def _count_lines(store: StageStore) -> tuple[int, int]:
    def n(p: Path) -> int:
        if not p.exists():
            return 0
        with open(p, "rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))

    return n(store.records_path), n(store.rejected_path)
