"""A stage store's background thread: the running sha256 of each JSONL file, and syncs ahead of close.

The store (engine/store.py) appends whole lines with os.write and tells this object what it wrote. Two
things happen here, in order, on one thread (the GIL released while it hashes or syncs): what was written is
added to the file's running sha256, a few MB at a time (each hand-over to the thread costs a GIL switch), so
the manifest needs no second pass over the file; and every SYNC_AHEAD bytes the file is synced (fdatasync),
so the fsync on close waits for the last few MB only, not the whole stage's output.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

SYNC_AHEAD = 8 << 20  # bytes appended between background syncs of a stage's JSONL files
SUM_AHEAD = 4 << 20  # bytes written between hand-overs to the running sha256s
_datasync = getattr(os, "fdatasync", os.fsync)  # the data, not the timestamps (macOS has fsync only)


def _update_sums(chunks: list[tuple[Any, bytes]]) -> None:
    for running, data in chunks:
        running.update(data)


class WriteBack:
    """Running sums and syncs ahead for the files of one stage store (named like records.jsonl)."""

    def __init__(self, thread_name: str):
        self._thread_name = thread_name[:15]
        self._worker: ThreadPoolExecutor | None = None  # started on the first hand-over
        self._last: Future | None = None
        self._syncing: Future | None = None
        self._unsynced = 0  # bytes written since the last sync ahead
        self._sums: dict[str, list[Any] | None] = {}  # file → [running sha256, bytes summed], or None
        self._to_sum: list[tuple[Any, bytes]] = []  # written, not yet handed to the thread
        self._to_sum_bytes = 0

    def track(self, name: str, fd: int) -> None:
        """A file just opened for appending: an empty one is summed as it is written; any other is read from
        disk when its sum is asked for."""
        self._sums[name] = [hashlib.sha256(), 0] if os.fstat(fd).st_size == 0 else None

    def forget_sums(self) -> None:
        """The files were replaced (records set aside): their sums are read from disk from now on."""
        self._sums = dict.fromkeys(self._sums)

    def written(self, name: str, data: bytes, sync_fd: int | None = None) -> None:
        """`data` was just appended to `name`: add it to the running sum; with `sync_fd`, count it toward the
        next sync ahead of that file."""
        running = self._sums.get(name)
        if running is not None:
            running[1] += len(data)
            self._to_sum.append((running[0], data))
            self._to_sum_bytes += len(data)
            if self._to_sum_bytes >= SUM_AHEAD:
                self._hand_sums()
        if sync_fd is not None:
            self._unsynced += len(data)
            if self._unsynced >= SYNC_AHEAD:
                self._sync_ahead(sync_fd)

    def sum_of(self, name: str, path: Path, fd: int) -> str | None:
        """The sha256 of `name` as summed while it was written, when `path` is still that file (same inode, the
        size summed) and nothing else wrote to it; else None (read it from disk). Call `settle` first."""
        running = self._sums.get(name)
        if running is None:
            return None
        try:
            on_disk, written = os.stat(path), os.fstat(fd)
        except OSError:
            return None
        if (on_disk.st_ino, on_disk.st_dev, on_disk.st_size) != (written.st_ino, written.st_dev, running[1]):
            return None
        return running[0].hexdigest()

    def settle(self) -> None:
        """Wait for the thread's work (before a sum is read or a file closed); a failed sync is raised here."""
        self._hand_sums()
        last, syncing, self._last, self._syncing = self._last, self._syncing, None, None
        if last is not None:
            last.result()
        if syncing is not None:
            syncing.result()

    def close(self) -> None:
        """Settle, then stop the thread."""
        try:
            self.settle()
        finally:
            if self._worker is not None:
                self._worker.shutdown()
                self._worker = None

    def _background(self, fn: Any, *args: Any) -> Future:
        """Run fn(*args) on the one background thread, in the order submitted."""
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix=self._thread_name)
        self._last = self._worker.submit(fn, *args)
        return self._last

    def _hand_sums(self) -> None:
        if self._to_sum:
            chunks, self._to_sum, self._to_sum_bytes = self._to_sum, [], 0
            self._background(_update_sums, chunks)

    def _sync_ahead(self, fd: int) -> None:
        """Start a sync of `fd` in the background; one at a time (while one runs, the next waits for more bytes)."""
        if self._syncing is not None:
            if not self._syncing.done():
                return
            self._syncing.result()  # a sync that failed (an I/O error) stops the stage here, not silently
        self._unsynced = 0
        self._syncing = self._background(_datasync, fd)
