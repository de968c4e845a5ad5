"""Leakage-free, stratified assignment of record groups to splits, and the checks that prove it."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from pocketguide.ops.unionfind import UnionFind


@dataclass
class Row:
    """The few facts the split needs about one record."""

    id: str
    stratum: str  # the stratify_by values joined, e.g. checklist/easy
    cluster: str  # near-duplicate cluster id (its own id when it has none)
    prompt: str  # normalized-prompt key
    facets: dict[str, str]  # reported facets; the stratify_by ones first
    margins: tuple[str, ...] = ("payload_type", "difficulty")  # the stratify_by facets

    @property
    def keys(self) -> tuple[str, ...]:
        """What the split balances: the stratum and each of its margins (e.g. payload type, difficulty)."""
        return (self.stratum, *(f"{m}={self.facets.get(m, '')}" for m in self.margins))


def leakage_groups(rows: list[Row]) -> list[list[int]]:
    """Union-find over clusters and prompts: rows linked by either must share a split."""
    uf = UnionFind()
    for i, r in enumerate(rows):
        uf.add(i)
        uf.union(("cluster", r.cluster), i)
        uf.union(("prompt", r.prompt), i)
    groups: dict[Any, list[int]] = defaultdict(list)
    for i in range(len(rows)):
        groups[uf.find(i)].append(i)
    return list(groups.values())


def _tiebreak(seed: int, key: str) -> bytes:
    return hashlib.sha256(f"{seed}:{key}".encode()).digest()


def assign(rows: list[Row], ratios: dict[str, float], seed: int) -> list[str]:
    """Give each leakage group one split, keeping every stratum's split shares near `ratios`.

    Groups go largest first (they are the hard ones to place), ties in seeded-random order. Each
    group goes to the split furthest below target, relative to the target (a fair-share scheduler),
    summed over the group's strata, their margins (each stratify_by facet) and the split's overall
    size: large strata converge on the ratios, and a stratum of three records puts one in each split
    instead of all three in train, so val and test see every type."""
    names = list(ratios)
    groups = leakage_groups(rows)
    groups.sort(key=lambda g: (-len(g), _tiebreak(seed, rows[g[0]].id)))
    size = Counter(k for r in rows for k in r.keys)
    have: dict[str, Counter[str]] = {n: Counter() for n in names}
    total: Counter[str] = Counter()
    out = [""] * len(rows)
    for g in groups:
        keys = Counter(k for i in g for k in rows[i].keys)
        best = max(names, key=lambda n: (_need(n, keys, len(g), ratios, size, have, total, len(rows)), ratios[n],
                                         -names.index(n)))
        for i in g:
            out[i] = best
            have[best].update(rows[i].keys)
        total[best] += len(g)
    return out


def _rel(target: float, have: int) -> float:
    return (target - have) / target if target > 0 else -1e9


def _need(split: str, keys: Counter[str], g: int, ratios: dict[str, float], size: Counter[str],
          have: dict[str, Counter[str]], total: Counter[str], n: int) -> float:
    """How far below target `split` is, relative to the target: for the group's strata and margins,
    plus the split's overall share (which stops a split collecting the round-up of every small stratum)."""
    need = sum(k * _rel(ratios[split] * size[s], have[split][s]) for s, k in keys.items())
    return need + g * _rel(ratios[split] * n, total[split])


def split_report(rows: list[Row], splits: list[str], names: list[str]) -> dict[str, Any]:
    """Per split: counts by facet, share deviation (over the margins) from the whole, groups spanning splits."""
    whole = {f: Counter(r.facets[f] for r in rows) for f in (rows[0].facets if rows else {})}
    n = len(rows)
    per: dict[str, Any] = {}
    worst = 0.0
    for name in names:
        idx = [i for i, s in enumerate(splits) if s == name]
        counts = {f: dict(sorted(Counter(rows[i].facets[f] for i in idx).items())) for f in whole}
        dev = 0.0
        for f in (rows[0].margins if rows else ()):
            if f not in whole or not idx:
                continue
            for value, total in whole[f].items():
                share = counts[f].get(value, 0) / len(idx)
                dev = max(dev, abs(share - total / n))
        worst = max(worst, dev)
        per[name] = {"count": len(idx), "share": round(len(idx) / n, 4) if n else 0.0, "counts": counts,
                     "max_mix_deviation_points": round(100 * dev, 2)}
    spans = {k: _spanning([getattr(r, k) for r in rows], splits) for k in ("cluster", "prompt")}
    return {"splits": per, "clusters_spanning_splits": spans["cluster"], "prompts_spanning_splits": spans["prompt"],
            "max_mix_deviation_points": round(100 * worst, 2),
            "clusters": len({r.cluster for r in rows})}


def _spanning(keys: list[str], splits: list[str]) -> int:
    where: dict[str, set[str]] = defaultdict(set)
    for k, s in zip(keys, splits):
        where[k].add(s)
    return sum(1 for v in where.values() if len(v) > 1)
