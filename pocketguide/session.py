"""What one run shares across stages: options, the progress sink, and the teachers built so far."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from .spec import StageSpec, TeacherSettings


class Progress(Protocol):
    def stage_started(self, stage: str, total: int | None, already_done: int) -> None: ...
    def record_done(self, stage: str, record: dict[str, Any]) -> None: ...
    def stage_finished(self, stage: str, result: Any) -> None: ...
    def message(self, text: str) -> None: ...


class NullProgress:
    """The do-nothing progress sink, so library call sites need no `if`."""

    def stage_started(self, stage: str, total: int | None, already_done: int) -> None:
        pass

    def record_done(self, stage: str, record: dict[str, Any]) -> None:
        pass

    def stage_finished(self, stage: str, result: Any) -> None:
        pass

    def message(self, text: str) -> None:
        pass


@dataclass
class RunOptions:
    limit: int | None = None  # at most this many new records
    fresh: bool = False  # move old output aside and start over
    dry_run: bool = False  # render and validate; call no teacher; write under <data_dir>/dry-run
    concurrency: int | None = None  # overrides pipeline.concurrency
    teacher: TeacherSettings | None = None  # CLI overrides (--teacher/--model/--base-url)
    progress: Any = field(default_factory=NullProgress)
    settings: dict[str, Any] = field(default_factory=dict)  # run-wide knobs gates and ops may read


_SECRET_NAME = re.compile(r"(auth|key|token|secret|password|cookie)", re.I)


def redact(obj: Any) -> Any:
    """Copy of obj with values under secret-looking names replaced (headers, extra_body)."""
    if isinstance(obj, dict):
        return {k: ("[REDACTED]" if isinstance(k, str) and _SECRET_NAME.search(k) and k != "api_key_env"
                    and isinstance(v, str) else redact(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


class TeacherPool:
    """One teacher per distinct endpoint for the whole run (the embedded model loads once)."""

    def __init__(self) -> None:
        self._teachers: dict[str, Any] = {}

    def get(self, settings: TeacherSettings):
        from .teachers import build_teacher

        key = json.dumps(settings.model_dump(exclude={"temperature", "top_p", "max_tokens", "seed",
                                                       "system_prompt", "response_format", "repeat_penalty",
                                                       "schema_max_string", "schema_max_items",
                                                       "schema_fit_max_tokens", "one_shot"},
                                              exclude_none=True), sort_keys=True)
        if key not in self._teachers:
            self._teachers[key] = build_teacher(settings)
        return self._teachers[key]

    async def aclose(self) -> None:
        for t in self._teachers.values():
            await t.aclose()
        self._teachers.clear()


def resolved_teacher(defaults: TeacherSettings, stage: StageSpec, overrides: TeacherSettings | None) -> TeacherSettings:
    return defaults.merged(stage.teacher, overrides)
