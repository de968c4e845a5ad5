"""Registries as plain dicts filled by decorators. Built-ins use the same decorators as users."""

from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass
from typing import Any, Callable

from pydantic import BaseModel

from pocketguide.engine.errors import RegistryError

GLOBAL = "*"

# (stage or "*", name) -> parser(raw: str, ctx: ParseContext) -> parsed value
PARSERS: dict[tuple[str, str], Callable[..., Any]] = {}
# (stage or "*", name) -> pydantic model of the parser's options (`parser_options:` in stages.yaml)
PARSER_OPTIONS: dict[tuple[str, str], type[BaseModel]] = {}
# name -> GateDef
GATES: dict[str, "GateDef"] = {}
# mode name -> generator class: cls(rt, run) per stage; `calls_teacher` says whether it costs a call
GENERATORS: dict[str, Any] = {}
# teacher provider name -> ProviderDef (the teachers package fills it; the loader checks names against it)
PROVIDERS: dict[str, "ProviderDef"] = {}
# functions run by the loader after stages.yaml is parsed: hook(pipe) -> list of problems. A hook may
# rewrite the spec (e.g. a cohort file expands into variants) before any other check.
LOAD_HOOKS: list["LoadHook"] = []
# name -> OperationDef (whole-dataset stages)
OPERATIONS: dict[str, "OperationDef"] = {}
# format name -> exporter(pipe, stage_spec, store, out: Path | None) -> Path written
EXPORTERS: dict[str, Callable[..., Any]] = {}
# operation name -> section(pipe, stage_spec, store_of) -> dict | None: what that op's stages add to the
# HTML run report (charts, tables, side-by-side texts; shape in pocketguide/reports/sections.py)
REPORT_SECTIONS: dict[str, Callable[..., Any]] = {}


@dataclass(frozen=True)
class Requires:
    """Optional dependencies a registered piece needs, and the extra that installs them."""

    modules: tuple[str, ...] = ()
    extra: str | None = None

    def missing(self) -> list[str]:
        return [m for m in self.modules if importlib.util.find_spec(m) is None]


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
    requires: Requires = Requires()


@dataclass(frozen=True)
class ProviderDef:
    name: str
    factory: Callable[..., Any]  # factory(settings) -> Teacher
    requires: Requires = Requires()


@dataclass(frozen=True)
class LoadHook:
    name: str
    fn: Callable[..., list[str]]
    handles: tuple[str, ...]  # spec fields the hook gives meaning to, e.g. "pipeline.cohort"


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
    """Register a generator class for a stage `mode` (llm, copy, …). The class is built once per stage as
    cls(rt, run) and sets `calls_teacher` (True: its `generate` is async and costs a teacher call; False:
    sync and free). See engine/generators.py for the protocol."""

    def decorate(cls):
        if mode in GENERATORS:
            raise RegistryError(f"generator mode '{mode}' is already registered")
        if not isinstance(getattr(cls, "calls_teacher", None), bool):
            raise RegistryError(f"generator '{mode}' must set calls_teacher = True or False")
        GENERATORS[mode] = cls
        return cls

    return decorate


def calls_teacher(mode: str) -> bool:
    cls = GENERATORS.get(mode)
    return bool(cls is not None and cls.calls_teacher)


def operation(name: str, options: type[BaseModel] | None = None, description: str = "",
              requires: tuple[str, ...] = (), extra: str | None = None):
    """Register a whole-dataset operation: fn(ctx: OpContext, options). `requires` names the optional
    modules it imports when it runs; the loader refuses the stage, naming `extra`, when one is missing."""

    def decorate(fn):
        if name in OPERATIONS:
            raise RegistryError(f"operation '{name}' is already registered; pick another name")
        OPERATIONS[name] = OperationDef(name, fn, options, description or (fn.__doc__ or "").strip(),
                                        Requires(tuple(requires), extra))
        return fn

    return decorate


def provider(name: str, requires: tuple[str, ...] = (), extra: str | None = None):
    """Register a teacher provider: factory(settings: TeacherSettings) -> Teacher."""

    def decorate(factory):
        if name in PROVIDERS:
            raise RegistryError(f"teacher provider '{name}' is already registered")
        PROVIDERS[name] = ProviderDef(name, factory, Requires(tuple(requires), extra))
        return factory

    return decorate


def load_hook(name: str, handles: tuple[str, ...] = ()):
    """Register fn(pipe) -> problems, run by the loader after parsing and before its checks."""

    def decorate(fn):
        if any(h.name == name for h in LOAD_HOOKS):
            raise RegistryError(f"load hook '{name}' is already registered")
        LOAD_HOOKS.append(LoadHook(name, fn, tuple(handles)))
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


def report_section(op: str):
    """Register what the stages of operation `op` show in `pocketguide report` (see reports/sections.py)."""

    def decorate(fn):
        if op in REPORT_SECTIONS:
            raise RegistryError(f"a report section for operation '{op}' is already registered")
        REPORT_SECTIONS[op] = fn
        return fn

    return decorate


def load_builtins() -> None:
    """Fill the registries with the built-in plugins (idempotent)."""
    from pocketguide.engine.plugins import load_builtin_plugins

    load_builtin_plugins()
