"""Read stages.yaml into a validated Pipeline. Every problem is found before any work starts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import ValidationError

from pocketguide.engine import registry
from pocketguide.engine.errors import RegistryError, StagesConfigError, TemplateError
from pocketguide.engine.executors import executor_problems
from pocketguide.engine.plugins import PluginLoadError, load_plugin
from pocketguide.engine.schema_pins import pin_nodes
from pocketguide.engine.spec import PipelineSpec, StageSpec
from pocketguide.engine.store import stage_name_problem
from pocketguide.engine.templates import BUILTIN_NAMES, undeclared_names

GATE_WHEN_ROOTS = ("teacher", "vars", "stage")  # what a gate's `when` may test: the same for every record


@dataclass
class Pipeline:
    spec: PipelineSpec
    path: Path
    extras: dict[str, Any] = dc_field(default_factory=dict)  # what load hooks attach (e.g. the loaded cohort)
    data_dir_override: Path | None = None  # --data-dir: this run's outputs go here instead of pipeline.data_dir
    settings: dict[str, Any] = dc_field(default_factory=dict)  # what the command line hands load hooks (--cohort)

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def data_dir(self) -> Path:
        return self.data_dir_override or self.resolve(self.spec.pipeline.data_dir)

    @property
    def templates_dir(self) -> Path:
        return self.resolve(self.spec.pipeline.templates_dir)

    @property
    def stages(self) -> list[StageSpec]:
        return self.spec.stages

    def stage(self, name: str) -> StageSpec:
        return self.spec.stage(name)

    def resolve(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else (self.root / p)

    def downstream(self, name: str) -> list[str]:
        """Stages that read `name`, directly or through others, in pipeline order."""
        hit = {name}
        out = []
        for s in self.stages:
            if hit & set(s.inputs):
                hit.add(s.name)
                out.append(s.name)
        return out


def _loc(spec_data: dict, loc: tuple) -> str:
    """pydantic loc ('stages', 3, 'gates', 0) → 'draft.gates[0]'."""
    parts = list(loc)
    if len(parts) >= 2 and parts[0] == "stages" and isinstance(parts[1], int):
        stages = spec_data.get("stages") or []
        name = stages[parts[1]].get("name") if parts[1] < len(stages) and isinstance(stages[parts[1]], dict) else None
        head = name or f"stages[{parts[1]}]"
        parts = parts[2:]
    else:
        head = str(parts.pop(0)) if parts else "(file)"
    out = head
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _pydantic_problems(data: dict, exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        where = _loc(data, err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field — remove it or check its spelling"
        elif err["type"] == "missing":
            msg = "required field is missing — add it"
        elif err["type"] == "literal_error":
            msg = f"{msg} — use one of the listed values"
        problems.append(f"{where}: {msg}")
    return problems


def read_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise StagesConfigError([f"(file): {path} not found — create it or pass --pipeline FILE"], str(path))
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise StagesConfigError([f"{where}: invalid YAML: {getattr(exc, 'problem', exc)} — fix the syntax"],
                                str(path))
    if not isinstance(data, dict):
        raise StagesConfigError(["(file): expected a mapping with 'pipeline' and 'stages' — see README"], str(path))
    return data


def load_pipeline(path: str | Path = "stages.yaml", settings: dict[str, Any] | None = None) -> Pipeline:
    """Parse, load the pipeline's plugins, validate against the registries and templates, return the Pipeline.
    `settings` are handed to the load hooks (e.g. {"cohort": "pilot"} from --cohort)."""
    registry.load_builtins()
    path = Path(path)
    data = read_yaml(path)
    # plugins first (from the raw file), so every name below is checked against complete registries
    problems = load_pipeline_plugins(data.get("plugins"), path.resolve().parent)
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise StagesConfigError(problems + _pydantic_problems(data, exc) + _raw_mode_problems(data),
                                str(path)) from None
    pipe = Pipeline(spec, path.resolve(), settings=dict(settings or {}))
    if not problems:
        problems += run_load_hooks(pipe)
        problems += check_pipeline(pipe)
    if problems:
        raise StagesConfigError(problems, str(path))
    return pipe


def load_pipeline_plugins(names: Any, root: Path) -> list[str]:
    if not isinstance(names, list):
        return []  # absent, or not a list (pydantic reports that)
    problems = []
    for i, name in enumerate(names):
        try:
            load_plugin(str(name), root)
        except PluginLoadError as exc:
            problems.append(f"plugins[{i}]: {exc}")
    return problems


def _raw_mode_problems(data: dict) -> list[str]:
    """Unknown generator modes, found even when other fields fail to parse (one error lists them all)."""
    out = []
    for i, st in enumerate(data.get("stages") or []):
        mode = st.get("mode") if isinstance(st, dict) else None
        if isinstance(mode, str) and mode not in registry.GENERATORS:
            name = st.get("name") or f"stages[{i}]"
            out.append(f"{name}.mode: unknown generator mode '{mode}' — {registry.closest(mode, registry.GENERATORS)}")
    return out


def _unhandled(pipe: Pipeline) -> list[tuple[str, str]]:
    """Spec fields that only a load hook gives meaning to, set in this file: (field, where)."""
    used = []
    for name in ("cohort", "cohort_env", "models_catalog"):
        if getattr(pipe.spec.pipeline, name):
            used.append((f"pipeline.{name}", f"pipeline.{name}"))
    used += [("stage.catalog", f"{s.name}.catalog") for s in pipe.stages if s.catalog]
    used += [("stage.role", f"{s.name}.role") for s in pipe.stages if s.role]
    return used


def run_load_hooks(pipe: Pipeline) -> list[str]:
    problems: list[str] = []
    handled = {h for hook in registry.LOAD_HOOKS for h in hook.handles}
    for field_name, where in _unhandled(pipe):
        if field_name not in handled:
            problems.append(f"{where}: no loaded plugin handles {field_name} — add the plugin that does under "
                            f"`plugins:` (cohorts and catalogs: pocketguide.pipelines.daydreaming)")
    for hook in registry.LOAD_HOOKS:
        problems += hook.fn(pipe)
    return problems


def check_pipeline(pipe: Pipeline) -> list[str]:
    problems: list[str] = _check_provider("pipeline", pipe.spec.pipeline.teacher.provider)
    problems += executor_problems(pipe.spec.pipeline.executor)
    seen: set[str] = set()
    folded: dict[str, str] = {}  # stage folders must differ on a case-insensitive disk too
    names = [s.name for s in pipe.stages]
    for stage in pipe.stages:
        if stage.name in seen:
            problems.append(f"{stage.name}.name: duplicate stage name — give each stage a unique name")
        elif stage.name.casefold() in folded:
            problems.append(f"{stage.name}.name: differs from stage '{folded[stage.name.casefold()]}' only in case "
                            f"(one folder on macOS and Windows) — rename one of them")
        folded.setdefault(stage.name.casefold(), stage.name)
        if (why := stage_name_problem(stage.name)) is not None:
            problems.append(f"{stage.name}.name: {why}")
        for inp in stage.inputs:
            if inp == stage.name:
                problems.append(f"{stage.name}.inputs: the stage reads itself (a cycle) — remove '{inp}'")
            elif inp not in names:
                problems.append(f"{stage.name}.inputs: unknown stage '{inp}' — {registry.closest(inp, names)}")
            elif inp not in seen:
                problems.append(f"{stage.name}.inputs: '{inp}' comes later in the file (a cycle or wrong order) — "
                                f"list stages after the stages they read")
        seen.add(stage.name)
        problems += _check_stage(pipe, stage)
    return problems


def _check_stage(pipe: Pipeline, stage: StageSpec) -> list[str]:
    if stage.is_operation:
        return _check_operation(stage)
    p: list[str] = []
    n = stage.name
    if not stage.inputs and not stage.source:
        p.append(f"{n}.inputs: a per-record stage needs inputs or a source file — add `inputs: [stage]` "
                 f"or `source: path.jsonl`")
    if stage.members is not None and stage.inputs[0] == stage.members:
        p.append(f"{n}.members: '{stage.members}' lists this stage's records but cannot drive it — put the stage "
                 f"the rows' parents come from first: `inputs: [<parent stage>]`")
    if stage.source and not pipe.resolve(stage.source).exists():
        p.append(f"{n}.source: file {stage.source} not found — create it or fix the path")
    if stage.mode is None and stage.route is None and not (stage.variants and stage.variants.templates):
        p.append(f"{n}.mode: missing — set `mode: llm` or `mode: copy` (or a route)")
    p += _check_modes(stage)
    p += _check_provider(n, stage.teacher.provider if stage.teacher else None)
    if stage.template is None and stage.copy_from is None and not (stage.variants and stage.variants.templates):
        p.append(f"{n}.template: missing — name a template under {pipe.spec.pipeline.templates_dir}/ "
                 f"(or copy_from for copy mode)")
    provided = BUILTIN_NAMES | set(stage.inputs) | {"source"}
    templates: list[tuple[str, str, str | None]] = [("template", stage.template, None)] if stage.template else []
    if stage.variants:
        templates += [(f"variants.templates[{i}]", t.file or f"<inline {n}/{t.id}>", t.content)
                      for i, t in enumerate(stage.variants.templates)]
    if stage.route:
        templates += [(f"route.cases.{k}.template", c.template, None) for k, c in stage.route.cases.items()
                      if c.template]
    for field, name, inline in templates:
        try:
            missing = undeclared_names(pipe.templates_dir, name, inline) - provided
        except TemplateError as exc:
            p.append(f"{n}.{field}: {exc} — create the file or fix the name")
            continue
        for var in sorted(missing):
            p.append(f"{n}.{field}: template '{name}' uses undefined variable '{var}' — the stage provides "
                     f"{', '.join(sorted(provided))}; add it under vars or inputs, or fix the template")
    p += _check_parsers(stage)
    for i, g in enumerate(stage.gates):
        gdef = registry.GATES.get(g.name)
        if gdef is None:
            p.append(f"{n}.gates[{i}]: unknown gate '{g.name}' — {registry.closest(g.name, registry.GATES)}")
        elif gdef.options is not None:
            try:
                gdef.options.model_validate(g.options)
            except ValidationError as exc:
                for e in exc.errors():
                    p.append(f"{n}.gates[{i}].options.{'.'.join(map(str, e['loc']))}: {e['msg']} — fix the option")
        elif g.options:
            p.append(f"{n}.gates[{i}].options: gate '{g.name}' takes no options — remove them")
        for path in g.when:  # stage-wide values only: the gates that apply are chosen once per stage run
            if path.split(".")[0] not in GATE_WHEN_ROOTS:
                p.append(f"{n}.gates[{i}].when: '{path}' is not a stage-wide value — start it with "
                         f"{', '.join(GATE_WHEN_ROOTS)}")
    if stage.schema_:
        p += _check_schema(pipe, n, stage.schema_)
    if stage.response_schema:
        p += _check_response_schema(pipe, n, stage.response_schema)
        p += _check_response_pins(pipe, n, stage.response_schema, stage.response_pins)
    elif stage.response_pins:
        p.append(f"{n}.response_pins: pins narrow the response_schema, and this stage has none — add "
                 f"response_schema or remove response_pins")
    for path in stage.route.paths if stage.route else []:
        if path.split(".")[0] not in provided:
            p.append(f"{n}.route.on: '{path}' does not start with an input stage name (or teacher) — "
                     f"use one of {', '.join(stage.inputs) or '(no inputs)'}")
    return p


def _check_modes(stage: StageSpec) -> list[str]:
    """Every generator mode named by the stage is registered (skip only as a route case)."""
    n = stage.name
    modes = [("mode", stage.mode)]
    if stage.variants:
        modes += [(f"variants.templates[{i}].mode", t.mode) for i, t in enumerate(stage.variants.templates)]
    if stage.route:
        modes += [(f"route.cases.{k}.mode", c.mode) for k, c in stage.route.cases.items() if c.mode != "skip"]
        if stage.route.default.mode != "skip":
            modes.append(("route.default.mode", stage.route.default.mode))
    return [f"{n}.{field}: unknown generator mode '{mode}' — {registry.closest(mode, registry.GENERATORS)}"
            for field, mode in modes if mode is not None and mode not in registry.GENERATORS]


def _check_provider(where: str, provider: str | None) -> list[str]:
    if provider is None or provider in registry.PROVIDERS:
        return []
    return [f"{where}.teacher.provider: unknown teacher provider '{provider}' — "
            f"{registry.closest(provider, registry.PROVIDERS)}"]


def _check_parsers(stage: StageSpec) -> list[str]:
    """Every parser name is registered, and its options (if any) fit the parser's options model."""
    p: list[str] = []
    n = stage.name
    fanned = bool(stage.variants and stage.variants.templates)
    # with variant templates, stage-level parser_options serve whichever templates use a parser with options
    parsers = [("parser", stage.parser, None if fanned else (stage.parser_options or None))]
    if stage.variants:
        parsers += [(f"variants.templates[{i}].parser", t.parser or stage.parser, t.parser_options)
                    for i, t in enumerate(stage.variants.templates)]
    for field, name, own_options in parsers:
        try:
            registry.get_parser(n, name)
        except RegistryError:
            p.append(f"{n}.{field}: unknown parser '{name}' — {registry.closest(name, registry.parser_names(n))}")
            continue
        options = own_options if own_options is not None else stage.parser_options
        model = registry.get_parser_options(n, name)
        if model is None:
            if own_options:
                p.append(f"{n}.parser_options: parser '{name or 'identity'}' ({field}) takes no options — remove them")
            continue
        try:
            model.model_validate(options)
        except ValidationError as exc:
            for e in exc.errors():
                loc = ".".join(map(str, e["loc"]))
                p.append(f"{n}.parser_options.{loc}: {e['msg']} (parser '{name}') — fix the option")
    return p


def _check_schema(pipe: Pipeline, n: str, rel: str) -> list[str]:
    path = pipe.resolve(rel)
    try:
        schema = json.loads(path.read_text())
        Draft202012Validator.check_schema(schema)
    except FileNotFoundError:
        return [f"{n}.schema: file {rel} not found — fix the path (relative to the pipeline file)"]
    except (ValueError, SchemaError) as exc:
        return [f"{n}.schema: {rel} is not a valid JSON Schema: {str(exc).splitlines()[0]} — fix the schema"]
    return []


def _response_schema_files(pipe: Pipeline, rel: str) -> list[str]:
    """The files a response_schema path can mean: itself, or every match of its `{field}` placeholders."""
    import glob
    import re

    return sorted(glob.glob(str(pipe.resolve(re.sub(r"\{[A-Za-z0-9_.]+\}", "*", rel)))))


def _check_response_schema(pipe: Pipeline, n: str, rel: str) -> list[str]:
    """A fixed path must be a valid schema; with `{field}` placeholders, every file the pattern matches must."""
    if "{" not in rel:
        return [x.replace(f"{n}.schema:", f"{n}.response_schema:", 1) for x in _check_schema(pipe, n, rel)]
    found = _response_schema_files(pipe, rel)
    if not found:
        return [f"{n}.response_schema: no file matches {rel} — create the per-record schemas or fix the path"]
    return [x.replace(f"{n}.schema:", f"{n}.response_schema:", 1) for f in found for x in _check_schema(pipe, n, f)]


def _check_response_pins(pipe: Pipeline, n: str, rel: str, pins: dict[str, str]) -> list[str]:
    """Every pinned path names a string in every schema file the response_schema path can mean."""
    problems = []
    for f in _response_schema_files(pipe, rel) if pins else []:
        try:
            schema = json.loads(Path(f).read_text())
        except (OSError, ValueError):
            continue  # _check_response_schema reports it
        problems += [f"{n}.response_pins: '{path}' is not a string property in {Path(f).name} — use a dotted path "
                     f"through its properties (e.g. payload.title)" for path in pins if not pin_nodes(schema, path)]
    return problems


def _check_operation(stage: StageSpec) -> list[str]:
    n = stage.name
    odef = registry.OPERATIONS.get(stage.op or "")
    if odef is None:
        return [f"{n}.op: unknown operation '{stage.op}' — {registry.closest(stage.op or '', registry.OPERATIONS)}"]
    p = []
    missing = odef.requires.missing()
    if missing:
        extra = odef.requires.extra or stage.op
        p.append(f"{n}.op: operation '{stage.op}' needs {', '.join(missing)} — install it with: "
                 f"python -m pip install 'pocketguide[{extra}]'")
    for field in ("template", "mode", "parser", "route", "variants", "copy_from", "catalog", "role", "members"):
        if getattr(stage, field) is not None:
            p.append(f"{n}.{field}: a whole-dataset stage (op: {stage.op}) does not use {field} — remove it")
    if odef.options is not None:
        try:
            odef.options.model_validate(stage.options)
        except ValidationError as exc:
            for e in exc.errors():
                loc = ".".join(map(str, e["loc"]))
                msg = "unknown option — remove it or check its spelling" if e["type"] == "extra_forbidden" else e["msg"]
                p.append(f"{n}.options.{loc}: {msg}")
    elif stage.options:
        p.append(f"{n}.options: operation '{stage.op}' takes no options — remove them")
    return p


def load_options(stage: StageSpec) -> Any:
    odef = registry.OPERATIONS[stage.op or ""]
    return odef.options.model_validate(stage.options) if odef.options else None
