"""Pydantic models of stages.yaml. Strict: an unknown key is an error, never ignored."""

from __future__ import annotations

import fnmatch
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from pocketguide.engine.teacher_spec import Strict, TeacherSettings


class GateSpec(Strict):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)
    when: dict[str, Any] = Field(default_factory=dict, description="run the gate only when these stage-wide "
                                 "values match, e.g. {teacher.judge: false} (paths under teacher, vars or stage)")


class TemplateVariant(Strict):
    """One entry of a variant template catalog: which file (or inline text), which generator, which parser."""

    id: str
    file: str | None = Field(None, description="template file under the templates folder")
    content: str | None = Field(None, description="the template's text inline, instead of a file")
    mode: str | None = Field(None, description="a registered generator mode (llm, copy, …)")
    parser: str | None = None
    parser_options: dict[str, Any] | None = Field(None, description="options for this template's parser")
    description: str = ""

    @model_validator(mode="after")
    def _file_or_content(self) -> "TemplateVariant":
        if (self.file is None) == (self.content is None):
            raise ValueError(f"template '{self.id}': give either a file or inline content (not both, not neither)")
        return self


class Variants(Strict):
    """Fan-out: every combination of template × model × replicate becomes one child record."""

    templates: list[TemplateVariant] = Field(default_factory=list)
    models: list[str] = Field(default_factory=list)
    replicates: int = Field(1, ge=1)

    @field_validator("templates", mode="before")
    @classmethod
    def _plain_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"id": v.rsplit(".", 1)[0], "file": v} if isinstance(v, str) else v for v in value]
        return value


class RouteCase(Strict):
    mode: str = Field(description="a registered generator mode (llm, copy, …) or skip")
    reason: str | None = Field(None, description="reason code recorded when mode is skip")
    template: str | None = None


class Route(Strict):
    """Choose llm / copy / skip per record from a field of the inputs (or several: `on: [a, b]`)."""

    on: str | list[str] = Field(description="dotted path in the template context, e.g. critique.parsed.verdict; or "
                                            "a list of paths, whose values are joined with '/' into the case key")
    cases: dict[str, RouteCase] = Field(description="case key → case; with several paths a key may use * for any "
                                                    "value of a part (pass/*)")
    default: RouteCase = RouteCase(mode="skip", reason="route_unmatched")

    @property
    def paths(self) -> list[str]:
        return [self.on] if isinstance(self.on, str) else list(self.on)

    @staticmethod
    def key_of(value: Any) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)

    def case_for(self, key: str) -> tuple[str | None, RouteCase]:
        """(the case key that matched, the case): an exact key first, then the first wildcard key that fits."""
        if key in self.cases:
            return key, self.cases[key]
        for pattern, case in self.cases.items():
            if "*" in pattern and fnmatch.fnmatchcase(key, pattern):
                return pattern, case
        return None, self.default

    @model_validator(mode="before")
    @classmethod
    def _yaml_on_is_true(cls, data: Any) -> Any:
        # YAML 1.1 reads a bare `on:` key as the boolean True; users mean the field
        if isinstance(data, dict) and True in data and "on" not in data:
            data = dict(data)
            data["on"] = data.pop(True)
        return data

    @field_validator("cases", mode="before")
    @classmethod
    def _short_cases(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {(str(k).lower() if isinstance(k, bool) else str(k)): ({"mode": v} if isinstance(v, str) else v)
                    for k, v in value.items()}
        return value

    @field_validator("default", mode="before")
    @classmethod
    def _short_default(cls, value: Any) -> Any:
        return {"mode": value} if isinstance(value, str) else value


class StageSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    description: str = ""
    inputs: list[str] = Field(default_factory=list, description="upstream stages; the first drives")
    source: str | None = Field(None, description="JSONL file of input records (for a first stage)")
    op: str | None = Field(None, description="whole-dataset operation name (instead of a per-record loop)")
    options: dict[str, Any] = Field(default_factory=dict, description="options of the operation")
    template: str | None = None
    mode: str | None = Field(None, description="a registered generator mode: llm (the teacher), copy, or a "
                                               "plugin's")
    copy_from: str | None = Field(None, description="copy mode: dotted path of the value to pass through")
    parser: str | None = None
    parser_options: dict[str, Any] = Field(default_factory=dict, description="options passed to the parser "
                                           "(validated against the parser's options model)")
    catalog: str | None = Field(None, description="template catalog (CSV or YAML: template_id, active, generator, "
                                "parser, description[, file | content]) that cohort axes and variants pick from")
    role: Literal["generation", "evaluation"] | None = Field(
        None, description="what a catalog stage's templates and models are for: evaluation = judges (every template "
                          "names a parser; models marked for_evaluation), generation (default) = models marked "
                          "for_generation")
    members: str | None = Field(
        None, description="a whole-dataset stage whose records list this stage's records (membership rows: "
                          "data.stage, data.parent_id, data.variant); the stage makes exactly those ids (it is read "
                          "like an input, so it is added to inputs)")
    schema_: str | None = Field(None, alias="schema")
    response_schema: str | None = Field(
        None, description="JSON Schema sent to the teacher as response_format (default: schema), e.g. a smaller "
                          "decoding profile; validation always uses schema")
    response_pins: dict[str, str] = Field(
        default_factory=dict, description="decoding only: the answer's string at this dotted path (e.g. "
                                          "payload.title) must start with this text; `{field}` is filled from the "
                                          "record's data (e.g. '{destination}: '). Validation is unchanged")
    gates: list[GateSpec] = Field(default_factory=list)
    teacher: TeacherSettings | None = None
    variants: Variants | None = None
    id_prefix: str | None = None
    route: Route | None = None
    facets: list[str] = Field(default_factory=list, description="record fields to break pass rates down by")
    vars: dict[str, Any] = Field(default_factory=dict, description="constants available to the template")
    allow_truncated: bool = False

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("gates", mode="before")
    @classmethod
    def _short_gates(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _members_are_read(self) -> "StageSpec":
        # the membership table is read like an input (order, staleness, --fresh downstream), never joined by id
        if self.members is not None and self.members not in self.inputs:
            self.inputs.append(self.members)
        return self

    @property
    def is_operation(self) -> bool:
        return self.op is not None


class ExecutorSpec(Strict):
    """Where a run's work happens: `local` (this process) or a registered executor such as `ray`."""

    name: str = Field("local", description="a registered executor: local (default) or ray (the ray extra)")
    options: dict[str, Any] = Field(default_factory=dict, description="the executor's options, e.g. ray: "
                                    "{address: auto, actors: 4} (validated against the executor's model)")

    @model_validator(mode="before")
    @classmethod
    def _short_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data


class PipelineDefaults(Strict):
    name: str = "pipeline"
    data_dir: str = "data/runs"
    templates_dir: str = "templates"
    concurrency: int = Field(16, ge=1)
    teacher: TeacherSettings = TeacherSettings()
    cohort: str | None = Field(None, description="cohort file whose axes fill the stages' variants (see cohort.py); "
                               "the environment variable named by cohort_env overrides it")
    cohort_env: str | None = Field(None, description="environment variable that picks the cohort (a cohort id or "
                                   "file); default DD_COHORT")
    models_catalog: str | None = Field(None, description="models catalog (CSV or YAML: id, for_generation, "
                                       "for_evaluation[, active, description]) that cohort axes pick models from")
    executor: ExecutorSpec = Field(default_factory=ExecutorSpec, description="where the work runs (`executor: "
                                   "ray` or {name: ray, options: {...}}); --executor overrides it")


class PipelineSpec(Strict):
    plugins: list[str] = Field(default_factory=list, description="modules (my_pkg.checks) or files relative to "
                               "this stages.yaml (./local_checks.py) whose decorators register parsers, gates, "
                               "operations, generators")
    pipeline: PipelineDefaults = PipelineDefaults()
    stages: list[StageSpec]

    def stage(self, name: str) -> StageSpec:
        for s in self.stages:
            if s.name == name:
                return s
        from pocketguide.engine.errors import StageError
        from pocketguide.engine.registry import closest

        raise StageError(f"unknown stage '{name}'; {closest(name, [s.name for s in self.stages])}")
