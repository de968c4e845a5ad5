"""The response cache: one SQLite file (WAL) per data dir, keyed by what changes a teacher's answer.

The key hashes the endpoint (base URL, or the embedded model file's sha256), the model, the messages,
the generation parameters, response_format, seed and extra_body — never the API key or headers, and
never anything a parser or gate uses, so changing those reuses every answer."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from pocketguide.engine.errors import StoreError
from pocketguide.engine.redact import scrub
from pocketguide.teachers.base import TeacherRequest

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    stage TEXT,
    endpoint TEXT,
    model TEXT,
    created_at REAL,
    response TEXT
);
CREATE INDEX IF NOT EXISTS responses_stage ON responses(stage);
"""


def endpoint_identity(describe: dict[str, Any]) -> str:
    """Which server answers: the embedded model's sha256, else its base URL without credentials."""
    sha = describe.get("sha256") or describe.get("model_sha256")
    if sha:
        return f"sha256:{sha}"
    url = describe.get("base_url") or "https://api.openai.com/v1"
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", "")) or str(describe.get("provider"))


def teacher_identity(teacher: Any) -> str:
    """A teacher's own `cache_identity()` (e.g. the embedded model's weights sha256 and runtime version;
    its file path is left out so a moved file keeps its answers), else `endpoint_identity(describe())`."""
    own = getattr(teacher, "cache_identity", None)
    if callable(own):
        ident = {k: v for k, v in own().items() if k != "model_path"}
        return "teacher:" + json.dumps(ident, sort_keys=True, default=str)
    return endpoint_identity(teacher.describe())


def cache_key(endpoint: str, model: str, request: TeacherRequest, settings_extra_body: dict[str, Any] | None) -> str:
    material = request.cache_material()
    material["model"] = model
    material["extra_body"] = {**(settings_extra_body or {}), **(material.get("extra_body") or {})}
    blob = orjson.dumps({"endpoint": endpoint, "request": material}, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(blob).hexdigest()


class ResponseCache:
    """get/put by key; `stats()` and `clear(stage)` for the CLI. Only successful answers are stored."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.hits = 0
        self.misses = 0
        self.writes = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # autocommit: each put is its own short transaction; WAL lets readers and a writer overlap
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the response cache {self.path}: {exc}; delete the file to start "
                             f"a new cache, or run with --no-cache") from exc

    def get(self, key: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(row[0])

    def put(self, key: str, response: dict[str, Any], *, stage: str | None, endpoint: str, model: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO responses(key, stage, endpoint, model, created_at, response) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (key, stage, endpoint, model, time.time(),
                         scrub(json.dumps(response, ensure_ascii=False))))  # an answer may echo the key
        self.writes += 1

    def stats(self) -> dict[str, Any]:
        q = self.db.execute
        total = q("SELECT COUNT(*), COALESCE(SUM(LENGTH(response)), 0) FROM responses").fetchone()
        by_stage = dict(q("SELECT COALESCE(stage, '-'), COUNT(*) FROM responses GROUP BY stage ORDER BY stage"))
        by_model = dict(q("SELECT model, COUNT(*) FROM responses GROUP BY model ORDER BY model"))
        span = q("SELECT MIN(created_at), MAX(created_at) FROM responses").fetchone()
        return {"path": str(self.path), "entries": total[0], "response_bytes": total[1],
                "file_bytes": _size(self.path), "by_stage": by_stage, "by_model": by_model,
                "oldest": span[0], "newest": span[1]}

    def clear(self, stage: str | None = None) -> int:
        if stage is None:
            n = self.db.execute("DELETE FROM responses").rowcount
        else:
            n = self.db.execute("DELETE FROM responses WHERE stage = ?", (stage,)).rowcount
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return n

    def session_summary(self) -> dict[str, Any]:
        return {"path": str(self.path), "hits": self.hits, "misses": self.misses, "writes": self.writes}

    def close(self) -> None:
        try:
            self.db.close()
        except sqlite3.Error:
            pass


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
