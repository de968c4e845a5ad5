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


# --- the lean line -----------------------------------------------------------------------------------
# A plain copy stage (engine/fused.py) writes each record without the fields that hold their default value and
# with its text once: `"lean": [...]` marks such a line and names the fields (prompt, parsed) equal to `raw`.
# A copy of one source field (a template of `{{ source.x }}` alone) leaves `raw` out too: `"raw_from": "x"` says
# it is the line's `data.x`, so the text is written once, not twice.
# Every reader goes through `expand` (store.iter_jsonl, inputs.read_stage, the resume scan), so it sees the
# whole record; lines without the mark (every other stage, older files) are read as they are.
LEAN = "lean"
RAW_FROM = "raw_from"
FIELD_DEFAULTS: dict[str, Any] = {"reasons": [], "parent_ids": [], "ancestors": [], "variant": None, "data": {},
                                  "mode": None, "prompt": None, "raw": None, "parsed": None, "validation": None,
                                  "gates": [], "teacher": None, "error": None}
_ORDER = ("id", "stage", "status", *FIELD_DEFAULTS)  # new_record's order, up to its bookkeeping
# when and from what a record was made, not what it says: written last on every line (store.StageStore.append), so a
# reader can hash a record's content without them (inputs.content_fp) and a rerun that changes none of it changes
# nothing below. timings (engine/timings.py) is bookkeeping too: how long a record took is not what it says
BOOKKEEPING = ("created_at", "input_fp", "gen_fp", "judge_fp", "parse_fp", "rejudged_from", "run_id", "timings")
_BOOKKEEPING_KEYS = frozenset(BOOKKEEPING)
_LISTS = frozenset(k for k, v in FIELD_DEFAULTS.items() if v == [])
_SAME_AS_RAW = ("prompt", "parsed")


def expand(record: dict[str, Any]) -> dict[str, Any]:
    """The whole record of a lean line (see LEAN), in new_record's key order; any other record as it is."""
    same = record.pop(LEAN, None)
    if same is None:
        return record
    field = record.pop(RAW_FROM, None)
    if field is not None:
        record["raw"] = (record.get("data") or {}).get(field)
    raw = record.get("raw")
    out: dict[str, Any] = {}
    for key in _ORDER:
        if key in record:
            out[key] = record[key]
        elif key in same:
            out[key] = raw
        else:
            default = FIELD_DEFAULTS.get(key)
            out[key] = [] if key in _LISTS else ({} if key == "data" else default)
    for key, value in record.items():  # bookkeeping and any field a later version adds
        if key not in out:
            out[key] = value
    return out


def compact(record: dict[str, Any], raw_from: str | None = None) -> dict[str, Any]:
    """The lean form of a record (`expand(compact(r)) == r` for a record in new_record's shape); with `raw_from`,
    a field of its data that holds the same text as `raw`, the text is kept there only."""
    raw = record.get("raw")
    same = [k for k in _SAME_AS_RAW if raw is not None and record.get(k) == raw and type(record.get(k)) is str]
    out = {k: v for k, v in record.items() if k not in same and not (k in FIELD_DEFAULTS and v == FIELD_DEFAULTS[k]
                                                                     and type(v) is type(FIELD_DEFAULTS[k]))}
    body = {k: v for k, v in out.items() if k not in _BOOKKEEPING_KEYS}
    if raw_from is not None and type(raw) is str and (record.get("data") or {}).get(raw_from) == raw:
        del body["raw"]
        body[RAW_FROM] = raw_from
    body[LEAN] = same
    body.update((k, v) for k, v in out.items() if k in _BOOKKEEPING_KEYS)
    return body
