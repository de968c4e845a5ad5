"""The record shape, stable ids and dotted-path lookups."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timezone
from typing import Any

ACCEPTED = "accepted"
REJECTED = "rejected"

_MISSING = object()


_last_ms = [0, ""]


def now_iso() -> str:
    """UTC timestamp to the millisecond; formatted once per millisecond (hot path of copy stages)."""
    ms = int(time.time() * 1000)
    if ms != _last_ms[0]:
        _last_ms[0], _last_ms[1] = ms, datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(
            timespec="milliseconds")
    return _last_ms[1]


def child_id(parent_id: str, variant: dict[str, Any], prefix: str) -> str:
    """Stable id of a fan-out child: same parent and variant → same id, on any machine."""
    canon = json.dumps({"parent": parent_id, "variant": variant}, sort_keys=True, ensure_ascii=True)
    return f"{prefix}_{hashlib.sha256(canon.encode()).hexdigest()[:12]}"


def lookup(obj: Any, path: str, default: Any = _MISSING) -> Any:
    """Follow `a.b.0.c` through dicts and lists; raise KeyError (or return default) when absent."""
    cur = obj
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.lstrip("-").isdigit() and -len(cur) <= int(part) < len(cur):
            cur = cur[int(part)]
        else:
            if default is _MISSING:
                raise KeyError(path)
            return default
    return cur


def new_record(
    *,
    id: str,
    stage: str,
    parent_ids: list[str],
    ancestors: list[str],
    data: dict[str, Any],
    variant: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A record as it travels through the runner; the store writes it as one JSON line."""
    return {
        "id": id,
        "stage": stage,
        "status": None,
        "reasons": [],
        "parent_ids": parent_ids,
        "ancestors": ancestors,
        "variant": variant,
        "data": data,
        "mode": None,
        "prompt": None,
        "raw": None,
        "parsed": None,
        "validation": None,
        "gates": [],
        "teacher": None,
        "error": None,
        "created_at": now_iso(),
    }
