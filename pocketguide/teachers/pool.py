"""One provider teacher per distinct endpoint for the whole run (the embedded model loads once), each
handed out inside a ManagedTeacher (cache, limits, retries, fallback, budget)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pocketguide.engine.spec import TeacherSettings
from pocketguide.teachers.cache import ResponseCache
from pocketguide.teachers.managed import ManagedTeacher, RunShared
from pocketguide.teachers.registry import build_teacher

# Settings that shape how a teacher is called, not which endpoint it is (one provider per endpoint).
_CALL_SETTINGS = {"temperature", "top_p", "max_tokens", "seed", "system_prompt", "response_format", "repeat_penalty",
                  "models", "fallback_models", "requests_per_minute", "input_tokens_per_minute",
                  "output_tokens_per_minute", "max_retries", "retry_initial_s", "retry_max_s", "circuit_window",
                  "circuit_error_rate", "prices", "schema_max_string", "schema_max_items", "schema_text_chars", "judge",
                  "schema_fit_max_tokens", "one_shot"}


class TeacherPool:
    def __init__(self) -> None:
        self._teachers: dict[str, Any] = {}
        self.shared = RunShared()
        self.stage: str | None = None
        self._cache_path: Path | None = None

    def bind(self, data_dir: Path, options: Any, stage: str | None, concurrency: int) -> None:
        """Called as each stage starts: the run's cache, budget and concurrency ceiling."""
        self.stage = stage
        self.shared.ceiling = concurrency
        self.shared.budget.max_cost, self.shared.budget.max_requests = options.max_cost, options.max_requests
        use = options.cache and not options.dry_run
        self._cache_path = (Path(options.cache_path) if options.cache_path else Path(data_dir) / "cache.sqlite"
                            ) if use else None
        if self.shared.cache is not None and self.shared.cache.path != self._cache_path:
            self.shared.cache.close()
            self.shared.cache = None

    def get(self, settings: TeacherSettings, stage: str | None = None) -> ManagedTeacher:
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
