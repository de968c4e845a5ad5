"""pocketguide: declarative synthetic-training-data pipelines, from prompt plan to a fine-tuned student."""

__version__ = "0.1.0"

from .errors import PocketguideError, StagesConfigError  # noqa: E402
from .registry import gate, generator, operation, parser  # noqa: E402


def __getattr__(name: str):
    # lazy so `import pocketguide` and `pocketguide --help` stay fast
    if name in ("run_stage", "StageResult"):
        from . import runner

        return getattr(runner, name)
    if name in ("run_pipeline", "PipelineResult", "pipeline_status"):
        from . import pipeline

        return getattr(pipeline, name)
    if name in ("load_pipeline", "Pipeline"):
        from . import loader

        return getattr(loader, name)
    if name in ("GateResult", "GateInput", "ParseContext"):
        from . import runtime

        return getattr(runtime, name)
    raise AttributeError(name)


__all__ = ["__version__", "PocketguideError", "StagesConfigError", "gate", "generator", "operation", "parser",
           "run_stage", "run_pipeline", "load_pipeline", "pipeline_status", "GateResult", "GateInput",
           "ParseContext"]
