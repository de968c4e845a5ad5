"""MinHash + LSH near-duplicate clustering (datasketch, numpy: the dataset extra)."""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pocketguide.ops.content import shingles
from pocketguide.ops.unionfind import UnionFind


@functools.lru_cache(maxsize=4)  # per process: a worker keeps its prepared MinHash between batches
def _prototype(num_perm: int, seed: int) -> Any:
    from datasketch import MinHash  # imported here: datasketch pulls in scipy (≈1 s)

    # crc32 (C, ~10x faster than the default sha1) hashes shingles; measured estimator error is the same
    return MinHash(num_perm=num_perm, seed=seed, hashfunc=zlib.crc32)


def signatures(texts: list[str], num_perm: int, seed: int, shingle_size: int) -> np.ndarray:
    """MinHash signatures of normalized texts' word shingles, one uint32 row per text. Depends only on its
    arguments, so any worker computes the same rows (qa hands batches of these to ctx.map)."""
    proto = _prototype(num_perm, seed)
    out = np.empty((len(texts), num_perm), dtype=np.uint32)
    for k, text in enumerate(texts):
        mh = proto.copy()  # copying a prepared MinHash skips re-deriving the permutations
        mh.update_batch(shingles(text, shingle_size, normalized=True))
        out[k] = mh.hashvalues
    return out


@dataclass
class NearDupResult:
    dup: UnionFind = field(default_factory=UnionFind)  # pairs at >= threshold: keep one per set
    group: UnionFind = field(default_factory=UnionFind)  # pairs at >= group_threshold: one split per set
    best_match: dict[int, tuple[int, float]] = field(default_factory=dict)  # i -> (earlier j, similarity)
    candidate_pairs: int = 0


class NearDupIndex:
    """Streams documents (signatures, or shingle lists) through MinHash LSH; unions similar pairs.

    One LSH at the lower of the two thresholds finds candidates; each candidate pair's estimated
    Jaccard then decides whether it is a duplicate (>= threshold) or only related (>= group_threshold)."""

    def __init__(self, threshold: float, group_threshold: float, num_perm: int, seed: int):
        self.threshold, self.group_threshold = threshold, min(group_threshold, threshold)
        self.num_perm, self.seed = num_perm, seed
        from datasketch import LeanMinHash, MinHashLSH

        self.lsh = MinHashLSH(threshold=self.group_threshold, num_perm=num_perm)
        # signatures in one growing uint32 matrix (row per document): 51 MB at 100k records and no
        # 100k small array objects for the allocator and cache to chase
        self._sigs = np.zeros((1024, num_perm), dtype=np.uint32)
        self._row: dict[int, int] = {}
        self.result = NearDupResult()
        self._lean, self._scheme = LeanMinHash, _prototype(num_perm, seed).scheme

    def add(self, i: int, shingle_list: list[bytes]) -> None:
        """Index document `i` (indices must grow) from its shingles."""
        mh = _prototype(self.num_perm, self.seed).copy()
        mh.update_batch(shingle_list)
        self._add(i, mh)

    def add_signature(self, i: int, sig: np.ndarray) -> None:
        """Index document `i` (indices must grow) from its signature (a row of `signatures`) and union it
        with the similar earlier documents."""
        self._add(i, self._lean(seed=self.seed, hashvalues=sig, scheme=self._scheme))

    def _add(self, i: int, mh: Any) -> None:
        res = self.result
        res.dup.add(i)
        res.group.add(i)
        sig = mh.hashvalues
        best: tuple[int, float] | None = None
        for j in self.lsh.query(mh):
            res.candidate_pairs += 1
            sim = float(np.count_nonzero(self._sigs[self._row[j]] == sig)) / self.num_perm
            if sim >= self.group_threshold:
                res.group.union(j, i)
            if sim >= self.threshold:
                res.dup.union(j, i)
            if best is None or sim > best[1] or (sim == best[1] and j < best[0]):
                best = (j, sim)
        if best is not None and best[1] >= self.threshold:
            res.best_match[i] = best
        self.lsh.insert(i, mh, check_duplication=False)
        row = len(self._row)
        if row == len(self._sigs):
            self._sigs = np.concatenate([self._sigs, np.zeros_like(self._sigs)])
        self._sigs[row] = sig
        self._row[i] = row
