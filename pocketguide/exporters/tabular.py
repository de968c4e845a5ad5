"""Records → flat rows (for Parquet and Hugging Face datasets) and the dataset card."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from pocketguide.engine.store import read_json

_SCALARS = (str, int, float, bool, type(None))


def to_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per record: id, stage, `messages` (chat records) or `parsed` as JSON text, and every
    scalar `data` field as its own column (a field whose values mix types becomes text)."""
    recs = list(records)
    keys: dict[str, set[type]] = {}
    for r in recs:
        for k, v in (r.get("data") or {}).items():
            keys.setdefault(k, set()).add(type(v))
    scalar = {k for k, ts in keys.items() if all(t in _SCALARS for t in ts)}
    as_text = {k for k in scalar if len(keys[k] - {type(None)}) > 1}
    chat = bool(recs) and all(_is_chat(r.get("parsed")) for r in recs)
    rows = []
    for r in recs:
        data = r.get("data") or {}
        row: dict[str, Any] = {"id": str(r.get("id")), "stage": r.get("stage")}
        if chat:
            row["messages"] = [{"role": m["role"], "content": m["content"]} for m in r["parsed"]["messages"]]
        else:
            row["parsed"] = json.dumps(r.get("parsed"), ensure_ascii=False)
        for k in sorted(scalar):
            v = data.get(k)
            row[k] = None if v is None else (str(v) if k in as_text else v)
        rest = {k: v for k, v in data.items() if k not in scalar}
        row["data_extra"] = json.dumps(rest, ensure_ascii=False) if rest else None
        rows.append(row)
    return rows


def _is_chat(parsed: Any) -> bool:
    return isinstance(parsed, dict) and isinstance(parsed.get("messages"), list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in parsed["messages"])


def pipeline_facts(pipe: Any) -> dict[str, Any]:
    """What the card reports from every stage's manifest and stats: schemas, teachers, gates, QA."""
    schemas, teachers, gates, checks = {}, Counter(), {}, {}
    for stage in pipe.stages:
        folder = pipe.data_dir / stage.name
        m, s = read_json(folder / "manifest.json") or {}, read_json(folder / "stats.json") or {}
        if m.get("schema"):
            schemas[stage.name] = m["schema"]
        env = (m.get("sft_format") or {}).get("envelope_schema")
        if env:
            schemas[f"{stage.name} (targets)"] = env
        teachers.update((s.get("teacher") or {}).get("models") or {})
        if s.get("gates"):
            gates[stage.name] = {g: v.get("pass_rate") for g, v in s["gates"].items()}
        if "split" in s:
            checks["clusters_spanning_splits"] = s["split"].get("clusters_spanning_splits")
            checks["max_mix_deviation_points"] = s["split"].get("max_mix_deviation_points")
        if "qa" in s:
            checks["qa_dropped"] = s["qa"].get("dropped")
        if (m.get("sft_format") or {}).get("eos"):
            checks["eos"] = m["sft_format"]["eos"]
    return {"schemas": schemas, "teachers": dict(teachers), "gates": gates, "checks": checks}


def dataset_card(pipe: Any, stage: Any, rows: list[dict[str, Any]]) -> str:
    facts = pipeline_facts(pipe)
    lines = ["---", f"pretty_name: {pipe.spec.pipeline.name} {stage.name}", "task_categories: [text-generation]",
             "language: [en]", "---", "", f"# {pipe.spec.pipeline.name}: `{stage.name}` records", "",
             f"Exported by pocketguide from stage `{stage.name}` ({len(rows)} records).", "", "## Counts", ""]
    for facet in ("split", "payload_type", "category", "difficulty"):
        c = Counter(str(r.get(facet)) for r in rows if r.get(facet) is not None)
        if c:
            lines.append(f"- **{facet}**: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())))
    lines += ["", "## Schemas", ""]
    lines += [f"- {name}: `{s.get('path')}` id={s.get('id')} version={s.get('version')} "
              f"sha256={str(s.get('sha256'))[:12]}" for name, s in facts["schemas"].items()] or ["- (none recorded)"]
    lines += ["", "## Teacher models", ""]
    lines += [f"- {m}: {n} calls" for m, n in sorted(facts["teachers"].items())] or ["- (none recorded)"]
    lines += ["", "## Gate pass rates", ""]
    lines += [f"- {st}: " + ", ".join(f"{g} {r:.1%}" for g, r in sorted(v.items()) if r is not None)
              for st, v in facts["gates"].items()] or ["- (no gates ran)"]
    if facts["checks"]:
        lines += ["", "## Checks", ""] + [f"- {k}: {v}" for k, v in facts["checks"].items()]
    if rows and "messages" in rows[0]:
        lines += ["", "## Format", "", "Each row has `messages` (system, user, assistant). The assistant target is "
                  "the canonical JSON envelope with no end-of-sequence token; the trainer appends the "
                  "tokenizer's EOS token."]
    return "\n".join(lines) + "\n"


def default_target(pipe: Any, stage: Any, out: Path | None, suffix: str) -> Path:
    return out or (pipe.data_dir / "exports" / f"{stage.name}{suffix}")
