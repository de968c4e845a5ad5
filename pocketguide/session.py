"""What one run shares across stages: options, the progress sink, and the teachers built so far."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
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
    cache: bool = True  # reuse cached teacher answers and store new ones (--no-cache: neither)
    cache_path: str | None = None  # default <data_dir>/cache.sqlite
    max_cost: float | None = None  # stop the run cleanly once this many USD are spent (needs a price table)
    max_requests: int | None = None  # stop the run cleanly once this many requests were sent


_SECRET_NAME = re.compile(r"(auth|key|token|secret|password|cookie)", re.I)


_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)


def redact(obj: Any) -> Any:
    """Copy of obj with values under secret-looking names replaced (headers, extra_body) and
    credentials inside URLs (https://user:pass@host) dropped."""
    if isinstance(obj, dict):
        return {k: ("[REDACTED]" if isinstance(k, str) and _SECRET_NAME.search(k) and k != "api_key_env"
                    and isinstance(v, str) else redact(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    if isinstance(obj, str) and "@" in obj:
        return _URL_USERINFO.sub(r"\g<scheme>", obj)
    return obj


# Settings that shape how a teacher is called, not which endpoint it is (one provider per endpoint).
_CALL_SETTINGS = {"temperature", "top_p", "max_tokens", "seed", "system_prompt", "response_format", "repeat_penalty",
                  "models", "fallback_models", "requests_per_minute", "input_tokens_per_minute",
                  "output_tokens_per_minute", "max_retries", "retry_initial_s", "retry_max_s", "circuit_window",
                  "circuit_error_rate", "prices", "schema_max_string", "schema_max_items", "schema_text_chars", "judge",
                  "schema_fit_max_tokens", "one_shot"}


class TeacherPool:
    """One provider teacher per distinct endpoint for the whole run (the embedded model loads once),
    each handed out inside a ManagedTeacher (cache, limits, retries, fallback, budget)."""

    def __init__(self) -> None:
        from .teachers.managed import RunShared

        self._teachers: dict[str, Any] = {}
        self.shared = RunShared()
        self.stage: str | None = None
        self._cache_path: Path | None = None

    def bind(self, data_dir: Path, options: RunOptions, stage: str | None, concurrency: int) -> None:
        """Called by the runner before each stage: the run's cache, budget and concurrency ceiling."""
        self.stage = stage
        self.shared.ceiling = concurrency
        self.shared.budget.max_cost, self.shared.budget.max_requests = options.max_cost, options.max_requests
        use = options.cache and not options.dry_run
        self._cache_path = (Path(options.cache_path) if options.cache_path else Path(data_dir) / "cache.sqlite"
                            ) if use else None
        if self.shared.cache is not None and self.shared.cache.path != self._cache_path:
            self.shared.cache.close()
            self.shared.cache = None

    def get(self, settings: TeacherSettings, stage: str | None = None):
        from .teachers import build_teacher
        from .teachers.cache import ResponseCache
        from .teachers.managed import ManagedTeacher

        key = json.dumps(settings.model_dump(exclude=_CALL_SETTINGS, exclude_none=True), sort_keys=True)
        if key not in self._teachers:
            self._teachers[key] = build_teacher(settings)
        if self.shared.cache is None and self._cache_path is not None:  # opened by the first teacher user
            self.shared.cache = ResponseCache(self._cache_path)
        return ManagedTeacher(self._teachers[key], settings, self.shared, stage or self.stage)

    async def aclose(self) -> None:
        for t in self._teachers.values():
            await t.aclose()
        self._teachers.clear()
        if self.shared.cache is not None:
            self.shared.cache.close()
            self.shared.cache = None


def resolved_teacher(defaults: TeacherSettings, stage: StageSpec, overrides: TeacherSettings | None) -> TeacherSettings:
    return defaults.merged(stage.teacher, overrides)
