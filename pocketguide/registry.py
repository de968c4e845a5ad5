"""Registries as plain dicts filled by decorators. Built-ins use the same decorators as users."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable

from pydantic import BaseModel

from .errors import RegistryError

GLOBAL = "*"

# (stage or "*", name) -> parser(raw: str, ctx: ParseContext) -> parsed value
PARSERS: dict[tuple[str, str], Callable[..., Any]] = {}
# (stage or "*", name) -> pydantic model of the parser's options (`parser_options:` in stages.yaml)
PARSER_OPTIONS: dict[tuple[str, str], type[BaseModel]] = {}
# name -> GateDef
GATES: dict[str, "GateDef"] = {}
# mode name -> generator factory (see runner.py)
GENERATORS: dict[str, Any] = {}
# name -> OperationDef (whole-dataset stages)
OPERATIONS: dict[str, "OperationDef"] = {}
# format name -> exporter(pipe, stage_spec, store, out: Path | None) -> Path written
EXPORTERS: dict[str, Callable[..., Any]] = {}


@dataclass(frozen=True)
class GateDef:
    name: str
    fn: Callable[..., Any]
    options: type[BaseModel] | None


@dataclass(frozen=True)
class OperationDef:
    name: str
    fn: Callable[..., Any]
    options: type[BaseModel] | None
    description: str


def closest(name: str, known: list[str] | set[str]) -> str:
    """' Did you mean X?' when a close name exists, else the list of known names."""
    known = sorted(known)
    match = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean '{match[0]}'?" if match else ""
    return f"known: {', '.join(known) or '(none)'}.{hint}"


def parser(name: str, stage: str = GLOBAL, options: type[BaseModel] | None = None):
    """Register a parser under `name`, for one stage or (default) for every stage. With `options`, the
    stage's `parser_options` are validated against that model at load time and reach the parser as
    `ctx.options` (an instance of it)."""

    def decorate(fn):
        key = (stage, name)
        if key in PARSERS:
            where = "every stage" if stage == GLOBAL else f"stage '{stage}'"
            raise RegistryError(f"parser '{name}' is already registered for {where}; pick another name")
        PARSERS[key] = fn
        if options is not None:
            PARSER_OPTIONS[key] = options
        return fn

    return decorate


def parser_names(stage: str) -> set[str]:
    return {n for (s, n) in PARSERS if s in (stage, GLOBAL)}


def get_parser(stage: str, name: str | None):
    """The stage-scoped parser, else the global one; None or absent means identity."""
    name = name or "identity"
    for key in ((stage, name), (GLOBAL, name)):
        if key in PARSERS:
            return PARSERS[key]
    raise RegistryError(f"unknown parser '{name}' for stage '{stage}'; {closest(name, parser_names(stage))}")


def get_parser_options(stage: str, name: str | None) -> type[BaseModel] | None:
    """The options model of the parser `get_parser(stage, name)` returns, if it declared one."""
    name = name or "identity"
    for key in ((stage, name), (GLOBAL, name)):
        if key in PARSERS:
            return PARSER_OPTIONS.get(key)
    return None


def gate(name: str, options: type[BaseModel] | None = None):
    """Register a quality gate: fn(item: GateInput, options) -> GateResult."""

    def decorate(fn):
        if name in GATES:
            raise RegistryError(f"gate '{name}' is already registered; pick another name")
        GATES[name] = GateDef(name, fn, options)
        return fn

    return decorate


def generator(mode: str):
    """Register a generator for a stage `mode` (llm, copy, …)."""

    def decorate(obj):
        if mode in GENERATORS:
            raise RegistryError(f"generator mode '{mode}' is already registered")
        GENERATORS[mode] = obj
        return obj

    return decorate


def operation(name: str, options: type[BaseModel] | None = None, description: str = ""):
    """Register a whole-dataset operation: fn(ctx: OpContext, options)."""

    def decorate(fn):
        if name in OPERATIONS:
            raise RegistryError(f"operation '{name}' is already registered; pick another name")
        OPERATIONS[name] = OperationDef(name, fn, options, description or (fn.__doc__ or "").strip())
        return fn

    return decorate


def exporter(fmt: str):
    """Register an export format for `pocketguide export <stage> --format <fmt>`."""

    def decorate(fn):
        if fmt in EXPORTERS:
            raise RegistryError(f"export format '{fmt}' is already registered")
        EXPORTERS[fmt] = fn
        return fn

    return decorate


def load_builtins() -> None:
    """Import the modules whose decorators fill the registries (idempotent)."""
    from . import exporters, gates, ops, parsers  # noqa: F401
    from . import generators  # noqa: F401
    from . import pipelines  # noqa: F401
