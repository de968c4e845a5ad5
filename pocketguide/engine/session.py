"""What one run shares across stages: options, the progress sink, and run-scoped services."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from pocketguide.engine.executors import build_executor
from pocketguide.engine.spec import ExecutorSpec, StageSpec
from pocketguide.engine.teacher_spec import TeacherSettings


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
    executor: ExecutorSpec | None = None  # overrides pipeline.executor (--executor, --address)


class Services:
    """Run-scoped shared resources that plugins create on first use (a teacher pool, a loaded model),
    so a model loads once per run; the runner closes them all when the run ends."""

    def __init__(self) -> None:
        self._items: dict[str, Any] = {}

    def get(self, key: str, factory: Callable[[], Any]) -> Any:
        if key not in self._items:
            self._items[key] = factory()
        return self._items[key]

    async def aclose(self) -> None:
        items, self._items = list(self._items.values()), {}
        for item in reversed(items):
            close = getattr(item, "aclose", None)
            if close is not None:
                await close()


@dataclass
class StageRun:
    """What a stage's generators and operations get from the run: the pipeline, the options, the
    run's services and the concurrency ceiling for this stage."""

    pipe: Any
    options: RunOptions
    services: Services
    concurrency: int

    @property
    def executor(self) -> Any:
        """The run's executor (engine/executors.py), built on first use and shared by every stage."""
        return self.services.get("executor", lambda: build_executor(self.pipe, self.options.executor))


def resolved_teacher(defaults: TeacherSettings, stage: StageSpec, overrides: TeacherSettings | None) -> TeacherSettings:
    return defaults.merged(stage.teacher, overrides)
