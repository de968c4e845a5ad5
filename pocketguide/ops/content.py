"""What a record *says*: its prompt and the string values of its envelope, normalized.

Dedup and filters look at content only. JSON keys and enum-like fields (payload_type, priority,
transport mode, node type) are the same in every record of a payload type; hashing them made the
original project's near-duplicate groups collapse into one group per payload type."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Any

# envelope/payload keys whose values are enums or bookkeeping, not content
NON_CONTENT_KEYS = frozenset({"payload_type", "metadata", "priority", "mode", "type", "time_block", "id", "from",
                              "to", "next_node_id", "done", "booking_needed"})
_NON_WORD = re.compile(r"[^\w]+", re.UNICODE)


def normalize(text: str) -> str:
    """Case-folded, NFKC, punctuation and runs of whitespace collapsed to one space."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_NON_WORD.sub(" ", text).split())


def string_values(obj: Any, key: str | None = None) -> list[str]:
    """Every string value in a JSON value, depth-first, skipping NON_CONTENT_KEYS."""
    out: list[str] = []
    _collect(obj, key, out)
    return out


def _collect(obj: Any, key: str | None, out: list[str]) -> None:
    # a list accumulator, not nested generators: this runs ~150 times per record in qa
    if key in NON_CONTENT_KEYS:
        return
    if isinstance(obj, str):
        if obj.strip():
            out.append(obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _collect(v, k, out)
    elif isinstance(obj, list):
        for v in obj:
            _collect(v, key, out)


def prompt_of(record: dict[str, Any]) -> str:
    data = record.get("data") or {}
    value = data.get("prompt")
    return value if isinstance(value, str) else ""


def response_text(envelope: Any) -> str:
    return "\n".join(string_values(envelope))


def content_hash(prompt: str, response: str, normalized: bool = False) -> str:
    """Exact-duplicate key: normalized prompt + normalized response."""
    h = hashlib.sha256()
    h.update((prompt if normalized else normalize(prompt)).encode())
    h.update(b"\x00")
    h.update((response if normalized else normalize(response)).encode())
    return h.hexdigest()


def prompt_key(prompt: str) -> str:
    """Records sharing this key share a prompt (after normalization)."""
    return hashlib.sha1(normalize(prompt).encode()).hexdigest()[:16]


def shingles(text: str, size: int, normalized: bool = False) -> list[bytes]:
    """Word n-grams of the normalized text (the whole text when it is shorter than one shingle)."""
    words = (text if normalized else normalize(text)).split()
    if len(words) <= size:
        return [" ".join(words).encode()] if words else [b""]
    return list({" ".join(words[i:i + size]).encode() for i in range(len(words) - size + 1)})


def list_items(payload: Any) -> list[Any]:
    """The payload's list entries, found by its structure, not by key names: every element of every
    array, except elements that hold a list of objects themselves, whose entries count instead (a
    checklist's items, not its groups; an itinerary's day items, not its days; a graph-form tree's nodes
    and edges; a prompt-form tree's option objects, not its nodes)."""
    out: list[Any] = []
    _leaf_entries(payload, out, "$", {})
    return out


def list_entry_counts(payload: Any) -> dict[str, int]:
    """Where list_items found its entries: {"$.groups[].items": 7, …} (array positions written as [])."""
    where: dict[str, int] = {}
    _leaf_entries(payload, [], "$", where)
    return where


def _leaf_entries(value: Any, out: list[Any], path: str, where: dict[str, int]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _leaf_entries(v, out, f"{path}.{k}", where)
    elif isinstance(value, list):
        for v in value:
            if _holds_array(v):
                _leaf_entries(v, out, f"{path}[]", where)
            else:
                out.append(v)
                where[path] = where.get(path, 0) + 1


def _holds_array(value: Any) -> bool:
    """True for a list, or an object with a list of containers somewhere inside (a list of strings,
    such as a node's options, leaves its object an entry)."""
    if isinstance(value, list):
        return any(isinstance(v, (dict, list)) for v in value)
    return isinstance(value, dict) and any(_holds_array(v) for v in value.values())


def action_count(envelope: dict[str, Any], min_words: int) -> int:
    """Concrete actions: next steps, verification steps and payload entries with at least `min_words` words."""
    texts: list[str] = []
    for key in ("next_steps", "verification_steps"):
        texts.extend(v for v in envelope.get(key) or [] if isinstance(v, str))
    for item in list_items(envelope.get("payload")):
        texts.append(" ".join(string_values(item)) if isinstance(item, (dict, list)) else str(item))
    return sum(1 for t in texts if len(t.split()) >= min_words)
