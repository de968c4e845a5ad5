"""What `pocketguide status` says per stage: done, partial or stale — and when stale, why, for how many
records, and which stages downstream become stale with it. Nothing here writes; it runs the same resume
classification the runner does (engine/resume.py) against the stage's recipe (engine/recipe.py)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pocketguide.engine.coverage import missing_values
from pocketguide.engine.inputs import input_store, store_root
from pocketguide.engine.items import driving_inputs, joined_inputs, stage_items
from pocketguide.engine.loader import Pipeline
from pocketguide.engine.manifest import input_hashes
from pocketguide.engine.operations import op_changes
from pocketguide.engine.recipe import FILES_READ, GEN, JUDGE, STATS, build_recipe
from pocketguide.engine.resume import INPUTS, REGENERATE, REJUDGE, teacher_failed, why_redo
from pocketguide.engine.runtime import build_runtime
from pocketguide.engine.session import resolved_teacher
from pocketguide.engine.spec import StageSpec
from pocketguide.engine.store import StageStore
from pocketguide.engine.teacher_spec import TeacherSettings


@dataclass
class StageState:
    name: str
    kind: str  # per-record mode or op name
    ran: bool
    complete: bool
    accepted: int
    rejected: int
    stale: bool
    stale_inputs: list[str]  # input stages whose change makes this one stale
    dry_run: bool
    output_dir: Path
    finished_at: str | None
    reasons: list[str] = field(default_factory=list)  # "template draft.j2 changed: 120 records", …
    redo: dict[str, int] = field(default_factory=dict)  # what a rerun does → records (regenerate, re-judge, …)
    pending: int = 0  # records the inputs call for that were never made (a --limit, a stop)
    changes: dict[str, dict[str, Any]] = field(default_factory=dict)  # recipe parts changed since the last run
    records_by_change: dict[str, int] = field(default_factory=dict)  # changed part → records it makes stale
    upstream: list[str] = field(default_factory=list)  # stale stages this one reads
    downstream: list[str] = field(default_factory=list)  # stages that read this one (stale with it)
    history: list[dict[str, Any]] = field(default_factory=list)  # the manifest's last runs
    missing: list[str] = field(default_factory=list)  # facet values upstream has and this stage lost (coverage.py)


def pipeline_status(pipe: Pipeline, dry_run: bool = False, teacher: TeacherSettings | None = None,
                    settings: dict[str, Any] | None = None) -> list[StageState]:
    """Every stage's state, as a plain `run-all` (with these teacher overrides and run settings) would find
    it. A stage reading a stale stage is stale too: it redoes the records whose inputs change."""
    states: list[StageState] = []
    stale: set[str] = set()
    for stage in pipe.stages:
        st = stage_state(pipe, stage, dry_run, teacher, settings or {})
        ups = [s for s in stage.inputs if s in stale]
        if ups and st.ran:
            st.upstream = ups
            st.stale_inputs += [s for s in ups if s not in st.stale_inputs]
            st.reasons.append(f"upstream {', '.join(ups)} stale: redoes the records whose inputs change")
            st.stale, st.complete = True, False
        if st.stale:
            stale.add(stage.name)
        states.append(st)
    stats = {s.name: StageStore(store_root(pipe, dry_run), s.name).stats() for s in pipe.stages}
    for st, stage in zip(states, pipe.stages):
        if st.stale:
            st.downstream = pipe.downstream(st.name)
        st.missing = missing_values(pipe, stage, stats)
    return states


def stage_state(pipe: Pipeline, stage: StageSpec, dry_run: bool = False, teacher: TeacherSettings | None = None,
                settings: dict[str, Any] | None = None) -> StageState:
    store = StageStore(store_root(pipe, dry_run), stage.name)
    m: dict[str, Any] | None = store.manifest()
    kind = f"op:{stage.op}" if stage.op else (stage.mode or ("route" if stage.route else "variants"))
    counts = _count_lines(store)
    st = StageState(stage.name, kind, bool(m) or bool(sum(counts)), False, counts[0], counts[1], False, [],
                    bool((m or {}).get("dry_run", dry_run)), store.dir, (m or {}).get("finished_at"),
                    history=list((m or {}).get("history") or []))
    if not st.ran:
        return st
    if stage.is_operation:
        _op_state(pipe, stage, m, dry_run, st)
    else:
        _record_state(pipe, stage, store, m, dry_run, teacher, settings or {}, st)
    st.complete = bool(m and m.get("complete")) and not st.stale and st.pending == 0
    return st


def _op_state(pipe: Pipeline, stage: StageSpec, m: dict[str, Any] | None, dry_run: bool, st: StageState) -> None:
    if m is None or not m.get("complete"):
        return  # partial: it did not finish, a rerun runs it whole
    changes = op_changes(pipe, stage, m, m.get("limit"), dry_run)  # status keeps the limit it last ran under
    if changes is None:
        st.stale, st.reasons = True, ["changed since its last run (inputs, options or files read)"]
        return
    st.changes = changes
    st.stale = bool(changes)
    st.reasons = [f"{label} {c['kind']}" for label, c in changes.items()]
    st.stale_inputs = [label.split(" ", 1)[1] for label in changes if label.startswith("input ")]
    if changes:
        st.redo = {"rerun whole": st.accepted + st.rejected}


def _record_state(pipe: Pipeline, stage: StageSpec, store: StageStore, m: dict[str, Any] | None, dry_run: bool,
                  teacher: TeacherSettings | None, settings: dict[str, Any], st: StageState) -> None:
    upstream = [input_store(pipe, name, dry_run) for name in stage.inputs]
    if any(not s.records_path.exists() for s in upstream):
        return  # its inputs are gone: `run` says what to run first
    rt = build_runtime(pipe, stage, resolved_teacher(pipe.spec.pipeline.teacher, stage, teacher), dry_run, settings)
    recipe = build_recipe(rt, m)
    changes = recipe.changes(m)
    if FILES_READ in changes:
        before = ((m or {}).get("recipe") or {}).get("files_read") or {}
        changes[FILES_READ]["files"] = [rel for rel, sha in recipe.files_read.items() if before.get(rel) != sha]
    joined = joined_inputs(pipe, rt, dry_run)
    current = {it.id: it.fp for it in stage_items(rt, driving_inputs(pipe, stage, dry_run), joined)}
    removed = {side: [k for k, c in changes.items() if c["side"] == side and c["kind"] == "removed"]
               for side in (GEN, JUDGE)}
    redo: Counter[str] = Counter()
    by_change: Counter[str] = Counter()
    seen: set[str] = set()
    for rec in store.all_records():
        seen.add(rec["id"])
        why = why_redo(rec, current.get(rec["id"]), recipe, teacher_failed)
        if why is None:
            continue
        redo[why] += 1
        if why in (REGENERATE, REJUDGE):
            side = GEN if why == REGENERATE else JUDGE
            labels = recipe.gen_labels(rec) if side == GEN else recipe.judge_labels(rec)
            hits = [label for label in labels if label in changes] + removed[side]
            for label in hits or ["the recipe (changed since these records were made)"]:
                by_change[label] += 1
    st.pending = sum(1 for rid in current if rid not in seen)
    st.changes, st.redo, st.records_by_change = changes, dict(redo), dict(by_change)
    changed_files = [k for k, v in input_hashes(pipe, stage, lambda n: input_store(pipe, n, dry_run)).items()
                     if ((m or {}).get("inputs") or {}).get(k) != v]
    if redo.get(INPUTS):
        st.stale_inputs = [k for k in changed_files if k in stage.inputs]
    st.reasons = _reasons(redo, by_change, changes, changed_files)
    st.stale = bool(redo) or any(c["side"] == STATS for c in changes.values())


def _reasons(redo: Counter, by_change: Counter, changes: dict[str, Any], changed_files: list[str]) -> list[str]:
    out = [f"{label} {changes[label]['kind'] if label in changes else 'changed'}: {_n(n)}"
           for label, n in by_change.most_common()]
    for why, n in sorted(redo.items()):
        if why == INPUTS:
            names = ", ".join(k.removeprefix("source:") for k in changed_files) or "inputs"
            out.append(f"{names} changed: {_n(n)}")
        elif why not in (REGENERATE, REJUDGE):
            out.append(f"{why}: {_n(n)}")
    out += [f"{label} {c['kind']} (stats only: recounted on the next run)" for label, c in changes.items()
            if c["side"] == STATS]
    return out


def _n(n: int) -> str:
    return f"{n} record" + ("" if n == 1 else "s")


def _count_lines(store: StageStore) -> tuple[int, int]:
    def n(p: Path) -> int:
        if not p.exists():
            return 0
        with open(p, "rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))

    return n(store.records_path), n(store.rejected_path)
