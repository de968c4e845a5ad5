"""`--format gens`: one folder per record, `gens/<stage>/<id>/{prompt.txt,raw.txt,parsed.txt,metadata.json}`.

metadata.json keeps the DayDreaming runner's contract (schemas/gens_metadata.schema.json): stage, gen_id,
template_id, template_path, template_sha1, model, parser_name, skip_llm, pass_through_from, files {prompt,
raw, parsed}, started_at, finished_at, duration_s, mode, error, error_message, cohort_id, run_id — and
pocketguide's own keys beside them (parent_id, ancestors, status, replicate, usage, finish_reason,
timings, parse_notes). A file the record has no text for is not written and its `files` entry is null; a
record that made no teacher call (copy mode: skip_llm) has no raw.txt. raw.txt holds the model's bytes as
sent; the parser read them with newlines normalised (engine/steps.py).

template_path and template_sha1 describe the stage's template as it is when exported (a record made from
an older template is stale: `pocketguide status` says so). Every file is written atomically (temp file +
fsync + rename), so a reader never sees half a file and a rerun overwrites in place. Rejected records are
exported too: error is their first reason code, error_message the message. The folder name is the id made
safe (engine/safenames.py: `..`, `/`, NUL bytes, 300 characters, case twins); `names.json` beside the
folders maps every folder name back to its id."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pocketguide.engine import registry
from pocketguide.engine.registry import exporter
from pocketguide.engine.safenames import NameMap
from pocketguide.engine.store import atomic_write_bytes, atomic_write_json

NAMES_FILE = "names.json"
SCHEMA_PATH = Path(__file__).parent / "schemas" / "gens_metadata.schema.json"
FILES = {"prompt": "prompt.txt", "raw": "raw.txt", "parsed": "parsed.txt"}


@dataclass
class TemplateInfo:
    path: str | None
    sha1: str | None
    parser: str


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)


def _template(pipe: Any, stage: Any, file: str | None, content: str | None, tid: str, parser: str | None
              ) -> TemplateInfo:
    name = parser or stage.parser or "identity"
    if content is not None:
        return TemplateInfo(f"inline:{stage.name}/{tid}", hashlib.sha1(content.encode()).hexdigest(), name)
    if file is None:
        return TemplateInfo(None, None, name)
    path = pipe.templates_dir / file
    try:
        sha1 = hashlib.sha1(path.read_bytes()).hexdigest()
    except OSError:
        sha1 = None  # the template is gone since: the record says which one, the hash cannot
    rel = str(path.relative_to(pipe.root)) if path.is_relative_to(pipe.root) else str(path)
    return TemplateInfo(rel, sha1, name)


def stage_templates(pipe: Any, stage: Any) -> dict[str | None, TemplateInfo]:
    """Template id → path, sha1 and parser (None: the stage's own `template`; route cases by their key)."""
    out = {None: _template(pipe, stage, stage.template, None, "default", stage.parser)}
    for t in stage.variants.templates if stage.variants else []:
        out[t.id] = _template(pipe, stage, t.file, t.content, t.id, t.parser)
    for key, case in stage.route.cases.items() if stage.route else []:
        if case.template:
            out[key] = _template(pipe, stage, case.template, None, key, stage.parser)
    return out


def _seconds(start: str | None, end: str | None) -> float | None:
    try:
        return round(max(0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()), 3)
    except (TypeError, ValueError):
        return None


def metadata(rec: dict[str, Any], cohort: str | None, template: TemplateInfo, files: dict[str, str | None]
             ) -> dict[str, Any]:
    variant = rec.get("variant") or {}
    teacher = rec.get("teacher") or {}
    parents = rec.get("parent_ids") or []
    timings = rec.get("timings") or {}
    mode = rec.get("mode")
    skip = mode is not None and not registry.calls_teacher(mode)
    failed = rec.get("status") != "accepted"
    return {
        "stage": rec.get("stage"),
        "gen_id": rec.get("id"),
        "template_id": rec.get("template") or variant.get("template"),
        "template_path": template.path,
        "template_sha1": template.sha1,
        "model": None if skip else (variant.get("model") or teacher.get("model")),
        "parser_name": template.parser,
        "skip_llm": skip,
        "pass_through_from": parents[0] if skip and parents else None,
        "files": files,
        "started_at": rec.get("created_at"),
        "finished_at": timings.get("finished_at"),
        "duration_s": _seconds(rec.get("created_at"), timings.get("finished_at")),
        "mode": mode,
        "error": ((rec.get("reasons") or ["rejected"])[0]) if failed else None,
        "error_message": rec.get("error") if failed else None,
        "cohort_id": (rec.get("data") or {}).get("cohort") or cohort,  # the cohort that made it, else the current
        "run_id": rec.get("run_id"),
        # pocketguide's own
        "parent_id": parents[0] if parents else None,
        "ancestors": rec.get("ancestors") or [],
        "status": rec.get("status"),
        "replicate": variant.get("replicate", 0),
        "usage": teacher.get("usage"),
        "finish_reason": teacher.get("finish_reason"),
        "timings": {k: v for k, v in timings.items() if k != "finished_at"} or None,
        "parse_notes": rec.get("parse_notes"),
    }


def write_record(folder: Path, rec: dict[str, Any], cohort: str | None, template: TemplateInfo) -> dict[str, Any]:
    """The record's text files (only those it has text for; no raw.txt without a teacher call), then metadata.json."""
    skip = rec.get("mode") is not None and not registry.calls_teacher(rec["mode"])
    files: dict[str, str | None] = {}
    for key, name in FILES.items():
        value = None if key == "raw" and skip else rec.get(key)
        files[key] = None if value is None else name
        if value is None:
            (folder / name).unlink(missing_ok=True)  # a rerun over an older export leaves no stale file
        else:
            atomic_write_bytes(folder / name, _text(value).encode("utf-8", "replace"))
    meta = metadata(rec, cohort, template, files)
    atomic_write_json(folder / "metadata.json", meta)
    return meta


@exporter("gens")
def export_gens(pipe: Any, stage: Any, store: Any, out: Path | None) -> Path:
    root = (out or (pipe.data_dir / "gens")) / stage.name
    cohort = getattr(pipe.extras.get("cohort"), "id", None)
    templates = stage_templates(pipe, stage)
    names = NameMap(reserved=(NAMES_FILE,))
    for rec in store.all_records():
        route = (rec.get("route") or {}).get("value")
        key = rec.get("template") or (rec.get("variant") or {}).get("template")
        info = templates.get(key) or templates.get(str(route) if route is not None else None) or templates[None]
        write_record(root / names.name(str(rec["id"])), rec, cohort, info)
    atomic_write_json(root / NAMES_FILE, names.mapping())  # folder name → record id
    return root
