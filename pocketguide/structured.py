"""What a stage asks the teacher for when it wants structured output."""

from __future__ import annotations

from typing import Any

from .spec import TeacherSettings


def response_format_for(settings: TeacherSettings, schema: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    if settings.response_format == "json_schema" and schema is not None:
        return {"type": "json_schema", "json_schema": {"name": name.replace("-", "_")[:64], "schema": schema,
                                                       "strict": True}}
    if settings.response_format == "json_object":
        return {"type": "json_object"}
    return None
