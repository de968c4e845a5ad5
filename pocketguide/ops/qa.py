"""`op: qa`: filters, exact and near-duplicate removal (MinHash + LSH), bucket balancing.

Two passes over the input so 100k records never sit in memory: the first decides every record's
fate from small per-record facts, the second writes each record accepted or rejected. The per-record
part of the first pass (filters, exact-duplicate key, MinHash signature) goes through `ctx.map` in
batches, so `--executor ray` spreads it over workers; the LSH, which needs every earlier record, stays
in order on the driver, so the result is the same on any executor."""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from pydantic import BaseModel, ConfigDict, Field

from pocketguide.engine.errors import StageError
from pocketguide.engine.registry import operation
from pocketguide.ops.split import facet_value
from pocketguide.ops.content import (
    action_count,
    content_hash,
    list_entry_counts,
    list_items,
    normalize,
    prompt_of,
    response_text,
)

if TYPE_CHECKING:  # numpy and datasketch (the dataset extra) load when the stage runs
    from pocketguide.ops.dedup import NearDupIndex

DEFAULT_OVERCLAIMS = ["guaranteed", "guarantee", "definitely", "certainly", "100%", "for sure",
                      "without a doubt", "no need to verify", "no need to check", "no need to worry",
                      "never changes", "absolutely certain", "always open", "always accepted"]
DEFAULT_SAFE = ["always verify", "always check", "always confirm", "always double-check", "never assume"]


class QAOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(0.85, gt=0, le=1, description="estimated Jaccard at which two records are near "
                                                           "duplicates; one per cluster is kept")
    group_threshold: float = Field(0.6, gt=0, le=1, description="lower similarity at which kept records share "
                                   "a cluster_id, so the split keeps paraphrases together (<= threshold)")
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations (accuracy vs speed)")
    shingle_size: int = Field(3, ge=1, le=10, description="word n-gram size of the content shingles")
    seed: int = Field(1, description="MinHash seed and balancing tie-break seed")
    min_chars: int = Field(80, ge=0, description="minimum characters of response content (string values)")
    max_chars: int = Field(20000, ge=1, description="maximum characters of response content")
    min_actions: int = Field(3, ge=0, description="fewer concrete actions (steps, list entries) is vague")
    action_min_words: int = Field(3, ge=1, description="words an entry needs to count as a concrete action")
    min_list_items: int = Field(2, ge=0, description="fewer payload list entries means no list structure")
    overclaim_phrases: list[str] = Field(default_factory=lambda: list(DEFAULT_OVERCLAIMS),
                                         description="absolute claims matched on word boundaries")
    safe_contexts: list[str] = Field(default_factory=lambda: list(DEFAULT_SAFE),
                                     description="phrases removed before matching (\"always verify\" is advice)")
    max_overclaims: int = Field(0, ge=0, description="more overclaim hits than this rejects the record")
    bucket_by: list[str] = Field(default_factory=list, description="record fields (data, then parsed) whose "
                                 "value combination is a bucket, e.g. [payload_type, category, difficulty]")
    max_bucket_ratio: float | None = Field(3.0, gt=0, description="cap each bucket at this multiple of the mean "
                                           "bucket size (needs bucket_by); null: no ratio cap")
    max_per_bucket: int | None = Field(None, ge=1, description="absolute cap per bucket; null: none")
    batch_size: int = Field(1024, ge=1, description="records per batch of per-record work (filters, MinHash "
                            "signatures) handed to the executor; the result does not depend on it")


@dataclass(slots=True)  # one per input record: 100k of them in the benchmark
class Fact:
    id: str
    bucket: tuple[str, ...]
    reason: str | None = None
    detail: str | None = None
    duplicate_of: int | None = None
    similarity: float | None = None
    cluster: int | None = None


def _phrase_re(phrases: list[str]) -> re.Pattern[str] | None:
    if not phrases:
        return None
    alts = "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alts})(?!\w)", re.IGNORECASE)


class Filters:
    def __init__(self, opts: QAOptions):
        self.o = opts
        self.claims = _phrase_re(opts.overclaim_phrases)
        self.safe = _phrase_re(opts.safe_contexts)

    def check(self, envelope: dict[str, Any], text: str) -> tuple[str, str] | None:
        """(reason, detail) of the first failing filter, or None."""
        o = self.o
        if len(text) < o.min_chars:
            return "qa:too_short", f"{len(text)} content chars < min_chars {o.min_chars}"
        if len(text) > o.max_chars:
            return "qa:too_long", f"{len(text)} content chars > max_chars {o.max_chars}"
        items = len(list_items(envelope.get("payload")))
        if items < o.min_list_items:
            return "qa:vague_no_list", _no_list_detail(envelope.get("payload"), items, o.min_list_items)
        actions = action_count(envelope, o.action_min_words)
        if actions < o.min_actions:
            return "qa:vague_few_actions", f"{actions} concrete actions < min_actions {o.min_actions}"
        if self.claims is not None:
            plain = self.safe.sub(" ", text) if self.safe is not None else text
            hits = self.claims.findall(plain)
            if len(hits) > o.max_overclaims:
                return "qa:overclaiming", f"absolute claims: {sorted({h.lower() for h in hits})}"
        return None


def _no_list_detail(payload: Any, items: int, minimum: int) -> str:
    """What was counted and where, so a reader can check the count against the payload."""
    where = list_entry_counts(payload)
    found = ", ".join(f"{n} at {path}" for path, n in sorted(where.items())) or "no array with entries"
    noun = "entry" if items == 1 else "entries"
    return (f"{items} payload list {noun} < min_list_items {minimum} (counted by structure, every array "
            f"element or the entries of its nested lists of objects: {found})")


def _bucket(record: dict[str, Any], fields: list[str]) -> tuple[str, ...]:
    return tuple(facet_value(record, f) for f in fields) or ("all",)


@functools.lru_cache(maxsize=4)  # per process: a worker compiles the phrase patterns once
def _filters(opts_json: str) -> Filters:
    return Filters(QAOptions.model_validate_json(opts_json))


def record_facts(batch: list[tuple[Any, str]], opts: QAOptions) -> tuple[list[Any], Any]:
    """The per-record facts of a batch of (parsed, prompt): for each record its first failing check as
    (reason, detail), or its exact-duplicate key; and the MinHash signatures of the records that passed
    (one row each, in order). Depends only on its arguments: ctx.map may run it on any worker."""
    from pocketguide.ops.dedup import signatures

    filters = _filters(opts.model_dump_json())
    out: list[Any] = []
    texts: list[str] = []
    for env, prompt in batch:
        if not isinstance(env, dict):
            out.append(("qa:invalid_envelope", "parsed is not a JSON object"))
            continue
        if not prompt.strip():
            out.append(("qa:missing_prompt", "data.prompt is empty or missing"))
            continue
        text = response_text(env)
        bad = filters.check(env, text)
        if bad:
            out.append(bad)
            continue
        norm_prompt, norm_text = normalize(prompt), normalize(text)  # once: both keys below use them
        out.append(content_hash(norm_prompt, norm_text, normalized=True))
        texts.append(norm_prompt + " " + norm_text)
    return out, signatures(texts, opts.num_perm, opts.seed, opts.shingle_size)


def _batches(ctx: Any, opts: QAOptions, facts: list[Fact]) -> Iterator[list[tuple[Any, str]]]:
    """Input records in batches of (parsed, prompt); each record's Fact (id, bucket) is noted as it passes."""
    batch: list[tuple[Any, str]] = []
    for rec in ctx.records():
        facts.append(Fact(str(rec.get("id")), _bucket(rec, opts.bucket_by)))
        batch.append((rec.get("parsed"), prompt_of(rec)))
        if len(batch) >= opts.batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _first_pass(ctx: Any, opts: QAOptions) -> tuple[list[Fact], "NearDupIndex"]:
    from pocketguide.ops.dedup import NearDupIndex

    index = NearDupIndex(opts.threshold, opts.group_threshold, opts.num_perm, opts.seed)
    seen: dict[str, int] = {}
    facts: list[Fact] = []
    i = 0
    for outcomes, sigs in ctx.map(record_facts, _batches(ctx, opts, facts), opts):
        row = 0
        for outcome in outcomes:
            fact = facts[i]
            if isinstance(outcome, tuple):
                fact.reason, fact.detail = outcome
            elif outcome in seen:
                fact.reason, fact.duplicate_of, fact.similarity = "qa:exact_duplicate", seen[outcome], 1.0
                row += 1
            else:
                seen[outcome] = i
                index.add_signature(i, sigs[row])
                row += 1
            i += 1
    return facts, index


def _mark_near_duplicates(facts: list[Fact], index: "NearDupIndex") -> None:
    res = index.result
    for i in res.dup.parent:
        keeper = res.dup.find(i)
        facts[i].cluster = res.group.find(i)  # type: ignore[assignment]
        if keeper != i:
            f = facts[i]
            f.reason, f.duplicate_of = "qa:near_duplicate", keeper  # type: ignore[assignment]
            f.similarity = res.best_match.get(i, (None, None))[1]


def _balance(facts: list[Fact], opts: QAOptions) -> dict[str, Any]:
    """Cap over-represented buckets; which records go is a seeded hash of the id, not input order."""
    kept: dict[tuple[str, ...], list[int]] = {}
    for i, f in enumerate(facts):
        if f.reason is None:
            kept.setdefault(f.bucket, []).append(i)
    if not kept:
        return {"cap": None, "capped_buckets": {}}
    caps = []
    if opts.max_bucket_ratio is not None:
        mean = sum(len(v) for v in kept.values()) / len(kept)
        caps.append(max(1, math.ceil(opts.max_bucket_ratio * mean)))
    if opts.max_per_bucket is not None:
        caps.append(opts.max_per_bucket)
    cap = min(caps) if caps else None
    capped = {}
    for bucket, members in kept.items():
        if cap is None or len(members) <= cap:
            continue
        order = sorted(members, key=lambda i: hashlib.sha1(f"{opts.seed}:{facts[i].id}".encode()).digest())
        for i in order[cap:]:
            facts[i].reason, facts[i].detail = "qa:balance_cap", f"bucket {'/'.join(bucket)} capped at {cap}"
        capped["/".join(bucket)] = {"before": len(members), "after": cap}
    return {"cap": cap, "capped_buckets": capped}


@operation("qa", options=QAOptions, requires=("numpy", "datasketch"), extra="dataset", maps_batches=True)
def qa(ctx: Any, opts: QAOptions) -> None:
    """Drop exact and near duplicates, vague, overclaiming and out-of-bounds records; cap big buckets."""
    facts, index = _first_pass(ctx, opts)
    _mark_near_duplicates(facts, index)
    balance = _balance(facts, opts)
    for i, rec in enumerate(ctx.records()):
        if i >= len(facts) or facts[i].id != str(rec.get("id")):
            raise StageError("the qa input changed while qa was running — rerun `pocketguide run qa`")
        f = facts[i]
        out = ctx.derive(rec)
        if f.cluster is not None:
            out["data"]["cluster_id"] = facts[f.cluster].id
        if f.reason is None:
            ctx.accept(out)
            continue
        if f.duplicate_of is not None:
            out["duplicate_of"] = facts[f.duplicate_of].id
            out["qa"] = {"duplicate_of": out["duplicate_of"], "similarity": f.similarity}
        ctx.reject(out, f.reason, error=f.detail or (f"duplicate of {out.get('duplicate_of')}"))
    ctx.stats_extra["qa"] = _stats(facts, index, balance, opts)


def _stats(facts: list[Fact], index: "NearDupIndex", balance: dict[str, Any], opts: QAOptions) -> dict[str, Any]:
    res = index.result
    dup_sets = [g for g in res.dup.groups().values() if len(g) > 1]
    groups = res.group.groups()
    sizes = sorted((len(g) for g in groups.values()), reverse=True)
    buckets = Counter("/".join(f.bucket) for f in facts if f.reason is None)
    return {
        "input": len(facts),
        "kept": sum(1 for f in facts if f.reason is None),
        "dropped": dict(Counter(f.reason for f in facts if f.reason).most_common()),
        "near_duplicate_clusters": len(dup_sets),
        "largest_near_duplicate_cluster": max((len(g) for g in dup_sets), default=1),
        "groups": {"count": len(groups), "multi_member": sum(1 for s in sizes if s > 1),
                   "largest": sizes[0] if sizes else 0},
        "candidate_pairs": res.candidate_pairs,
        "balance": balance,
        "buckets_kept": dict(sorted(buckets.items())),
        "settings": {"threshold": opts.threshold, "group_threshold": min(opts.group_threshold, opts.threshold),
                     "num_perm": opts.num_perm, "shingle_size": opts.shingle_size},
    }
