"""Score reports: one row per scored record joined with every upstream record it descends from, then
pivots, summaries and the top-scored parents, as CSV (and a PNG chart when matplotlib is installed).

Nothing here knows stage names: the chain is the score stage and its first inputs, upstream to
downstream (e.g. combos → draft → essay → evaluation); each chain stage contributes
`<stage>_id/_template/_model/_replicate` columns."""

from __future__ import annotations

import csv
import io
import logging
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pocketguide.engine.errors import StageError
from pocketguide.engine.store import StageStore, atomic_write_bytes

log = logging.getLogger("pocketguide.reports")


@dataclass
class ScoreReport:
    score_stage: str
    chain: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per score-stage record (rejected too)
    pivot: list[dict[str, Any]] = field(default_factory=list)  # score model × score template
    summaries: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # "<stage>_template" → rows
    top: list[dict[str, Any]] = field(default_factory=list)  # best parents of the scored records
    max_score: float = 10.0

    @property
    def scored(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["score"] is not None]


def chain_of(pipe: Any, stage: str) -> list[str]:
    """`stage` and its driving inputs up to the first stage, upstream first."""
    chain = [stage]
    spec = pipe.stage(stage)
    while spec.inputs:
        chain.insert(0, spec.inputs[0])
        spec = pipe.stage(spec.inputs[0])
    return chain


def _describe(prefix: str, rec: dict[str, Any] | None) -> dict[str, Any]:
    variant = (rec or {}).get("variant") or {}
    return {f"{prefix}_id": (rec or {}).get("id"),
            f"{prefix}_template": (rec or {}).get("template") or variant.get("template"),
            f"{prefix}_model": variant.get("model") or ((rec or {}).get("teacher") or {}).get("model"),
            f"{prefix}_replicate": variant.get("replicate", 0) if rec else None}


def _score(rec: dict[str, Any]) -> float | None:
    value = rec.get("parsed")
    if isinstance(value, dict):
        value = value.get("score")
    if rec.get("status") != "accepted" or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _flat(value: Any) -> Any:
    return "+".join(map(str, value)) if isinstance(value, list) else value


def _stats(scores: list[float], top: float) -> dict[str, Any]:
    return {"count": len(scores), "mean": round(statistics.fmean(scores), 3) if scores else None,
            "min": min(scores, default=None), "max": max(scores, default=None),
            "n_perfect": sum(1 for s in scores if s >= top)}


def _group(rows: Iterable[dict[str, Any]], keys: list[str], top: float) -> list[dict[str, Any]]:
    groups: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        groups[tuple(r.get(k) for k in keys)].append(r["score"])
    out = [{**dict(zip(keys, k)), **_stats(v, top)} for k, v in groups.items()]
    return sorted(out, key=lambda r: tuple(str(r[k]) for k in keys))


def build_score_report(pipe: Any, stage: str, store_of: Callable[[str], StageStore], *, top_n: int = 10,
                       max_score: float = 10.0) -> ScoreReport:
    """Join every record of `stage` with its ancestors along the chain and aggregate the scores."""
    chain = chain_of(pipe, stage)
    report = ScoreReport(stage, chain, max_score=max_score)
    score_store = store_of(stage)
    if not score_store.records_path.exists():
        raise StageError(f"stage '{stage}' has no output yet — run `pocketguide run-all` first")
    index = {name: {r["id"]: r for r in store_of(name).accepted()} for name in chain[:-1]}
    for rec in score_store.all_records():
        row: dict[str, Any] = {}
        cur: dict[str, Any] | None = rec
        for i in range(len(chain) - 1, -1, -1):  # walk up the parents, downstream first
            row.update(_describe(chain[i], cur))
            parent = ((cur or {}).get("parent_ids") or [None])[0]
            cur = index[chain[i - 1]].get(parent) if i and parent else None
        row.update({k: _flat(v) for k, v in (rec.get("data") or {}).items() if not isinstance(v, dict)})
        row.update(status=rec.get("status"), reasons=";".join(rec.get("reasons") or []), score=_score(rec))
        report.rows.append(row)
    scored = report.scored
    report.pivot = _group(scored, [f"{stage}_model", f"{stage}_template"], max_score)
    for name in chain[:-1]:
        for axis in ("template", "model"):
            key = f"{name}_{axis}"
            if any(r.get(key) for r in scored):
                report.summaries[key] = _group(scored, [key], max_score)
    report.top = _top(report, top_n)
    return report


def _top(report: ScoreReport, n: int) -> list[dict[str, Any]]:
    """The scored records' parents (e.g. essays) by mean score, best first."""
    if len(report.chain) < 2:
        return []
    parent = report.chain[-2]
    by_parent: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in report.scored:
        by_parent[r[f"{parent}_id"]].append(r)
    out = []
    for rows in by_parent.values():
        scores = [r["score"] for r in rows]
        first = rows[0]
        keep = {k: v for k, v in first.items() if not k.startswith(report.score_stage + "_")
                and k not in ("score", "status", "reasons")}
        out.append({**keep, "mean": round(statistics.fmean(scores), 3), "min": min(scores), "max": max(scores),
                    "count": len(scores)})
    out.sort(key=lambda r: (-r["mean"], -r["count"], str(r[f"{parent}_id"])))
    return out[:n]


def _csv(rows: list[dict[str, Any]]) -> bytes:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


def write_score_report(report: ScoreReport, out_dir: Path, chart: bool = True) -> dict[str, Path]:
    """Every table as CSV (atomic writes) and, if matplotlib is installed, scores.png."""
    files = {"scores": report.rows, "pivot": report.pivot, "top": report.top,
             **{f"summary_by_{k}": v for k, v in report.summaries.items()}}
    written = {}
    for name, rows in files.items():
        path = out_dir / f"{name}.csv"
        atomic_write_bytes(path, _csv(rows))
        written[name] = path
    if chart and report.scored:
        png = score_chart(report)
        if png is not None:
            atomic_write_bytes(out_dir / "scores.png", png)
            written["chart"] = out_dir / "scores.png"
    return written


def score_chart(report: ScoreReport) -> bytes | None:
    """A box plot of the score distribution per evaluator (model / template); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib is not installed; no chart (pip install matplotlib)")
        return None
    s = report.score_stage
    groups: dict[str, list[float]] = defaultdict(list)
    for r in report.scored:
        groups[f"{r[f'{s}_model'] or '-'}\n{r[f'{s}_template'] or '-'}"].append(r["score"])
    labels = sorted(groups)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(labels)), 4.0))
    ax.boxplot([groups[k] for k in labels], tick_labels=labels)
    ax.set_ylim(-0.5, report.max_score + 0.5)
    ax.set_ylabel("score")
    ax.set_title(f"{s}: score distribution per evaluator (n={len(report.scored)})")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def score_section(report: ScoreReport) -> dict[str, Any]:
    """The same pivots, summaries and top list for the HTML run report (engine/sections.py shapes)."""
    from pocketguide.engine.sections import bars, section, table_of

    s = report.score_stage
    model, template = f"{s}_model", f"{s}_template"
    items = [{"label": f"{r[model] or '-'} · {r[template] or '-'}", "value": r["mean"], "lo": r["min"],
              "hi": r["max"], "n": r["count"]} for r in report.pivot]
    blocks = [bars(f"{s}: mean score by judge model × template (whiskers: min–max, n: scores)", items,
                   max_value=report.max_score),
              table_of(f"{s}: pivot by judge model × template", report.pivot,
                       [model, template, "count", "mean", "min", "max", "n_perfect"])]
    for key, rows in report.summaries.items():
        blocks.append(table_of(f"by {key}", rows, [key, "count", "mean", "min", "max", "n_perfect"]))
    if report.top:
        parent = report.chain[-2]
        cols = [f"{parent}_id"] + [c for c in (f"{parent}_template", f"{parent}_model", "concept_ids")
                                   if c in report.top[0]]
        blocks.append(table_of(f"top {len(report.top)} {parent} records by mean score", report.top,
                               cols + ["count", "mean", "min", "max"]))
    unscored = len(report.rows) - len(report.scored)
    return section(f"Scores of {s}", s, blocks=blocks,
                   facts={"evaluations": len(report.rows), "scored": len(report.scored),
                          "without a score (rejected)": unscored, "score range": f"0–{report.max_score:g}",
                          "chain": " → ".join(report.chain)})
