"""The one artifact writer and reader: append-only JSONL, torn-line repair, atomic JSON."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import orjson

from pocketguide.engine import redact
from pocketguide.engine.errors import StoreError
from pocketguide.engine.records import BOOKKEEPING, LEAN, expand
from pocketguide.engine.writeback import WriteBack

RECORDS = "records.jsonl"
REJECTED = "rejected.jsonl"
SUPERSEDED = "superseded.jsonl"
STATS = "stats.json"
MANIFEST = "manifest.json"
# what lives directly under data_dir besides the stage folders: the response cache (and SQLite's side
# files), dry runs, exports, reports, gens exports, downloaded base models. A stage cannot take these names.
RESERVED_NAMES = ("cache.sqlite", "cache.sqlite-wal", "cache.sqlite-shm", "cache.sqlite-journal", "dry-run",
                  "exports", "report", "reports", "gens", "_models")  # report: `pocketguide report`'s page
_MOVED_ASIDE = re.compile(r"\.old-\d{8}-\d{6}(?:-\d+)?$")  # what --fresh renames a stage folder to
MAX_STAGE_NAME = 100


def stage_name_problem(name: str) -> str | None:
    """Why `name` cannot be a stage folder under data_dir, or None."""
    if name.casefold() in {r.casefold() for r in RESERVED_NAMES}:
        return f"'{name}' is a name the store uses under data_dir ({', '.join(RESERVED_NAMES)}) — rename the stage"
    if _MOVED_ASIDE.search(name):
        return f"'{name}' looks like a folder --fresh sets aside (<stage>.old-<stamp>) — rename the stage"
    if len(name) > MAX_STAGE_NAME:
        return f"the name is {len(name)} characters long; at most {MAX_STAGE_NAME} — shorten it"
    return None


class UnstorableValue(ValueError):
    """A record holds a value no line could carry and be read back (nested past the readers' limit,
    a number beyond 1e308); the runner keeps the record without it."""


def dumps_line(obj: Any) -> bytes:
    """One JSON line, with every form of every registered secret removed (engine/redact.py)."""
    return scrubbed_line(_dumps_line(obj), obj)


def scrubbed_line(line: bytes, obj: Any) -> bytes:
    """`line` (the JSON line of `obj`) with every form of every registered secret removed."""
    if not redact.active():
        return line
    clean = redact.scrub_bytes(line)
    if clean is line or clean == line:
        return line
    try:  # a secret that looked like part of a number would break the line: scrub the strings instead
        orjson.loads(clean)
        return clean
    except orjson.JSONDecodeError:
        return _dumps_line(redact.scrub_obj(obj))


def _dumps_line(obj: Any) -> bytes:
    """One JSON line. orjson for speed; what it cannot encode (lone surrogates, integers past 64 bits,
    nesting past 255) goes through json, and that line must read back with orjson (the reader) or
    UnstorableValue is raised: a line written but skipped on reading would be redone on every resume."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS)
    except TypeError:
        pass
    try:
        text = json.dumps(obj, ensure_ascii=False, default=str, allow_nan=False)
        # a lone surrogate (half of a UTF-16 pair) is no valid UTF-8 and orjson refuses its \ud800 escape:
        # it becomes U+FFFD, so the line reads back instead of being skipped as corrupt on resume
        line = (text.encode("utf-16", "surrogatepass").decode("utf-16", "replace") + "\n").encode()
        orjson.loads(line)
    except (ValueError, RecursionError) as exc:
        raise UnstorableValue(f"the record cannot be written as a JSON line: {str(exc)[:200]}") from None
    return line


def loads(line: bytes | str) -> Any:
    """One stored line as the record it holds (a lean line expanded, engine/records.py)."""
    obj = orjson.loads(line)
    return expand(obj) if type(obj) is dict and LEAN in obj else obj


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Temp file in the same folder, flush + fsync, os.replace: a reader sees old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """`obj` as indented JSON, written atomically, every registered secret removed."""
    if redact.active():
        obj = redact.scrub_obj(obj)
    text = json.dumps(obj, indent=2, ensure_ascii=False, default=str)
    atomic_write_bytes(path, (text + "\n").encode("utf-8", "replace"))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read {path}: {exc}; delete it to let the stage rebuild it") from exc


def repair_torn_tail(path: Path) -> int:
    """Drop a last line that a crash cut short (no newline, or not valid JSON). Returns bytes dropped."""
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as fh:
        # find the start of the last line
        block = min(size, 1 << 16)
        fh.seek(size - block)
        tail = fh.read(block)
        keep = size
        if not tail.endswith(b"\n"):
            nl = tail.rfind(b"\n")
            while nl < 0 and block < size:  # a very long torn line
                block = min(size, block * 4)
                fh.seek(size - block)
                tail = fh.read(block)
                nl = tail.rfind(b"\n")
            keep = (size - block + nl + 1) if nl >= 0 else 0
        else:
            prev = tail.rfind(b"\n", 0, len(tail) - 1)
            last = tail[prev + 1:]
            if prev >= 0 or block == size:
                try:
                    orjson.loads(last)
                except orjson.JSONDecodeError:
                    keep = size - len(last)
        if keep < size:
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
        return size - keep


def whole_lines(path: Path) -> Iterator[bytes]:
    """Every whole line of a JSONL file, as bytes; a torn tail is not a record (repair happens before
    appending). A missing file has no lines."""
    if not path.exists():
        return
    with open(path, "rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                return
            yield line


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Whole, valid lines only; a torn last line is skipped (repair happens before appending)."""
    for line in whole_lines(path):
        try:
            yield loads(line)
        except orjson.JSONDecodeError:
            continue


class StageStore:
    """One stage's folder: records.jsonl, rejected.jsonl, stats.json, manifest.json, extra files."""

    def __init__(self, root: Path, stage: str):
        self.stage = stage
        self.dir = root / stage
        self._fds: dict[str, int] = {}
        self._buffers: dict[str, bytearray] = {RECORDS: bytearray(), REJECTED: bytearray()}
        self._lock_fd: int | None = None
        self._back = WriteBack(f"store-{stage}")  # running sha256s and syncs ahead, on a background thread

    # paths -----------------------------------------------------------------
    @property
    def records_path(self) -> Path:
        return self.dir / RECORDS

    @property
    def rejected_path(self) -> Path:
        return self.dir / REJECTED

    @property
    def manifest_path(self) -> Path:
        return self.dir / MANIFEST

    @property
    def stats_path(self) -> Path:
        return self.dir / STATS

    def manifest(self) -> dict[str, Any] | None:
        return read_json(self.manifest_path)

    def stats(self) -> dict[str, Any] | None:
        return read_json(self.stats_path)

    # reading ---------------------------------------------------------------
    def accepted(self) -> Iterator[dict[str, Any]]:
        return iter_jsonl(self.records_path)

    def rejected(self) -> Iterator[dict[str, Any]]:
        return iter_jsonl(self.rejected_path)

    def all_records(self) -> Iterator[dict[str, Any]]:
        yield from self.accepted()
        yield from self.rejected()

    def find(self, record_id: str) -> dict[str, Any] | None:
        for rec in self.all_records():
            if rec.get("id") == record_id:
                return rec
        return None

    # writing ---------------------------------------------------------------
    def open(self) -> None:
        """Lock the stage folder, repair torn tails, open both JSONL files for appending."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.dir / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise StoreError(f"stage '{self.stage}' is being written by another process; wait for it "
                             f"or stop it ({self.dir / '.lock'})") from exc
        for name in (RECORDS, REJECTED):
            repair_torn_tail(self.dir / name)
            self._fds[name] = os.open(self.dir / name, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
            self._back.track(name, self._fds[name])  # an empty file is summed as it is written

    def append(self, record: dict[str, Any], buffered: bool = False) -> None:
        """One record as one whole line, to records.jsonl or rejected.jsonl.

        Unbuffered (the default, and always for records that cost a teacher call): written with one
        os.write before returning, so a SIGKILL right after loses nothing. `buffered=True` is for free
        records (copy mode): whole lines are batched up to 256 KB; a crash loses only lines that are
        redone for free on resume."""
        name = RECORDS if record.get("status") == "accepted" else REJECTED
        for key in BOOKKEEPING:
            if key in record:
                record[key] = record.pop(key)
        line = dumps_line(record)
        buf = self._buffers[name]
        if buffered:
            buf += line
            if len(buf) >= 1 << 18:
                self._flush(name)
            return
        if buf:
            self._flush(name)
        self._write_all(self._fds[name], line)
        self._back.written(name, line)

    def append_lines(self, lines: bytes, accepted: bool = True) -> None:
        """Whole lines already encoded (engine/fused.py), batched like `append(..., buffered=True)`."""
        name = RECORDS if accepted else REJECTED
        buf = self._buffers[name]
        buf += lines
        if len(buf) >= 1 << 18:
            self._flush(name)

    @staticmethod
    def _write_all(fd: int, data: bytes | bytearray) -> None:
        view = memoryview(data)
        while view:  # short writes are rare but legal
            view = view[os.write(fd, view):]

    def _flush(self, name: str) -> None:
        buf = self._buffers[name]
        if buf:
            fd = self._fds[name]
            self._write_all(fd, buf)
            self._back.written(name, bytes(buf), sync_fd=fd)
            buf.clear()

    def sha256(self, name: str) -> str | None:
        """The sha256 of one of the JSONL files as it is now: summed while this store wrote all of it (the same
        file, as long as it counted), else read from disk (file_sha256)."""
        self.flush()
        self._back.settle()
        fd = self._fds.get(name)
        summed = self._back.sum_of(name, self.dir / name, fd) if fd is not None else None
        return summed or file_sha256(self.dir / name)

    def flush(self) -> None:
        for name in self._buffers:
            if name in self._fds:
                self._flush(name)

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.dir / name, obj)

    def write_bytes(self, name: str, data: bytes) -> None:
        atomic_write_bytes(self.dir / name, data)

    def reopen(self) -> None:
        """After the JSONL files were replaced (records set aside): append to the new files, keep the lock."""
        self.flush()
        self._back.settle()
        self._back.forget_sums()  # other files now: read from disk when asked
        for name, fd in list(self._fds.items()):
            os.close(fd)
            self._fds[name] = os.open(self.dir / name, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)

    def close(self) -> None:
        self.flush()
        self._back.close()
        for fd in self._fds.values():
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self._fds.clear()
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> "StageStore":
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def move_aside(self) -> Path | None:
        """--fresh: keep the old output beside the new one, never delete it silently."""
        if not self.dir.exists():
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.dir.with_name(f"{self.dir.name}.old-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.dir.with_name(f"{self.dir.name}.old-{stamp}-{n}")
        shutil.move(str(self.dir), str(target))
        return target


def file_sha256(path: Path) -> str | None:
    if not path.exists():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
