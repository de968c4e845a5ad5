"""Union-find (disjoint sets) over hashable keys: near-duplicate clusters and leakage groups."""

from __future__ import annotations

from collections.abc import Hashable


class UnionFind:
    """Disjoint sets over hashable keys; the root of a set is its earliest-added member."""

    def __init__(self) -> None:
        self.parent: dict[Hashable, Hashable] = {}
        self.order: dict[Hashable, int] = {}

    def add(self, x: Hashable) -> None:
        if x not in self.parent:
            self.parent[x] = x
            self.order[x] = len(self.order)

    def find(self, x: Hashable) -> Hashable:
        self.add(x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:  # path compression keeps later finds O(1)-ish
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: Hashable, b: Hashable) -> Hashable:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return ra
        if self.order[rb] < self.order[ra]:
            ra, rb = rb, ra
        self.parent[rb] = ra  # the earlier member stays root: "keep the first" is just find()
        return ra

    def groups(self) -> dict[Hashable, list[Hashable]]:
        out: dict[Hashable, list[Hashable]] = {}
        for x in self.parent:
            out.setdefault(self.find(x), []).append(x)
        return out
