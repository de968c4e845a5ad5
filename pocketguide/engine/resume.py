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
from pathlib import Path
from typing import Any, Callable, Iterable

from pocketguide.engine.errors import StoreError
from pocketguide.engine.recipe import Recipe
from pocketguide.engine.records import now_iso
from pocketguide.engine.spec import StageSpec
from pocketguide.engine.stats import StatsAccumulator
from pocketguide.engine.store import (
    RECORDS,
    REJECTED,
    SUPERSEDED,
    StageStore,
    atomic_write_bytes,
    dumps_line,
    loads,
    whole_lines,
)

# why a stored record is redone
GONE = "no longer produced"  # an input gone, a variant dropped: set aside, not redone
INPUTS = "inputs changed"
RETRY = "teacher error"  # an outage, a rate limit, a bad key since fixed: asked again
REGENERATE = "regenerate"  # something that decided its text changed (template, vars, teacher, sampling, decoding…)
REJUDGE = "re-judge"  # only how its text is judged changed (parser, schema, gates…): no teacher call
LEGACY = "regenerate (made before record fingerprints)"

SalvageKey = tuple[str, str]  # (id, input fp): a record made from these inputs the current way


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
        return REGENERATE
    judge_fp = record.get("judge_fp")
    if judge_fp is not None and judge_fp != recipe.judge_of(record):
        return REJUDGE
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
    # stored lines whose raw output is judged again (bytes, parsed when used: 10,000s of parsed records
    # held at once would cost the garbage collector more than parsing each twice)
    salvage: dict[SalvageKey, bytes] = field(default_factory=dict)

    @property
    def superseded(self) -> int:
        return sum(self.redo.values())


def scan_existing(store: StageStore, stage: StageSpec, items: Iterable[Any], recipe: Recipe,
                  retry: Callable[[dict[str, Any]], bool] | None = None) -> ResumeScan:
    """Classify what is stored against the current items and recipe, in one pass over the stored lines
    (each parsed once); set aside what is redone; count the stats of what stays."""
    scan = ResumeScan(acc=StatsAccumulator(stage.facets))
    history = store.dir / SUPERSEDED
    if not _has_lines(store) and not history.exists():
        return scan
    current = {it.id: it.fp for it in items}
    flags: dict[str, list[bool]] = {}  # file → per whole line: set aside?
    moved: list[bytes] = []  # the set-aside lines, as stored
    rejudge: dict[SalvageKey, bytes] = {}
    for name in (RECORDS, REJECTED):
        flags[name] = marks = []
        for line in whole_lines(store.dir / name):
            rec = _parsed(line)
            why = None if rec is None else why_redo(rec, current.get(rec.get("id")), recipe, retry)
            marks.append(why is not None)
            if rec is None:
                continue  # an invalid line stays where it is (readers skip it)
            if why is None:
                scan.done[rec["id"]] = rec["input_fp"]
                scan.acc.add(rec)
                continue
            scan.redo[why] += 1
            moved.append(line)
            if why == REJUDGE and reusable(rec):
                rejudge[(rec["id"], rec["input_fp"])] = line
    todo = {rid for rid in current if rid not in scan.done} - {rid for rid, _ in rejudge}
    if todo and history.exists():  # a kill mid-way through a re-judge: its raw outputs wait there
        _salvage_history(history, todo, current, recipe, scan.salvage)
    if moved:
        set_aside(store, flags, moved)
        scan.salvage.update(rejudge)
    return scan


def _has_lines(store: StageStore) -> bool:
    return any(p.exists() and p.stat().st_size > 0 for p in (store.records_path, store.rejected_path))


def _salvage_history(path: Path, ids: set[str], current: dict[str, str], recipe: Recipe,
                     out: dict[SalvageKey, bytes]) -> None:
    """Set-aside versions of records still to do, made from the same inputs the way the recipe makes them
    now (a re-judge killed mid-way; a template changed and changed back): the latest wins."""
    for line in whole_lines(path):
        rec = _parsed(line)
        rid = rec.get("id") if rec is not None else None
        if (rid in ids and rec.get("input_fp") == current[rid] and reusable(rec)
                and rec.get("gen_fp") == recipe.gen_of(rec)):
            out[(rid, rec["input_fp"])] = line


def set_aside(store: StageStore, flags: dict[str, list[bool]], lines: list[bytes]) -> None:
    """Append the record `lines` to superseded.jsonl (each stamped with superseded_at) and sync it, then
    rewrite each JSONL file without the lines flagged: a kill between the two steps loses nothing."""
    stamp = b',"superseded_at":' + dumps_line(now_iso()).rstrip(b"\n") + b"}\n"
    moved = b"".join(line[:-2] + stamp if line.endswith(b"}\n") else line for line in lines)
    try:
        with open(store.dir / SUPERSEDED, "ab") as fh:
            fh.write(moved)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise StoreError(f"cannot write {store.dir / SUPERSEDED}: {exc}; nothing was moved") from exc
    for name, marks in flags.items():
        if any(marks):
            kept = [line for line, out in zip(whole_lines(store.dir / name), marks) if not out]
            atomic_write_bytes(store.dir / name, b"".join(kept))
    store.reopen()


def _parsed(line: bytes) -> dict[str, Any] | None:
    try:
        rec = loads(line)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) and isinstance(rec.get("id"), str) else None
