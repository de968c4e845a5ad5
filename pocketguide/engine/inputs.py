"""Where a stage's records come from: a source JSONL file or upstream stages joined by id, and the
fingerprints of what was read (a source line as it is; an upstream record by its content)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import orjson

from pocketguide.engine.errors import StageError
from pocketguide.engine.records import LEAN, expand
from pocketguide.engine.store import BOOKKEEPING, StageStore, scrubbed_line, whole_lines


def store_root(pipe: Any, dry_run: bool) -> Path:
    """Where a run's stage folders live: the data dir, or its dry-run/ folder."""
    return pipe.data_dir / "dry-run" if dry_run else pipe.data_dir


def input_store(pipe: Any, name: str, dry_run: bool) -> StageStore:
    """A dry run reads real upstream output when it exists, else the upstream's dry-run output."""
    real = StageStore(pipe.data_dir, name)
    if dry_run and not real.records_path.exists():
        return StageStore(store_root(pipe, True), name)
    return real


FINGERPRINT = hashlib.blake2b(digest_size=10)  # copied per fingerprint: cheaper than a new one with its arguments


def fingerprint(*parts: bytes) -> str:
    h = FINGERPRINT.copy()
    for p in parts:
        h.update(p)
        h.update(b"\x00")
    return h.hexdigest()


_TAIL = b',"created_at":'
# the bookkeeping values: plain strings (ids, hashes, times), null, or a flat object of those and numbers (timings)
_VALUE = rb'(?:"[^"\\]*"|null|\{[^{}\[\]\\]*\})'
# the line's end when it is only bookkeeping: ,"created_at":…[,"input_fp":…][,"gen_fp":…]…}
_OTHERS = b"|".join(k.encode() for k in BOOKKEEPING if k != "created_at")
_LEAN_KEY = b'"' + LEAN.encode() + b'":'
_TAIL_ONLY = re.compile(_TAIL + _VALUE + rb'(?:,"(?:' + _OTHERS + rb')":' + _VALUE + rb')*}\n?')


def content_fp(line: bytes) -> str:
    """A record line's fingerprint without its bookkeeping tail (created_at, input_fp, gen_fp, judge_fp…):
    a record redone to the same content (a re-judge that flips nothing, a deterministic copy) leaves its
    readers' inputs unchanged. Lines not written that way (older ones) are hashed whole. A lean line
    (engine/records.py) is hashed as the whole line of its record would be, so the form does not matter."""
    if _LEAN_KEY in line:
        obj = orjson.loads(line)
        if type(obj) is dict and LEAN in obj:
            return whole_content_fp(expand(obj))
    cut = line.rfind(_TAIL)
    if cut > 0 and _TAIL_ONLY.fullmatch(line, cut):
        return fingerprint(line[:cut])
    return fingerprint(line)


def whole_content_fp(record: dict[str, Any]) -> str:
    """content_fp of the line the store writes for this whole record (its bookkeeping last)."""
    body = {k: v for k, v in record.items() if k not in BOOKKEEPING}
    line = scrubbed_line(orjson.dumps(body, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS), body)
    return fingerprint(line[:-2])  # `{…,"error":null` (less `}\n`): what content_fp hashes of the line


@dataclass
class Upstream:
    """One input record as the runner sees it: the record, and a hash of its line (content_fp for upstream records)."""

    record: dict[str, Any]
    fp: str
    problem: str | None = None  # set for a malformed source line: the item becomes a rejected record


@dataclass
class Joined:
    """Accepted records of a non-driving input, findable by id or by an ancestor's id."""

    stage: str
    by_id: dict[str, Upstream] = field(default_factory=dict)

    def find(self, record: dict[str, Any]) -> Upstream | None:
        for rid in [record.get("id"), *(record.get("ancestors") or [])]:
            hit = self.by_id.get(rid)  # type: ignore[arg-type]
            if hit is not None:
                return hit
        return None


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                yield n, line


def read_source(path: Path) -> Iterator[Upstream]:
    """Each JSON object line becomes an input record; a bad line becomes a rejection, not a crash."""
    for n, line in iter_lines(path):
        yield source_upstream(n, line, fingerprint(line))


def source_id(value: Any, n: int) -> str:
    """A source line's record id: its `id` as text, else `line_<n>`."""
    return str(value) if value not in (None, "") else f"line_{n:06d}"


def source_upstream(n: int, line: bytes, fp: str) -> Upstream:
    """Line `n` of a source file (fingerprint `fp`) as an input record, or as a problem (not JSON, not an object)."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return Upstream({"id": f"line_{n:06d}", "data": {}, "parsed": None, "raw": line.decode("utf-8", "replace")},
                        fp, problem=f"malformed_input: line {n} is not valid JSON ({exc})")
    if not isinstance(obj, dict):
        return Upstream({"id": f"line_{n:06d}", "data": {}, "parsed": obj, "raw": None}, fp,
                        problem=f"malformed_input: line {n} is not a JSON object")
    rid = source_id(obj.pop("id", None), n)  # the line's own dict, less its id, becomes the fields (no copy)
    return Upstream({"id": rid, "data": obj, "parsed": obj, "raw": None, "ancestors": []}, fp)


def read_stage(store: StageStore) -> Iterator[Upstream]:
    """Accepted records of an upstream stage (whole lines only)."""
    for line in whole_lines(store.records_path):
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if type(obj) is dict and LEAN in obj:
            obj = expand(obj)
            yield Upstream(obj, whole_content_fp(obj))
        else:
            yield Upstream(obj, content_fp(line))


def require_upstream(store: StageStore, stage: str, upstream: str, dry_run: bool) -> None:
    if not store.records_path.exists():
        hint = " (a dry run reads real upstream output if present, else the dry-run output)" if dry_run else ""
        raise StageError(f"stage '{stage}' needs the output of '{upstream}', which has not run yet — "
                         f"run `pocketguide run {upstream}` first{hint}")


def join_index(store: StageStore) -> Joined:
    j = Joined(store.stage)
    for up in read_stage(store):
        j.by_id[up.record["id"]] = up
    return j


def content_digest(store: StageStore) -> str | None:
    """An upstream stage's accepted records by content, in any order: what a whole-dataset stage read."""
    path = store.records_path
    if not path.exists():
        return None
    fps = []
    with open(path, "rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                break
            fps.append(content_fp(line).encode())
    fps.sort()
    return fingerprint(*fps)
