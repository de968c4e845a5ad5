"""The `dataset` operation: every planned id ends here, accepted (the refined envelope) or rejected with the
reasons of the stage that stopped it, plus a report computed from the stages' own records.

Why an op and not a per-record stage: its report needs every stage's accepted *and* rejected records
(gate pass rates from the gates' own results, verdicts, parse modes, teacher usage), and an id that
never reached the last stage must still be accounted for — a per-record loop only sees accepted input.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pocketguide.engine.errors import StageError
from pocketguide.engine.records import lookup
from pocketguide.engine.registry import operation
from pocketguide.engine.store import file_sha256, iter_jsonl


class DatasetOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    universe: str = Field("plan", description="stage whose ids every dataset line accounts for")
    trace: list[str] = Field(["draft", "critique", "refine"],
                             description="stages in order; the last one's accepted records form the dataset")
    verdict_stage: str = Field("critique", description="stage whose parsed verdict is reported")
    verdict_path: str = Field("parsed.verdict", description="where that stage writes the verdict")
    facets: list[str] = Field(["payload_type", "category", "difficulty"], description="data fields counted")


def _stage_records(ctx: Any, name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    store = ctx.input_store(name)
    return list(ctx.records(name)), list(iter_jsonl(store.rejected_path))


def _rate(passed: int, failed: int) -> dict[str, Any]:
    n = passed + failed
    return {"evaluated": n, "passed": passed, "failed": failed, "pass_rate": round(passed / n, 4) if n else None}


def gate_rates(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Pass rates from each record's own gate results (a gate that never ran is not counted)."""
    c: dict[str, Counter[str]] = defaultdict(Counter)
    for rec in records:
        for g in rec.get("gates") or []:
            c[g.get("name", "?")]["passed" if g.get("passed") else "failed"] += 1
    return {name: _rate(v["passed"], v["failed"]) for name, v in sorted(c.items())}


def _report(opts: DatasetOptions, by_stage: dict[str, tuple[list, list]], accepted: list[dict[str, Any]],
            rejected: list[dict[str, Any]]) -> dict[str, Any]:
    final = opts.trace[-1]
    models: dict[str, Counter[str]] = {}
    tokens: dict[str, dict[str, int]] = {}
    parse_modes: dict[str, Counter[str]] = {}
    routes: Counter[str] = Counter()
    for name, (acc, rej) in by_stage.items():
        models[name], parse_modes[name] = Counter(), Counter()
        tokens[name] = {"prompt_tokens": 0, "completion_tokens": 0, "calls": 0}
        for rec in acc + rej:
            t = rec.get("teacher") or {}
            if t:
                models[name][t.get("selected_model") or t.get("model") or "?"] += 1
                tokens[name]["calls"] += 1
                for k in ("prompt_tokens", "completion_tokens"):
                    tokens[name][k] += int((t.get("usage") or {}).get(k) or 0)
            mode = (rec.get("parse_notes") or {}).get("parse_mode")
            if mode:
                parse_modes[name][mode] += 1
            if name == final and rec.get("route"):
                routes[str(rec["route"].get("mode"))] += 1
    v_acc, _ = by_stage.get(opts.verdict_stage, ([], []))
    verdicts = Counter(str(lookup(r, opts.verdict_path, None)) for r in v_acc)
    by_critic: dict[str, Counter[str]] = defaultdict(Counter)  # which generator wrote each verdict (made_by)
    for r in v_acc:
        by_critic[str(r.get("made_by") or r.get("mode"))][str(lookup(r, opts.verdict_path, None))] += 1
    counts = {f: dict(sorted(Counter(str((r.get("data") or {}).get(f)) for r in accepted).items()))
              for f in opts.facets}
    return {
        "gate_pass_rates": gate_rates([*by_stage[final][0], *by_stage[final][1]]),
        "gate_pass_rates_by_stage": {n: gate_rates(a + r) for n, (a, r) in by_stage.items() if gate_rates(a + r)},
        "verdicts": dict(sorted(verdicts.items())),
        "verdicts_by_critic": {k: dict(sorted(v.items())) for k, v in sorted(by_critic.items())},
        "routes": dict(sorted(routes.items())),
        "rejected_at": dict(sorted(Counter(r["rejected_at"] for r in rejected).items())),
        "rejection_reasons_by_stage": {
            stage: dict(Counter(x for r in rejected if r["rejected_at"] == stage for x in r["reasons"]).most_common())
            for stage in sorted({r["rejected_at"] for r in rejected})},
        "counts": counts,
        "teacher_models": {n: dict(c) for n, c in models.items() if c},
        "teacher_tokens": {n: t for n, t in tokens.items() if t["calls"]},
        "parse_modes": {n: dict(sorted(c.items())) for n, c in parse_modes.items() if c},
    }


@operation("dataset", options=DatasetOptions)
def dataset(ctx: Any, opts: DatasetOptions) -> None:
    """Accepted final records → the dataset; every other planned id → rejected with its stage's reasons."""
    missing = [s for s in [opts.universe, *opts.trace] if s not in ctx.stage.inputs]
    if missing:
        raise StageError(f"stage '{ctx.stage.name}': options name {missing} but inputs are {ctx.stage.inputs} — "
                         f"add them to inputs")
    by_stage = {name: _stage_records(ctx, name) for name in opts.trace}
    # latest-known record per id and stage: a rerun appends, the last line wins
    index = {name: {r["id"]: r for r in acc + rej} for name, (acc, rej) in by_stage.items()}
    accepted: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    final = opts.trace[-1]
    draft_modes = {r["id"]: (r.get("parse_notes") or {}).get("parse_mode") for r in by_stage[opts.trace[0]][0]}
    verdicts = {r["id"]: lookup(r, opts.verdict_path, None) for r in by_stage.get(opts.verdict_stage, ([], []))[0]}
    for up in ctx.records(opts.universe):
        rid = up["id"]
        provenance = {n: ((index[n].get(rid) or {}).get("teacher") or {}).get("model") for n in opts.trace}
        extra = {"verdict": verdicts.get(rid), "parse_mode": draft_modes.get(rid)}
        hit = index[final].get(rid)
        if hit is not None and hit.get("status") == "accepted":
            rec = ctx.derive(hit, prompt=up.get("prompt") or (up.get("data") or {}).get("prompt"),
                             gates=hit.get("gates") or [], provenance=provenance)
            rec["data"].update(extra, refine_mode=hit.get("mode"))
            ctx.accept(rec)
            accepted.append(rec)
            continue
        stage, why = _where_stopped(opts.trace, index, rid)
        src = index[stage].get(rid) if stage else None
        rec = ctx.derive(src or up, prompt=(up.get("data") or {}).get("prompt"), gates=(src or {}).get("gates") or [],
                         provenance=provenance, rejected_at=stage or "pending")
        rec["data"].update(extra)
        ctx.reject(rec, *why, error=(src or {}).get("error"))
        rejected.append(rec)
    ctx.stats_extra["report"] = _report(opts, by_stage, accepted, rejected)
    ctx.manifest_extra["files_read"] = {
        _rel(ctx, ctx.input_store(n).rejected_path): file_sha256(ctx.input_store(n).rejected_path)
        for n in opts.trace}


def _where_stopped(trace: list[str], index: dict[str, dict[str, Any]], rid: str) -> tuple[str | None, list[str]]:
    """The stage that rejected this id (its reasons), or the first stage that has not processed it yet."""
    for i, name in enumerate(trace):
        rec = index[name].get(rid)
        if rec is None:
            return None, [f"pending:{name}"]
        if rec.get("status") != "accepted":
            return name, list(rec.get("reasons") or ["rejected"])
    return None, ["pending"]


def _rel(ctx: Any, path) -> str:
    try:
        return str(path.relative_to(ctx.pipe.root))
    except ValueError:
        return str(path)
