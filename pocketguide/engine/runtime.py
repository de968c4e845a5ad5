"""Everything a per-record stage resolves once before its loop: templates, parsers, schema, gates."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from pocketguide.engine import registry
from pocketguide.engine.loader import Pipeline
from pocketguide.engine.records import lookup
from pocketguide.engine.spec import StageSpec
from pocketguide.engine.teacher_spec import TeacherSettings
from pocketguide.engine.templates import Renderer

DEFAULT_MODE = "copy"  # the engine's own generator: no teacher, the rendered text passes through
SKIP = "skip"  # a route case that makes no record but a rejection with its reason


@dataclass
class TemplateChoice:
    """A template with the generator mode and parser it runs under."""

    id: str
    renderer: Renderer | None
    mode: str
    parser_name: str
    parser: Any
    parser_options: Any = None  # the parser's options model instance (or None)


def _resolve(root: Path | None, rel: str | Path) -> Path:
    p = Path(rel)
    return p if p.is_absolute() else (root or Path.cwd()) / p


@dataclass
class ParseContext:
    stage: str
    record: dict[str, Any]
    schema: dict[str, Any] | None
    notes: dict[str, Any] = field(default_factory=dict)  # a parser may say how it parsed (parse_mode…)
    options: Any = None  # the stage's `parser_options`, validated against the parser's options model
    root: Path | None = None  # the pipeline's folder: a parser's data files resolve against it
    seen: set[Path] | None = None  # the stage's files_read: what is resolved here is watched for changes

    def resolve(self, rel: str | Path) -> Path:
        """A path relative to the pipeline's stages.yaml (the working directory when there is none). The
        file (or folder) is watched: when it changes, the stage's records are re-judged (engine/recipe.py)."""
        path = _resolve(self.root, rel)
        if self.seen is not None:
            self.seen.add(path)
        return path


@dataclass
class GateInput:
    parsed: Any
    raw: str | None
    record: dict[str, Any]
    settings: dict[str, Any]  # run-wide knobs, e.g. gating_mode
    root: Path | None = None  # the pipeline's folder: a gate's data files resolve against it
    seen: set[Path] | None = None  # the stage's files_read: what is resolved here is watched for changes

    def resolve(self, rel: str | Path) -> Path:
        """A path relative to the pipeline's stages.yaml (the working directory when there is none). The
        file (or folder) is watched: when it changes, the stage's records are re-judged (engine/recipe.py)."""
        path = _resolve(self.root, rel)
        if self.seen is not None:
            self.seen.add(path)
        return path


@dataclass
class GateResult:
    passed: bool
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class StageRuntime:
    pipe: Pipeline
    stage: StageSpec
    teacher_settings: TeacherSettings
    dry_run: bool
    settings: dict[str, Any]
    schema: dict[str, Any] | None = None
    schema_path: Path | None = None
    validator: Draft202012Validator | None = None
    default_choice: TemplateChoice | None = None
    choices: dict[str, TemplateChoice] = field(default_factory=dict)  # variant template id → choice
    route_choices: dict[str, TemplateChoice] = field(default_factory=dict)
    gates: list[tuple[str, Any, Any]] = field(default_factory=list)  # (name, fn, options): those that apply
    root: Path | None = None  # the pipeline's folder (pipe.root, worked out once, not per record)
    teacher_info: dict[str, Any] | None = None  # what the generators say made the records (manifest)
    members: Any = None  # engine/members.Members when the stage has `members:` (its rows, by parent id)
    teacher_facts: dict[str, Any] = field(default_factory=dict)  # `teacher` in the template context
    generator_stats: list[dict[str, Any]] = field(default_factory=list)  # what they add to stats.json
    recipe: Any = None  # engine/recipe.Recipe: the parts that decide records, and their fingerprints
    files_read: set[Path] = field(default_factory=set)  # what the parser and gates resolved this run

    @property
    def modes(self) -> set[str]:
        """Every generator mode this stage may use (skip is a route outcome, not a generator)."""
        modes = {c.mode for c in [self.default_choice, *self.choices.values(), *self.route_choices.values()] if c}
        if self.stage.route:
            fixed = route_on_teacher(self.stage, self.teacher_facts)
            if fixed:  # the same case for every record of this run: only its generator is needed
                modes = {fixed[1].mode}
            else:
                modes |= {c.mode for c in [*self.stage.route.cases.values(), self.stage.route.default]}
        return modes - {SKIP}

    @property
    def calls_teacher(self) -> bool:
        return any(registry.calls_teacher(m) for m in self.modes)

    def template_files(self) -> list[Path]:
        files = []
        for c in [self.default_choice, *self.choices.values(), *self.route_choices.values()]:
            if c and c.renderer and c.renderer.path is not None:
                files.append(c.renderer.path)
        return files

    def inline_templates(self) -> dict[str, str]:
        """`inline:<stage>/<template id>` → sha256 of each inline template's text (for the manifest)."""
        return {f"inline:{self.stage.name}/{c.id}": c.renderer.sha256 for c in self.choices.values()
                if c.renderer is not None and c.renderer.path is None}


def route_on_teacher(stage: StageSpec, facts: dict[str, Any]) -> tuple[str, Any] | None:
    """(case key, case) when the stage routes on a teacher fact (`on: teacher.judge`): the same for every
    record of the run, so it is known before the loop (which generator runs, whether a teacher is needed)."""
    route = stage.route
    if route is None or not isinstance(route.on, str) or not route.on.startswith("teacher."):
        return None
    value = lookup({"teacher": facts}, route.on, None)
    key = str(value).lower() if isinstance(value, bool) else str(value)
    return key, route.cases.get(key, route.default)


def parser_options(stage: StageSpec, parser: str | None, options: dict[str, Any] | None) -> Any:
    """Validated options for a parser: a template's own options, else the stage's `parser_options`."""
    name = parser or stage.parser or "identity"
    model = registry.get_parser_options(stage.name, name)
    raw = options if options is not None else stage.parser_options
    return model.model_validate(raw) if model is not None else None


def _choice(pipe: Pipeline, stage: StageSpec, tid: str, file: str | None, mode: str | None,
            parser: str | None, options: dict[str, Any] | None = None, content: str | None = None) -> TemplateChoice:
    name = parser or stage.parser or "identity"
    renderer = None
    if content is not None:
        renderer = Renderer(pipe.templates_dir, f"<inline {stage.name}/{tid}>", source=content)
    elif file:
        renderer = Renderer(pipe.templates_dir, file)
    return TemplateChoice(
        id=tid,
        renderer=renderer,
        mode=mode or stage.mode or DEFAULT_MODE,
        parser_name=name,
        parser=registry.get_parser(stage.name, name),
        parser_options=parser_options(stage, parser, options),
    )


def build_runtime(pipe: Pipeline, stage: StageSpec, teacher_settings: TeacherSettings, dry_run: bool,
                  settings: dict[str, Any]) -> StageRuntime:
    rt = StageRuntime(pipe, stage, teacher_settings, dry_run, settings, root=pipe.root,
                      teacher_facts=teacher_settings.facts())
    if stage.schema_:
        rt.schema_path = pipe.resolve(stage.schema_)
        rt.schema = json.loads(rt.schema_path.read_text())
        rt.validator = Draft202012Validator(rt.schema)
    if stage.template or stage.copy_from or not (stage.variants and stage.variants.templates):
        rt.default_choice = _choice(pipe, stage, "default", stage.template, stage.mode, stage.parser)
    if stage.variants:
        for t in stage.variants.templates:
            rt.choices[t.id] = _choice(pipe, stage, t.id, t.file, t.mode, t.parser, t.parser_options, t.content)
    if stage.route:
        for key, case in stage.route.cases.items():
            if case.template:
                rt.route_choices[key] = _choice(pipe, stage, key, case.template, case.mode, None)
    facts = {"teacher": rt.teacher_facts, "vars": stage.vars, "stage": stage.name}  # the same for every record
    for g in stage.gates:
        if any(lookup(facts, path, None) != value for path, value in g.when.items()):
            continue  # e.g. a check that only applies with one critic: not this teacher's gate
        gdef = registry.GATES[g.name]
        opts = gdef.options.model_validate(g.options) if gdef.options else None
        rt.gates.append((g.name, gdef.fn, opts))
    return rt
