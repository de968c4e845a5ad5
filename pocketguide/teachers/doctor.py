"""`pocketguide doctor`: is the embedded teacher usable here? Returns a dict; the CLI renders it."""

from __future__ import annotations

import asyncio
import json
import platform
from typing import Any

from jsonschema import Draft202012Validator

from pocketguide.engine.errors import PocketguideError
from pocketguide.engine.teacher_spec import TeacherSettings
from pocketguide.teachers.base import TeacherRequest
from pocketguide.teachers.structured import response_format_for, system_prompt_for, worst_case_tokens

#: a small schema with the shapes that trip tiny models (free strings, an array, an enum)
PROBE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["city", "tips", "budget"],
    "properties": {
        "city": {"type": "string", "minLength": 1, "description": "Lisbon"},
        "tips": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1,
                                                             "description": "Take tram 28 early"}},
        "budget": {"type": "string", "enum": ["low", "medium", "high"]},
    },
}
PROBE_PROMPT = "Give two short tips for a first visit to Lisbon, as JSON."
PROBE_DEFAULTS: dict[str, Any] = {
    "provider": "embedded", "temperature": 0.0, "repeat_penalty": 1.2, "max_tokens": 160,
    "response_format": "json_schema",
    "system_prompt": "You are a travel assistant. Answer with one JSON object only.",
}


def probe_settings(settings: TeacherSettings | None = None) -> TeacherSettings:
    """The doctor's settings: its defaults, then whatever the caller (stages.yaml, flags) sets."""
    return TeacherSettings(**PROBE_DEFAULTS).merged(settings)


def _check_generation(teacher: Any, settings: TeacherSettings) -> dict[str, Any]:
    rf = response_format_for(settings, PROBE_SCHEMA, "doctor_probe")
    messages = [{"role": "system", "content": system_prompt_for(settings, rf) or ""},
                {"role": "user", "content": PROBE_PROMPT}]
    request = TeacherRequest(messages=messages, response_format=rf, **settings.group("sampling"))
    response = asyncio.run(teacher.generate(request))
    errors: list[str] = []
    try:
        value = json.loads(response.text)
        errors = [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                  for e in Draft202012Validator(PROBE_SCHEMA).iter_errors(value)]
    except ValueError as exc:
        errors = [f"not JSON: {exc}"]
    completion = response.usage.get("completion_tokens", 0)
    return {
        "schema_valid": not errors and response.finish_reason != "length",
        "errors": errors[:3],
        "finish_reason": response.finish_reason,
        "seconds": round(response.latency_s, 3),
        "completion_tokens": completion,
        "tokens_per_s": round(completion / response.latency_s, 1) if response.latency_s > 0 else None,
        "worst_case_tokens": worst_case_tokens(rf["json_schema"]["schema"]) if rf else None,
        "text": response.text[:600],
    }


def diagnose(settings: TeacherSettings | None = None, generate: bool = True) -> dict[str, Any]:
    """Runtime, model, threads and (when `generate`) one schema-constrained test generation.

    Never raises for a broken setup: problems come back under `ok: False` and `error`, each a line
    saying what to install or set.
    """
    from pocketguide.teachers.embedded import EmbeddedTeacher

    s = probe_settings(settings)
    report: dict[str, Any] = {"ok": False, "python": platform.python_version(), "provider": "embedded"}
    try:
        teacher = EmbeddedTeacher(s)
        report.update(teacher.describe())
        report["model_size_mb"] = round(report["model_size"] / 1e6, 1)
        if generate:
            report["load_s"] = round(teacher.engine.load_s, 3)
            report["listener"] = teacher.engine.listening_address
            report["generation"] = _check_generation(teacher, s)
            report["ok"] = bool(report["generation"]["schema_valid"])
        else:
            report["ok"] = True
    except PocketguideError as exc:
        report["error"] = str(exc)
    return report
