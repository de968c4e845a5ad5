"""Teacher figures for the report: what the records' provenance says, plus every counter the stage's
stats.json and manifest carry. Counters are read generically (any number, at any depth), so a counter
a later version adds (pauses, retries, …) shows up without a change here."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pocketguide.engine.stats import percentile

# provenance keys with a meaning of their own below; any other number in `teacher` is summed as is
_KNOWN = {"latency_s", "cost", "cached", "usage", "errors", "attempted_models", "notes"}
# stats.json teacher keys the record tally already shows
_FROM_RECORDS = {"calls", "cached", "models", "prompt_tokens", "completion_tokens", "cost", "latency_p50_s",
                 "latency_p95_s"}


class TeacherTally:
    def __init__(self) -> None:
        self.records = 0
        self.requests = 0
        self.cache_hits = 0
        self.usage: Counter[str] = Counter()
        self.cost = 0.0
        self.priced = 0
        self.latencies: list[float] = []
        self.failed_models = 0
        self.failed_attempts = 0
        self.rate_limited = 0
        self.fallbacks = 0
        self.models: Counter[str] = Counter()
        self.finish_reasons: Counter[str] = Counter()
        self.error_kinds: Counter[str] = Counter()
        self.other: Counter[str] = Counter()

    def add(self, record: dict[str, Any]) -> None:
        t = record.get("teacher")
        if not isinstance(t, dict):
            return
        self.records += 1
        if t.get("cached"):
            self.cache_hits += 1
        else:
            self.requests += 1
            if isinstance(t.get("latency_s"), (int, float)):
                self.latencies.append(float(t["latency_s"]))
        for key, value in (t.get("usage") or {}).items():
            if _number(value):
                self.usage[key] += value
        if _number(t.get("cost")):
            self.cost += float(t["cost"])
            self.priced += 1
        for err in t.get("errors") or []:
            self.failed_models += 1
            self.failed_attempts += int(err.get("attempts") or 1) if isinstance(err, dict) else 1
            if isinstance(err, dict):
                self.error_kinds[str(err.get("kind"))] += 1
                self.rate_limited += err.get("status") == 429
        if len(t.get("attempted_models") or []) > 1:
            self.fallbacks += 1
        model = t.get("selected_model") or t.get("model")
        if model:
            self.models[str(model)] += 1
        if t.get("finish_reason"):
            self.finish_reasons[str(t["finish_reason"])] += 1
        for key, value in t.items():
            if key not in _KNOWN and _number(value):
                self.other[key] += value

    def figures(self) -> dict[str, Any] | None:
        if not self.records:
            return None
        return {
            "records": self.records, "requests": self.requests, "cache_hits": self.cache_hits,
            "prompt_tokens": self.usage.get("prompt_tokens", 0),
            "completion_tokens": self.usage.get("completion_tokens", 0),
            "cost_usd": round(self.cost, 6) if self.priced else None,
            "latency_p50_s": percentile(self.latencies, 0.5), "latency_p95_s": percentile(self.latencies, 0.95),
            "failed_models": self.failed_models, "failed_attempts": self.failed_attempts,
            "rate_limited_429": self.rate_limited, "fallbacks": self.fallbacks,
            "models": dict(self.models.most_common()), "finish_reasons": dict(self.finish_reasons.most_common()),
            "error_kinds": dict(self.error_kinds.most_common()),
            "other": {**{f"usage.{k}": v for k, v in self.usage.items()
                         if k not in ("prompt_tokens", "completion_tokens")}, **dict(self.other)},
        }


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def numeric_leaves(value: Any, prefix: str = "") -> dict[str, float]:
    """Every number under `value` by dotted path; a list of dicts with a `model` is keyed by that model."""
    out: dict[str, float] = {}
    if _number(value):
        out[prefix] = value
    elif isinstance(value, dict):
        for k, v in value.items():
            out.update(numeric_leaves(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            name = v.get("model") if isinstance(v, dict) and v.get("model") else i
            out.update(numeric_leaves(v, f"{prefix}.{name}" if prefix else str(name)))
    return out


def counters(stats: dict[str, Any] | None, manifest: dict[str, Any] | None) -> dict[str, float]:
    """The numbers a stage's run recorded beyond the records: stats.json `teacher` (keys the record
    tally does not already give) and everything numeric the manifest's teacher description holds
    (per-model flow counters such as calls and 429s, cache hits, budget, limits)."""
    out: dict[str, float] = {}
    teacher_stats = dict((stats or {}).get("teacher") or {})
    for key in _FROM_RECORDS:
        teacher_stats.pop(key, None)
    out.update(numeric_leaves(teacher_stats, "stats"))
    out.update(numeric_leaves((manifest or {}).get("teacher") or {}, "manifest"))
    return out


def _headline_kind(path: str) -> str | None:
    """The nearest segment that names a headline figure (a per-model breakdown may come after it)."""
    for part in reversed(path.lower().split(".")):
        if "pause" in part:
            return "paused_s" if part.endswith("_s") or "seconds" in part else "pauses"
        if part in ("rate_limited", "throttled") or "429" in part:
            return "rate_limited"
        if part.startswith(("retries", "retried")):
            return "retries"
    return None


def headline(numbers: dict[str, float]) -> dict[str, float]:
    """The figures a reader looks for first (429s, retries, pauses, seconds paused), summed from every
    counter whose name says so, wherever a version of pocketguide records it."""
    out: dict[str, float] = {}
    for path, value in numbers.items():
        kind = _headline_kind(path)
        if kind:
            out[kind] = round(out.get(kind, 0) + value, 3)
    return out
