"""Where a run's work happens. Every run has one executor (`pipeline.executor` in stages.yaml, or
`--executor`); the runner and the operations reach it through `StageRun.executor`, never by name.

The engine ships `local`: everything in this process (the runner's own loop). Other executors register
with `@executor(name, options=Model, requires=(...), extra=...)` — the Ray one lives in
pocketguide/executors/ and loads like any plugin. An executor only decides *where* work runs; the
store stays the one writer (workers hand results back to this process, which writes them), so resume,
crash safety, stats and manifests are the same whichever executor ran a stage.

The seams, all optional for an executor to change (the local behaviour is the default):
  host(key, settings, build)  a teacher whose model runs in-process (a provider registered with
                              local=True) may be served from workers: return a Teacher that forwards
                              to them, or None to build it here with build(settings)
  map(fn, batches, *args)     fn(batch, *args) per batch, results in order; operations call it through
                              ctx.map for their CPU-bound part (fn: a module-level, deterministic function)
  placement(work)             what `pocketguide stages` says about where a kind of stage runs
  report(stage)               what stats.json and manifest.json record about the stage's execution
  aclose()                    release workers at the end of the run
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

from pydantic import ValidationError

from pocketguide.engine import registry
from pocketguide.engine.registry import executor
from pocketguide.engine.spec import ExecutorSpec, StageSpec
from pocketguide.engine.teacher_spec import TeacherSettings

# the kinds of work a stage is, for placement (see stage_work)
FREE = "free"  # no teacher call (copy mode, routes that skip)
REMOTE_API = "remote_api"  # a teacher behind a network API (OpenAI-compatible)
LOCAL_MODEL = "local_model"  # a teacher whose model runs in the process (the embedded GGUF)
OPERATION = "op"  # a whole-dataset operation
OPERATION_MAP = "op_map"  # a whole-dataset operation whose CPU-bound part goes through ctx.map


class Executor:
    """The local executor, and the defaults every executor inherits."""

    name = "local"

    def __init__(self, options: Any = None) -> None:
        self.options = options

    def host(self, key: str, settings: TeacherSettings, build: Callable[[TeacherSettings], Any]) -> Any | None:
        return None

    def map(self, fn: Callable[..., Any], batches: Iterable[Any], *args: Any) -> Iterator[Any]:
        for batch in batches:
            yield fn(batch, *args)

    def placement(self, work: str) -> str:
        return "this process"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def report(self, stage: str) -> dict[str, Any]:
        """{"stats": {...}, "manifest": {...}} merged into the stage's stats.json and manifest.json."""
        return {"stats": {}, "manifest": {"executor": self.describe()}}

    async def aclose(self) -> None:
        return None


executor("local")(Executor)


def executor_problems(spec: ExecutorSpec, where: str = "pipeline.executor") -> list[str]:
    """The executor is registered, its extra installed, its options valid — as `where: problem — fix` lines."""
    edef = registry.EXECUTORS.get(spec.name)
    if edef is None:
        return [f"{where}: unknown executor '{spec.name}' — {registry.closest(spec.name, registry.EXECUTORS)}"]
    missing = edef.requires.missing()
    if missing:
        return [f"{where}: executor '{spec.name}' needs {', '.join(missing)} — install it with: "
                f"python -m pip install 'pocketguide[{edef.requires.extra or spec.name}]'"]
    if edef.options is None:
        return [f"{where}.options: executor '{spec.name}' takes no options — remove them"] if spec.options else []
    try:
        edef.options.model_validate(spec.options)
    except ValidationError as exc:
        return [f"{where}.options.{'.'.join(map(str, e['loc']))}: "
                f"{'unknown option — remove it or check its spelling' if e['type'] == 'extra_forbidden' else e['msg']}"
                for e in exc.errors()]
    return []


def effective_spec(pipe: Any, override: ExecutorSpec | None) -> ExecutorSpec:
    """The pipeline's executor, or the run's override (`--executor`); options of the same executor merge."""
    base: ExecutorSpec = pipe.spec.pipeline.executor
    if override is None:
        return base
    options = {**base.options, **override.options} if override.name == base.name else dict(override.options)
    return ExecutorSpec(name=override.name, options=options)


def build_executor(pipe: Any, override: ExecutorSpec | None = None) -> Executor:
    spec = effective_spec(pipe, override)
    edef = registry.EXECUTORS[spec.name]  # checked at load time (executor_problems)
    return edef.cls(edef.options.model_validate(spec.options) if edef.options else None)


def stage_modes(stage: StageSpec) -> set[str]:
    """Every generator mode a stage may use, read from its spec (routes that skip make no call)."""
    modes = {stage.mode} if stage.mode else set()
    if stage.variants:
        modes |= {t.mode or stage.mode for t in stage.variants.templates if t.mode or stage.mode}
    if stage.route:
        modes |= {c.mode for c in [*stage.route.cases.values(), stage.route.default]}
    return {m for m in modes if m} - {"skip"}


def stage_work(pipe: Any, stage: StageSpec, overrides: TeacherSettings | None = None) -> str:
    """What kind of work a stage is: an operation (mapping batches or not), a teacher stage (a local model
    or a network API), or free per-record work."""
    if stage.is_operation:
        odef = registry.OPERATIONS.get(stage.op or "")
        return OPERATION_MAP if odef is not None and odef.maps_batches else OPERATION
    if not any(registry.calls_teacher(m) for m in stage_modes(stage)):
        return FREE
    provider = pipe.spec.pipeline.teacher.merged(stage.teacher, overrides).provider
    pdef = registry.PROVIDERS.get(provider or "")
    return LOCAL_MODEL if pdef is not None and pdef.local else REMOTE_API
