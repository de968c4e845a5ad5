"""pocketguide: declarative synthetic-training-data pipelines, from prompt plan to a fine-tuned student.

The public API: `run_stage`, `run_pipeline`, `load_pipeline`, `pipeline_status`, and the decorators a
plugin uses to register parsers, gates, operations, generators and teacher providers."""

from pocketguide.engine.errors import ParseError, PocketguideError, RecordRejected, StagesConfigError
from pocketguide.engine.registry import gate, generator, load_hook, operation, parser, provider
from pocketguide.engine.version import __version__

_LAZY = {  # loaded on first use, so `import pocketguide` and `pocketguide --help` stay fast
    "run_stage": "pocketguide.engine.runner", "StageResult": "pocketguide.engine.runner",
    "run_pipeline": "pocketguide.engine.pipeline", "PipelineResult": "pocketguide.engine.pipeline",
    "pipeline_status": "pocketguide.engine.pipeline",
    "load_pipeline": "pocketguide.engine.loader", "Pipeline": "pocketguide.engine.loader",
    "GateResult": "pocketguide.engine.runtime", "GateInput": "pocketguide.engine.runtime",
    "ParseContext": "pocketguide.engine.runtime",
    "Generated": "pocketguide.engine.generators", "Generator": "pocketguide.engine.generators",
    "RunOptions": "pocketguide.engine.session",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


__all__ = ["__version__", "ParseError", "PocketguideError", "RecordRejected", "StagesConfigError", "gate", "generator", "load_hook", "operation",
           "parser", "provider", *_LAZY]
