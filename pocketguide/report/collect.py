"""Everything the HTML run report shows, gathered from the store alone: no teacher, no model, no network.

One streaming pass over each stage's records.jsonl, rejected.jsonl and superseded.jsonl gives the
funnel, the reasons, facet and gate pass rates, the teacher figures and the browser's records; the
manifests give the facts; operations add their own sections through `registry.report_section`."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pocketguide.engine import registry
from pocketguide.engine.records import now_iso
from pocketguide.engine.redact import redact
from pocketguide.engine.sections import section
from pocketguide.engine.stats import StatsAccumulator
from pocketguide.engine.store import StageStore, iter_jsonl
from pocketguide.engine.version import __version__
from pocketguide.report.browse import StageSample, browser_row, quotas
from pocketguide.report.tally import TeacherTally, counters, headline

log = logging.getLogger("pocketguide.report")
DEFAULT_MAX_RECORDS = 20_000  # records the browser carries; a bigger run is sampled by lineage
DEFAULT_MAX_CHARS = 4_000  # per text field in the browser
SUPERSEDED = "superseded.jsonl"
_ACC_KEYS = {"total", "accepted", "rejected", "acceptance_rate", "rejection_reasons", "facets", "gates", "modes",
             "dry_run_records", "teacher", "run"}


def build_report_data(pipe: Any, *, max_records: int = DEFAULT_MAX_RECORDS, max_chars: int = DEFAULT_MAX_CHARS,
                      extra_sections: Iterable[dict[str, Any]] = (), teacher: Any = None,
                      settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report as one JSON-able dict (what the page embeds). `teacher`/`settings`: the overrides the run
    used (as for `pocketguide status`), so a stage is called stale only if such a run would redo it."""
    from pocketguide.engine.pipeline import pipeline_status

    states = {s.name: s for s in pipeline_status(pipe, teacher=teacher, settings=settings)}
    stores = {s.name: StageStore(pipe.data_dir, s.name) for s in pipe.stages}
    sizes = {name: sum(_count_lines(p) for p in _files(store)) for name, store in stores.items()}
    quota = quotas(sizes, max_records)
    stages, rows = [], []
    for index, spec in enumerate(pipe.stages):
        summary, stage_rows = _stage(pipe, spec, index, stores[spec.name], states[spec.name], quota[spec.name],
                                     max_chars)
        stages.append(summary)
        rows += stage_rows
    _link_funnel(pipe, stages)
    total = sum(sizes.values())
    return {
        "meta": {"pipeline": pipe.spec.pipeline.name, "stages_yaml": str(pipe.path), "data_dir": str(pipe.data_dir),
                 "generated_at": now_iso(), "pocketguide_version": __version__},
        "stages": stages,
        "sections": _sections(pipe, stores) + list(extra_sections),
        "browser": {"total": total, "shown": len(rows), "sampled": len(rows) < total, "max_chars": max_chars,
                    "columns": ["stage", "id", "status", "reasons", "facets", "parent_ids", "ancestors", "preview",
                                "detail"],
                    "rows": rows},
    }


def _files(store: StageStore) -> list[Path]:
    return [store.records_path, store.rejected_path, store.dir / SUPERSEDED]


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def facets_of(spec: Any) -> list[str]:
    """The stage's declared facets, plus the axes it fans out on or routes by (model, template, mode)."""
    facets = list(spec.facets or [])
    v = spec.variants
    implicit = [("variant.template", bool(v and len(v.templates) > 1)),
                ("variant.model", bool(v and len(v.models) > 1)), ("mode", bool(spec.route))]
    return facets + [f for f, wanted in implicit if wanted and f not in facets]


def _stage(pipe: Any, spec: Any, index: int, store: StageStore, state: Any, quota: int, max_chars: int
           ) -> tuple[dict[str, Any], list[list[Any]]]:
    facets = facets_of(spec)
    acc, tally, sample = StatsAccumulator(facets), TeacherTally(), StageSample(quota)
    superseded = 0
    for path in _files(store):
        for rec in iter_jsonl(path):
            sample.offer(rec)
            if path.name == SUPERSEDED:
                superseded += 1
                continue
            acc.add(rec)
            tally.add(rec)
    stats, manifest = store.stats() or {}, store.manifest()
    counted, teacher, numbers = acc.to_dict(), tally.figures(), counters(stats, manifest)
    from_records = {f"records.{k}": v for k, v in (teacher or {}).get("other", {}).items()}
    summary = {
        "name": spec.name, "index": index, "kind": f"op:{spec.op}" if spec.op else _kind(spec),
        "description": spec.description, "inputs": list(spec.inputs), "source": spec.source, "facets": facets,
        "state": _state(state), "stale_inputs": list(state.stale_inputs),
        "accepted": counted["accepted"], "rejected": counted["rejected"], "superseded": superseded,
        "pending": ((manifest or {}).get("counts") or {}).get("pending", 0),
        "acceptance_rate": counted["acceptance_rate"], "reasons": counted["rejection_reasons"],
        "facet_rates": counted["facets"], "gates": counted["gates"], "modes": counted["modes"],
        "teacher": teacher, "counters": numbers,
        "teacher_headline": headline({**numbers, **from_records}),
        "stats_extra": {k: v for k, v in stats.items() if k not in _ACC_KEYS},
        "note": (manifest or {}).get("note"), "manifest": manifest_facts(manifest),
    }
    return summary, [browser_row(r, index, facets, max_chars) for r in sample.records()]


def _kind(spec: Any) -> str:
    parts = [spec.mode or ("routed" if spec.route else ""), "+route" if spec.route and spec.mode else "",
             "+variants" if spec.variants else ""]
    return " ".join(x for x in parts if x)


def _state(state: Any) -> str:
    if state.stale:
        return "stale"
    return "done" if state.complete else "partial" if state.ran else "not run"


def _link_funnel(pipe: Any, stages: list[dict[str, Any]]) -> None:
    """What flowed into each stage: the driving input's accepted records, or the source file's lines
    (JSONL, one record a line); None for a first stage that is an operation."""
    by_name = {s["name"]: s for s in stages}
    for s in stages:
        if s["inputs"]:
            s["in"], s["in_from"] = by_name[s["inputs"][0]]["accepted"], s["inputs"][0]
        elif s["source"] and not s["kind"].startswith("op:"):  # an op reads its source its own way
            path = pipe.resolve(s["source"])
            s["in"], s["in_from"] = (_count_lines(path) if path.exists() else None), f"source {s['source']}"
        else:
            s["in"], s["in_from"] = None, None


def manifest_facts(m: dict[str, Any] | None) -> dict[str, Any] | None:
    """What made a stage's output: run id, when, spec fingerprint, template / schema / input / output hashes."""
    if not m:
        return None
    spec_json = json.dumps(m.get("spec") or {}, sort_keys=True, ensure_ascii=True, default=str)
    schema = m.get("schema") or {}
    return {
        "run_id": m.get("run_id"), "finished_at": m.get("finished_at"), "complete": m.get("complete"),
        "stopped": m.get("stopped"), "dry_run": m.get("dry_run"), "limit": m.get("limit"),
        "pocketguide_version": m.get("pocketguide_version"),
        "spec_sha256": hashlib.sha256(spec_json.encode()).hexdigest(),
        "templates": m.get("templates") or {},
        "schema": {schema.get("path") or "schema": schema.get("sha256")} if schema else {},
        "inputs": m.get("inputs") or {}, "outputs": m.get("outputs") or {},
        "teacher_settings": redact(m.get("teacher_settings")), "counts": m.get("counts") or {},
    }


def _sections(pipe: Any, stores: dict[str, StageStore]) -> list[dict[str, Any]]:
    """What each operation's stages add (training curves, score pivots, …), for stages that have output."""
    out = []
    for spec in pipe.stages:
        fn = registry.REPORT_SECTIONS.get(spec.op or "")
        if fn is None or not stores[spec.name].dir.exists():
            continue
        found = run_section(fn, pipe, spec, lambda name: stores[name])
        if found:
            out.append(found)
    return out


def run_section(fn: Callable[..., Any], pipe: Any, spec: Any, store_of: Callable[[str], Any]) -> dict[str, Any] | None:
    """One registered section; a section that fails becomes a note in the report, never a crash."""
    try:
        return fn(pipe, spec, store_of)
    except Exception as exc:  # a report is read after the fact: show what failed, keep the rest
        log.warning("report section of stage %s failed: %s", spec.name, exc, exc_info=True)
        return section(f"{spec.name} (op {spec.op})", spec.name,
                       notes=[f"this section could not be built: {type(exc).__name__}: {exc}"])
