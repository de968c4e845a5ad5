"""Plugins fill the registries. Built-ins load through the same path as a user's:

* built-in plugins: the modules named in BUILTIN_PLUGINS (generic parsers, gates, exporters,
  operations, teachers, training), imported by name;
* installed plugins: every entry point in the `pocketguide.plugins` group (a package's pyproject says
  `[project.entry-points."pocketguide.plugins"] my_checks = "my_pkg.checks"`);
* a pipeline's own: `plugins:` in stages.yaml, modules (`my_pkg.checks`) or files relative to the
  stages.yaml (`./local_checks.py`).

All are imported before validation, so an unknown name still gets "did you mean".
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from pocketguide.engine.errors import PocketguideError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "pocketguide.plugins"
BUILTIN_PLUGINS = (
    "pocketguide.engine.generators",  # copy
    "pocketguide.engine.executors",  # local
    "pocketguide.parsers",  # identity, json, …
    "pocketguide.gates",  # length, required_fields, min_lines, …
    "pocketguide.exporters",  # jsonl, parquet, hf
    "pocketguide.ops",  # qa, split, sft, eval_suite
    "pocketguide.teachers",  # providers openai + embedded, generator llm
    "pocketguide.training",  # op train
    "pocketguide.executors",  # ray (imports ray only when a run uses it)
)

_loaded: dict[str, ModuleType] = {}  # plugin name or resolved file path -> module
_builtins_done = False


class PluginLoadError(PocketguideError):
    """A plugin could not be imported; the loader turns it into a `plugins[i]: …` problem."""


def load_builtin_plugins() -> None:
    """The built-in plugins, then every installed entry point (once per process)."""
    global _builtins_done
    if _builtins_done:
        return
    _builtins_done = True  # set first: a plugin that imports pocketguide must not recurse here
    for name in BUILTIN_PLUGINS:
        _import_module(name)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            _loaded.setdefault(f"entry-point:{ep.name}", ep.load())
        except Exception as exc:  # a broken third-party plugin must not take the CLI down with it
            log.warning("plugin entry point %s (%s) failed to load: %s: %s", ep.name, ep.value,
                        type(exc).__name__, exc)


def load_plugin(name: str, root: Path) -> ModuleType:
    """Import a pipeline's plugin: a file path (relative to `root`) or a module name. Idempotent."""
    if name.endswith(".py") or "/" in name or "\\" in name:
        return _import_file((root / name).resolve() if not Path(name).is_absolute() else Path(name))
    return _import_module(name)


def _import_module(name: str) -> ModuleType:
    if name in _loaded:
        return _loaded[name]
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise PluginLoadError(f"cannot import module '{name}' ({exc}) — install the package that provides it, "
                              f"or fix the name") from exc
    _loaded[name] = module
    return module


def _import_file(path: Path) -> ModuleType:
    key = str(path)
    if key in _loaded:
        return _loaded[key]
    if not path.is_file():
        raise PluginLoadError(f"file {path} not found — fix the path (relative to the stages.yaml)")
    # a stable, unique module name per file, so two pipelines' `checks.py` never collide
    mod_name = f"pocketguide_plugin_{path.stem}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise PluginLoadError(f"{path} is not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(mod_name, None)
        raise PluginLoadError(f"{path} failed to import: {type(exc).__name__}: {exc} — fix the plugin") from exc
    _loaded[key] = module
    return module
