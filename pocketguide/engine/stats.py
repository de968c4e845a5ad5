"""Counts, reasons, facets, latency percentiles, token and cost totals for one stage's output."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from pocketguide.engine.records import lookup

_MISSING = object()


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return round(s[lo] + (s[hi] - s[lo]) * (k - lo), 4)


def facet_value(record: dict[str, Any], path: str) -> Any:
    """A facet path is looked up in record['data'] first, then in the record itself. `a+b` crosses two
    facets ("made_by+parsed.verdict" → "pocketguide_critic:v1 | revise")."""
    if "+" in path:
        return " | ".join(str(facet_value(record, part)) for part in path.split("+"))
    data = record.get("data") or {}
    if "." not in path and isinstance(data, dict):  # the common case, without splitting a path per record
        value = data.get(path, _MISSING)
        if value is _MISSING:
            value = record.get(path)
    else:
        value = lookup(data, path, _MISSING)
        if value is _MISSING:
            value = lookup(record, path, None)
    if isinstance(value, (dict, list)):
        return None
    return value


class StatsAccumulator:
    def __init__(self, facets: list[str] | None = None):
        self.facets = facets or []
        self.accepted = 0
        self.rejected = 0
        self.reasons: Counter[str] = Counter()
        self.facet_counts: dict[str, dict[str, Counter[str]]] = {f: defaultdict(Counter) for f in self.facets}
        self.gates: dict[str, Counter[str]] = defaultdict(Counter)
        self.latencies: list[float] = []
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost = 0.0
        self.teacher_calls = 0
        self.cached_calls = 0
        self.models: Counter[str] = Counter()
        self.modes: Counter[str] = Counter()
        self.dry_run = 0

    def add(self, record: dict[str, Any]) -> None:
        status = record.get("status")
        if status == "accepted":
            self.accepted += 1
        else:
            self.rejected += 1
            for r in record.get("reasons") or []:
                self.reasons[r] += 1
        if record.get("dry_run"):
            self.dry_run += 1
        if record.get("mode"):
            self.modes[record["mode"]] += 1
        for f in self.facets:
            self.facet_counts[f][str(facet_value(record, f))][status or "rejected"] += 1
        for g in record.get("gates") or []:
            self.gates[g.get("name", "?")]["passed" if g.get("passed") else "failed"] += 1
        t = record.get("teacher")
        if t:
            self.teacher_calls += 1
            if t.get("cached"):
                self.cached_calls += 1
            elif t.get("latency_s") is not None:
                self.latencies.append(float(t["latency_s"]))
            usage = t.get("usage") or {}
            self.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.completion_tokens += int(usage.get("completion_tokens") or 0)
            self.cost += float(t.get("cost") or 0.0)
            if t.get("model"):
                self.models[t["model"]] += 1

    def to_dict(self) -> dict[str, Any]:
        total = self.accepted + self.rejected
        facets = {}
        for f, by_value in self.facet_counts.items():
            facets[f] = {
                value: {"accepted": c["accepted"], "rejected": c["rejected"],
                        "pass_rate": round(c["accepted"] / max(1, c["accepted"] + c["rejected"]), 4)}
                for value, c in sorted(by_value.items())
            }
        gates = {name: {"passed": c["passed"], "failed": c["failed"],
                        "pass_rate": round(c["passed"] / max(1, c["passed"] + c["failed"]), 4)}
                 for name, c in sorted(self.gates.items())}
        return {
            "total": total,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "acceptance_rate": round(self.accepted / total, 4) if total else None,
            "rejection_reasons": dict(self.reasons.most_common()),
            "facets": facets,
            "gates": gates,
            "modes": dict(self.modes),
            "dry_run_records": self.dry_run,
            "teacher": {
                "calls": self.teacher_calls,
                "cached": self.cached_calls,
                "models": dict(self.models),
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "cost": round(self.cost, 6),
                "latency_p50_s": percentile(self.latencies, 0.5),
                "latency_p95_s": percentile(self.latencies, 0.95),
            },
        }
