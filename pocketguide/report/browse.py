"""The records the report's browser carries: every record of a small run, a lineage sample of a big one.

A big run is sampled per stage with a bottom-k sketch keyed by the record's lineage root (the first
ancestor), so the same planned items are kept in every stage and a kept record's trace is whole.
Text fields are cut to `max_chars` (the page says so and names `pocketguide inspect` for the rest)."""

from __future__ import annotations

import hashlib
import heapq
import json
from dataclasses import dataclass, field
from typing import Any

import orjson

from pocketguide.engine.stats import facet_value

PREVIEW_CHARS = 140
MAX_LIST_ITEMS = 200


def lineage_root(record: dict[str, Any]) -> str:
    ancestors = record.get("ancestors") or []
    return str(ancestors[-1] if ancestors else record.get("id"))


def _rank(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


@dataclass
class StageSample:
    """Keeps at most `quota` records of one stage: those whose lineage roots rank lowest."""

    quota: int
    heap: list[tuple[int, int, int, dict[str, Any]]] = field(default_factory=list)
    seen: int = 0

    def offer(self, record: dict[str, Any]) -> None:
        self.seen += 1
        if self.quota <= 0:
            return
        key = (-_rank(lineage_root(record)), -_rank(f"{record.get('id')}|{record.get('status')}"), -self.seen)
        if len(self.heap) < self.quota:
            heapq.heappush(self.heap, (*key, record))
        elif key > self.heap[0][:3]:
            heapq.heapreplace(self.heap, (*key, record))

    def records(self) -> list[dict[str, Any]]:
        """The kept records in file order (accepted, rejected, then superseded lines)."""
        return [r for *_, r in sorted(self.heap, key=lambda e: -e[2])]


def quotas(lines_per_stage: dict[str, int], max_records: int) -> dict[str, int]:
    """Each stage's share of the browser's records, in proportion to its size; everything when it fits."""
    total = sum(lines_per_stage.values())
    if total <= max_records:
        return dict(lines_per_stage)
    exact = {s: n * max_records / total for s, n in lines_per_stage.items()}
    out = {s: int(x) for s, x in exact.items()}
    for s in sorted(exact, key=lambda s: exact[s] - out[s], reverse=True)[:max_records - sum(out.values())]:
        out[s] += 1  # largest remainders: the quotas add up to max_records exactly
    return out


def trim(value: Any, max_chars: int) -> Any:
    """A copy with every string cut to max_chars (marked) and lists cut to MAX_LIST_ITEMS."""
    if isinstance(value, str):
        if len(value) <= max_chars:
            return value
        return value[:max_chars] + f"\n… [{len(value) - max_chars} more characters: `pocketguide inspect` shows all]"
    if isinstance(value, dict):
        return {str(k): trim(v, max_chars) for k, v in value.items()}
    if isinstance(value, list):
        out = [trim(v, max_chars) for v in value[:MAX_LIST_ITEMS]]
        if len(value) > MAX_LIST_ITEMS:
            out.append(f"… {len(value) - MAX_LIST_ITEMS} more items")
        return out
    return value


def to_json(value: Any) -> str:
    """Compact JSON; text orjson refuses (lone surrogates) goes through json with escapes."""
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:
        return json.dumps(value, ensure_ascii=True, default=str)


def preview(record: dict[str, Any]) -> str:
    """One line for the list: the error, else the raw output, the parsed value, the prompt or the data."""
    for value in (record.get("error"), record.get("raw"), record.get("parsed"), record.get("prompt"),
                  record.get("data")):
        if value not in (None, "", [], {}):
            text = value if isinstance(value, str) else to_json(value)
            return " ".join(text.split())[:PREVIEW_CHARS]
    return ""


def browser_row(record: dict[str, Any], stage_index: int, facets: list[str], max_chars: int) -> list[Any]:
    """[stage index, id, status, reasons, facet values, parent ids, ancestors, preview, detail JSON].

    The detail is a JSON string the page parses only when the record is opened (a 10,000-record page
    stays quick to load), and the free-text filter searches it."""
    status = "superseded" if record.get("superseded_at") else record.get("status") or "rejected"
    values = {f: facet_value(record, f) for f in facets}
    detail = to_json(trim(record, max_chars))
    return [stage_index, str(record.get("id")), status, list(record.get("reasons") or []),
            {f: None if v is None else str(v) for f, v in values.items()},
            [str(p) for p in record.get("parent_ids") or []], [str(a) for a in record.get("ancestors") or []],
            preview(record), detail]
