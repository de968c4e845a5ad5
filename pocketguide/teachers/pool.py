"""One provider teacher per distinct endpoint for the whole run (the embedded model loads once), each
handed out inside a ManagedTeacher (cache, limits, retries, fallback, budget)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pocketguide.engine.teacher_spec import TeacherSettings
from pocketguide.teachers.cache import ResponseCache
from pocketguide.teachers.managed import ManagedTeacher, RunShared
from pocketguide.teachers.registry import DEFAULT_PROVIDER, PROVIDERS, build_teacher


class TeacherPool:
    def __init__(self) -> None:
        self._teachers: dict[str, Any] = {}
        self.shared = RunShared()
        self.stage: str | None = None
        self._cache_path: Path | None = None
        self.executor: Any = None  # the run's executor may serve in-process models from its workers

    def bind(self, data_dir: Path, options: Any, stage: str | None, concurrency: int, executor: Any = None) -> None:
        """Called as each stage starts: the run's cache, budget, concurrency ceiling and executor."""
        self.stage = stage
        self.executor = executor
        self.shared.ceiling = concurrency
        self.shared.budget.max_cost, self.shared.budget.max_requests = options.max_cost, options.max_requests
        use = options.cache and not options.dry_run
        self._cache_path = (Path(options.cache_path) if options.cache_path else Path(data_dir) / "cache.sqlite"
                            ) if use else None
        if self.shared.cache is not None and self.shared.cache.path != self._cache_path:
            self.shared.cache.close()
            self.shared.cache = None

    def get(self, settings: TeacherSettings, stage: str | None = None) -> ManagedTeacher:
        # one provider per endpoint: the endpoint and local-runtime groups say which one this is; sampling,
        # output shape, limits and prices change how it is called, not what it is
        key = json.dumps({**settings.group("endpoint"), **settings.group("local")}, sort_keys=True, default=str)
        if key not in self._teachers:
            self._teachers[key] = self._build(key, settings)
        if self.shared.cache is None and self._cache_path is not None:  # opened by the first teacher user
            self.shared.cache = ResponseCache(self._cache_path)
        return ManagedTeacher(self._teachers[key], settings, self.shared, stage or self.stage)

    def _build(self, key: str, settings: TeacherSettings) -> Any:
        """The provider teacher; one whose model runs in-process may be hosted by the executor's workers
        (each loads the model once), while cache, limits, retries and budget stay here, in the driver."""
        pdef = PROVIDERS.get(settings.provider or DEFAULT_PROVIDER)
        if self.executor is not None and pdef is not None and pdef.local:
            hosted = self.executor.host(key, settings, build_teacher)
            if hosted is not None:
                return hosted
        return build_teacher(settings)

    async def aclose(self) -> None:
        for t in self._teachers.values():
            await t.aclose()
        self._teachers.clear()
        if self.shared.cache is not None:
            self.shared.cache.close()
            self.shared.cache = None
