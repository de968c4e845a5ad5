"""The resume scan: which stored records are still current, which are redone and why, and which can be
re-judged from their stored raw output instead of asking the teacher again.

A stored record is current when its id is still produced, its input fingerprint matches, it is not a
teacher failure to retry, and its gen_fp and judge_fp match the stage's recipe (engine/recipe.py).
Every other record is set aside to superseded.jsonl (appended and synced before the record leaves
records.jsonl, so a kill at any moment loses nothing) and redone; one whose only change is how it is
judged keeps its raw output: it is re-parsed, re-validated and re-gated with no teacher call. A kill
mid-way is safe: the rerun finds the set-aside versions in superseded.jsonl and re-judges from them.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from pocketguide.engine.errors import StoreError
from pocketguide.engine.records import now_iso
from pocketguide.engine.recipe import Recipe
from pocketguide.engine.spec import StageSpec
from pocketguide.engine.stats import StatsAccumulator
from pocketguide.engine.store import (
    RECORDS,
    REJECTED,
    SUPERSEDED,
    StageStore,
    atomic_write_bytes,
    dumps_line,
    iter_jsonl,
    loads,
)

# why a stored record is redone
GONE = "no longer produced"  # an input gone, a variant dropped: set aside, not redone
INPUTS = "inputs changed"
RETRY = "teacher error"  # an outage, a rate limit, a bad key since fixed: asked again
GEN = "regenerate"  # something that decided its text changed (template, vars, teacher, sampling, decoding…)
JUDGE = "re-judge"  # only how its text is judged changed (parser, schema, gates…): no teacher call
LEGACY = "regenerate (made before record fingerprints)"

SalvageKey = tuple[str, str, str]  # (id, input fp, gen fp)


def why_redo(record: dict[str, Any], current_fp: str | None, recipe: Recipe,
             retry: Callable[[dict[str, Any]], bool] | None = None) -> str | None:
    """Why a stored record must be redone, or None when it is current."""
    if current_fp is None:
        return GONE
    if record.get("input_fp") != current_fp:
        return INPUTS
    if retry is not None and record.get("status") != "accepted" and retry(record):
        return RETRY
    gen_fp = record.get("gen_fp")
    if gen_fp is None:
        return LEGACY
    if gen_fp != recipe.gen_of(record):
        return GEN
    judge_fp = record.get("judge_fp")
    if judge_fp is not None and judge_fp != recipe.judge_of(record):
        return JUDGE
    return None


def teacher_failed(record: dict[str, Any]) -> bool:
    """A resume redoes records a teacher call failed on (outage, rate limit, bad key since fixed); the old
    lines go to superseded.jsonl, and answers already paid for come back from the response cache."""
    return any(str(r).startswith("teacher_error:") for r in record.get("reasons") or [])


def reusable(record: dict[str, Any]) -> bool:
    """A record whose generated text can be judged again: it was generated and judged (not a dry run)."""
    return record.get("judge_fp") is not None and record.get("raw") is not None


@dataclass
class ResumeScan:
    done: dict[str, str] = field(default_factory=dict)  # ids kept as they are → input fingerprint
    acc: StatsAccumulator | None = None  # stats of the kept records
    redo: Counter = field(default_factory=Counter)  # why records were set aside → how many
    salvage: dict[SalvageKey, dict[str, Any]] = field(default_factory=dict)  # raw outputs to re-judge

    @property
    def superseded(self) -> int:
        return sum(self.redo.values())


def scan_existing(store: StageStore, stage: StageSpec, items: Iterable[Any], recipe: Recipe,
                  retry: Callable[[dict[str, Any]], bool] | None = None) -> ResumeScan:
    """Classify what is stored against the current items and recipe; set aside what is redone."""
    scan = ResumeScan(acc=StatsAccumulator(stage.facets))
    history = store.dir / SUPERSEDED
    if not _has_lines(store) and not history.exists():
        return scan
    current = {it.id: it.fp for it in items}
    aside: dict[str, str] = {}
    for rec in store.all_records():
        why = why_redo(rec, current.get(rec["id"]), recipe, retry)
        if why is None:
            scan.done[rec["id"]] = rec["input_fp"]
        else:
            aside[rec["id"]] = why
    rejudge = {rid for rid, why in aside.items() if why == JUDGE}
    todo = {rid for rid in current if rid not in scan.done and rid not in rejudge}
    if todo and history.exists():  # a kill mid-way through a re-judge: its raw outputs wait there
        _salvage_history(history, todo, current, scan.salvage)
    if aside:
        for rec in set_aside(store, set(aside), rejudge):
            if reusable(rec):
                scan.salvage[(rec["id"], rec["input_fp"], rec["gen_fp"])] = rec
        scan.redo = Counter(aside.values())
    for rec in store.all_records():
        scan.acc.add(rec)
    return scan


def _has_lines(store: StageStore) -> bool:
    return any(p.exists() and p.stat().st_size > 0 for p in (store.records_path, store.rejected_path))


def _salvage_history(path: Any, ids: set[str], current: dict[str, str],
                     out: dict[SalvageKey, dict[str, Any]]) -> None:
    """Set-aside versions of records still to do whose inputs still match: the latest per gen fp wins."""
    for rec in iter_jsonl(path):
        rid = rec.get("id")
        if rid in ids and rec.get("input_fp") == current[rid] and reusable(rec) and rec.get("gen_fp"):
            rec.pop("superseded_at", None)
            out[(rid, rec["input_fp"], rec["gen_fp"])] = rec


def set_aside(store: StageStore, ids: set[str], keep: set[str]) -> list[dict[str, Any]]:
    """Move the records `ids` out of records.jsonl / rejected.jsonl into superseded.jsonl (appended and
    synced first, so a kill between the two steps loses nothing); returns the moved records in `keep`."""
    moved = bytearray()
    kept: list[dict[str, Any]] = []
    rest: dict[str, bytes] = {}
    stamp = now_iso()
    for name in (RECORDS, REJECTED):
        path = store.dir / name
        lines = bytearray()
        if path.exists():
            with open(path, "rb") as fh:
                for line in fh:
                    if not line.endswith(b"\n"):
                        break  # a torn tail (repaired when the store opened)
                    rec = _parsed(line)
                    rid = rec.get("id") if rec is not None else None
                    if rid not in ids:
                        lines += line
                        continue
                    if rid in keep:
                        kept.append(dict(rec))
                    rec["superseded_at"] = stamp
                    moved += dumps_line(rec)
        rest[name] = bytes(lines)
    try:
        with open(store.dir / SUPERSEDED, "ab") as fh:
            fh.write(moved)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise StoreError(f"cannot write {store.dir / SUPERSEDED}: {exc}; nothing was moved") from exc
    for name, data in rest.items():
        atomic_write_bytes(store.dir / name, data)
    store.reopen()
    return kept


def _parsed(line: bytes) -> dict[str, Any] | None:
    try:
        rec = loads(line)
    except ValueError:
        return None  # an invalid line stays where it is (readers skip it)
    return rec if isinstance(rec, dict) else None
