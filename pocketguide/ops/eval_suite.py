"""`op: eval_suite`: a fixed, stratified held-out suite drawn from the test split only.

The suite is written once per dataset version (the sha256 of the test split's content) to
`suite.jsonl` + `suite.json` in the stage folder. A rerun on the same test split re-emits the same
suite byte for byte; a changed test split (or a hand-edited suite file) moves the old suite to
`previous/<version>-<stamp>/` before a new one is written — never overwritten silently."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections import Counter, defaultdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pocketguide.engine.errors import StageError
from pocketguide.engine.registry import operation
from pocketguide.engine.store import file_sha256, read_json
from pocketguide.ops.content import normalize, prompt_of

SUITE, META = "suite.jsonl", "suite.json"


class EvalSuiteOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = Field(60, ge=1, description="examples in the suite (all of test when test is smaller)")
    seed: int = Field(7, description="seed of the within-stratum draw")
    split: str = Field("test", description="the split the suite is drawn from")
    disjoint_from: list[str] = Field(default_factory=lambda: ["train", "val"],
                                     description="splits whose ids and prompts must not appear in the suite")


def _key(seed: int, rid: str) -> bytes:
    return hashlib.sha256(f"{seed}:{rid}".encode()).digest()


def _facet(rec: dict[str, Any], name: str) -> str:
    return str((rec.get("data") or {}).get(name))


def select(records: list[dict[str, Any]], size: int, seed: int) -> list[dict[str, Any]]:
    """Cover every payload type and difficulty first, then one per stratum, then proportional shares."""
    strata: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in sorted(records, key=lambda r: _key(seed, str(r["id"]))):
        strata[(_facet(r, "payload_type"), _facet(r, "difficulty"))].append(r)
    taken: Counter[tuple[str, str]] = Counter()
    need_types = {s[0] for s in strata}
    need_diffs = {s[1] for s in strata}
    total = sum(len(v) for v in strata.values())
    size = min(size, total)
    while (need_types or need_diffs) and sum(taken.values()) < size:  # greedy cover
        best = max((s for s in strata if not taken[s]),
                   key=lambda s: ((s[0] in need_types) + (s[1] in need_diffs), len(strata[s]), s))
        taken[best] += 1
        need_types.discard(best[0])
        need_diffs.discard(best[1])
    for s in sorted(strata, key=lambda s: (-len(strata[s]), s)):  # then every stratum once
        if sum(taken.values()) < size and not taken[s]:
            taken[s] += 1
    while sum(taken.values()) < size:  # then the stratum furthest below its proportional share
        open_ = [s for s in strata if taken[s] < len(strata[s])]
        best = max(open_, key=lambda s: (size * len(strata[s]) / total - taken[s], s))
        taken[best] += 1
    picked = [r for s, n in taken.items() for r in strata[s][:n]]
    return sorted(picked, key=lambda r: str(r["id"]))


def _version(test: list[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for r in sorted(test, key=lambda r: str(r["id"])):
        h.update(json.dumps([r["id"], (r.get("parsed") or {}).get("messages")], sort_keys=True).encode())
        h.update(b"\n")
    return h.hexdigest()


def _existing(ctx: Any, version: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, str | None]:
    """The stored suite when it belongs to `version` (and options) and is intact; else moves it aside."""
    meta, suite = read_json(ctx.path(META)), ctx.path(SUITE)
    if meta is None and not suite.exists():
        return None, None
    same = bool(meta) and meta.get("version") == version and meta.get("params") == params
    if same and file_sha256(suite) == meta.get("sha256"):
        return [json.loads(line) for line in suite.read_text().splitlines() if line.strip()], None
    old = (meta or {}).get("version") or "unknown"
    target = ctx.path("previous") / f"{old[:12]}-{time.strftime('%Y%m%d-%H%M%S')}"
    target.mkdir(parents=True, exist_ok=True)
    for p in (suite, ctx.path(META)):
        if p.exists():
            shutil.move(str(p), str(target / p.name))
    why = ("the test split changed" if not meta or meta.get("version") != version else
           "the suite options changed" if meta.get("params") != params else "the suite file was edited")
    ctx.message(f"{why}: the old suite (version {old[:12]}) was moved to {target}")
    return None, str(target)


def _check_disjoint(suite: list[dict[str, Any]], others: list[dict[str, Any]]) -> None:
    ids = {str(r["id"]) for r in others}
    prompts = {normalize(prompt_of(r)) for r in others}
    leaked = [str(r["id"]) for r in suite if str(r["id"]) in ids or normalize(prompt_of(r)) in prompts]
    if leaked:
        raise StageError(f"eval suite overlaps the training splits ({len(leaked)} records, e.g. {leaked[:3]}) — "
                         f"rerun the split stage; the suite must be drawn from held-out data only")


@operation("eval_suite", options=EvalSuiteOptions)
def eval_suite(ctx: Any, opts: EvalSuiteOptions) -> None:
    """Draw (once per test-split version) a stratified held-out suite from the test split."""
    everything = [r for r in ctx.records()]
    test = [r for r in everything if _facet(r, "split") == opts.split]
    others = [r for r in everything if _facet(r, "split") in opts.disjoint_from]
    if not test:
        # a tiny run (`run-all --limit 5`) may leave test empty; that is a warning, not a crash,
        # and any stored suite stays where it is
        ctx.message(f"no '{opts.split}' records in '{ctx.stage.inputs[0]}' — the eval suite is empty; "
                    f"run with more records (or a larger {opts.split} ratio) to get one")
        ctx.stats_extra["eval_suite"] = {"status": "empty_test_split", "size": 0}
        return
    version = _version(test)
    by_id = {str(r["id"]): r for r in test}
    params = {"size": opts.size, "seed": opts.seed, "split": opts.split}
    stored, moved = _existing(ctx, version, params)
    status = "reused" if stored is not None else ("replaced" if moved else "new")
    if stored is None:
        stored = [{"id": r["id"], "messages": r["parsed"]["messages"],
                   "facets": {k: _facet(r, k) for k in ("payload_type", "category", "difficulty", "region")}}
                  for r in select(test, opts.size, opts.seed)]
        ctx.write_bytes(SUITE, b"".join(json.dumps(s, ensure_ascii=False).encode() + b"\n" for s in stored))
        ctx.write_json(META, {"version": version, "params": params, "sha256": file_sha256(ctx.path(SUITE)),
                              "size": len(stored), "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    suite = [by_id[str(s["id"])] for s in stored]
    _check_disjoint(suite, others)
    for rec in suite:
        out = ctx.derive(rec)
        out["data"]["eval_suite_version"] = version
        ctx.accept(out)
    ctx.stats_extra["eval_suite"] = _stats(suite, everything, version, status, moved)


def _stats(suite: list[dict[str, Any]], everything: list[dict[str, Any]], version: str, status: str,
           moved: str | None) -> dict[str, Any]:
    counts = {f: dict(sorted(Counter(_facet(r, f) for r in suite).items()))
              for f in ("payload_type", "difficulty", "category")}
    missing = {f: sorted({_facet(r, f) for r in everything} - set(counts[f])) for f in ("payload_type", "difficulty")}
    return {"version": version, "status": status, "size": len(suite), "counts": counts,
            "missing_from_suite": missing, "previous_moved_to": moved, "overlap_with_train_val": 0}
