"""Cohorts and template catalogs: one file lists the axes of a study, and the loader turns them into
each stage's `variants` before any check or call.

A cohort file (named by `pipeline.cohort` in stages.yaml, relative to it):

    id: pilot-1                       # recorded with every exported record
    models: [model-a, model-b]        # the models axes may name (plain ids or {id, description})
    stages:
      draft:      {templates: [creative, problem], models: [model-a], replicates: 1}
      essay:      {templates: [from_draft, copy], models: [model-a]}
      evaluation: {templates: [novelty, coherence], models: [model-a, model-b], replicates: 2}
      combos:     {options: {combos: [[a, b], [c, d]]}}   # merged into a whole-dataset stage's options

Template ids name rows of the stage's `catalog:` (CSV or YAML: template_id, generator llm|copy, parser,
description, optional file — default `<stage>/<template_id>.j2` under the templates folder). The same
cohort file always expands to the same variants, in the same order, so child ids are stable.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator

from pocketguide.engine.registry import GENERATORS, closest, load_hook
from pocketguide.engine.spec import PipelineSpec, StageSpec, Strict, TemplateVariant, Variants


class ModelEntry(Strict):
    id: str = Field(min_length=1, description="model id sent to the teacher and stored in the record's variant")
    description: str = ""


class StageAxes(Strict):
    """One stage's axes in a cohort."""

    templates: list[str] | None = Field(None, description="catalog template ids (absent: every catalog template)")
    models: list[str] = Field(default_factory=list, description="model ids from the cohort's `models` list")
    replicates: int = Field(1, ge=1, description="samples per template × model (llm templates only)")
    options: dict[str, Any] | None = Field(None, description="merged into a whole-dataset stage's options")


class Cohort(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", description="cohort id, recorded in metadata")
    description: str = ""
    models: list[ModelEntry] = Field(default_factory=list)
    stages: dict[str, StageAxes] = Field(default_factory=dict)

    @field_validator("models", mode="before")
    @classmethod
    def _plain_models(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"id": v} if isinstance(v, str) else v for v in value]
        return value


class CatalogEntry(Strict):
    template_id: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    generator: str = Field(description="a registered generator mode: llm or copy (or a plugin's)")
    parser: str | None = None
    description: str = ""
    file: str | None = None

    @field_validator("parser", "file", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


def _read_rows(path: Path) -> list[Any]:
    text = path.read_text()
    if path.suffix.lower() == ".csv":
        return list(csv.DictReader(io.StringIO(text)))
    data = yaml.safe_load(text)
    if isinstance(data, dict) and "templates" in data:
        data = data["templates"]
    if not isinstance(data, list):
        raise ValueError("expected a list of templates (or a mapping with a `templates:` list)")
    return data


def read_catalog(path: Path, where: str) -> tuple[list[CatalogEntry], list[str]]:
    """The rows of one catalog, and one `where: problem — fix` line per bad row."""
    try:
        rows = _read_rows(path)
    except FileNotFoundError:
        return [], [f"{where}: file {path} not found — create it or fix the path (relative to the pipeline file)"]
    except (ValueError, yaml.YAMLError, csv.Error) as exc:
        return [], [f"{where}: cannot read {path.name}: {str(exc).splitlines()[0]} — fix the file"]
    entries, problems, seen = [], [], set()
    for i, row in enumerate(rows):
        try:
            entry = CatalogEntry.model_validate(row)
        except ValidationError as exc:
            for e in exc.errors():
                field = ".".join(map(str, e["loc"])) or "(row)"
                problems.append(f"{where}[{i}].{field}: {e['msg']} — fix row {i + 1} of {path.name}")
            continue
        if entry.template_id in seen:
            problems.append(f"{where}[{i}].template_id: '{entry.template_id}' is listed twice — "
                            f"give each template a unique id")
            continue
        if entry.generator not in GENERATORS:
            problems.append(f"{where}[{i}].generator: unknown generator mode '{entry.generator}' — "
                            f"{closest(entry.generator, GENERATORS)} Fix row {i + 1} of {path.name}")
            continue
        seen.add(entry.template_id)
        entries.append(entry)
    return entries, problems


def read_cohort(path: Path, where: str) -> tuple[Cohort | None, list[str]]:
    try:
        data = yaml.safe_load(path.read_text())
        return Cohort.model_validate(data), []
    except FileNotFoundError:
        return None, [f"{where}: file {path} not found — create it or fix `pipeline.cohort`"]
    except yaml.YAMLError as exc:
        return None, [f"{where}: invalid YAML in {path.name}: {exc} — fix the syntax"]
    except ValidationError as exc:
        return None, [f"{where}.{'.'.join(map(str, e['loc'])) or '(file)'}: {e['msg']} — fix {path.name}"
                      for e in exc.errors()]


def _variant(stage: StageSpec, entry: CatalogEntry) -> TemplateVariant:
    return TemplateVariant(id=entry.template_id, file=entry.file or f"{stage.name}/{entry.template_id}.j2",
                           mode=entry.generator, parser=entry.parser, description=entry.description)


def _duplicates(values: list[str]) -> list[str]:
    seen, dups = set(), []
    for v in values:
        if v in seen and v not in dups:
            dups.append(v)
        seen.add(v)
    return dups


def _axes_variants(stage: StageSpec, axes: StageAxes, catalog: list[CatalogEntry] | None, cohort: Cohort,
                   where: str) -> tuple[Variants | None, list[str]]:
    """Turn one stage's axes into its Variants; every unknown or repeated name is a problem line."""
    p: list[str] = []
    n = stage.name
    by_id = {e.template_id: e for e in catalog or []}
    if axes.templates is not None and catalog is None:
        p.append(f"{n}.catalog: the cohort picks templates for '{n}' but the stage has no catalog — add "
                 f"`catalog: <file>` to the stage")
    chosen: list[CatalogEntry] = list(catalog or []) if axes.templates is None else []
    for i, tid in enumerate(axes.templates or []):
        if tid in by_id:
            chosen.append(by_id[tid])
        elif catalog is not None:
            p.append(f"{n}.cohort.templates[{i}]: unknown template '{tid}' ({where}) — {closest(tid, by_id)}")
    known_models = [m.id for m in cohort.models]
    for i, model in enumerate(axes.models):
        if model not in known_models:
            p.append(f"{n}.cohort.models[{i}]: unknown model '{model}' ({where}) — "
                     f"{closest(model, known_models)} Declare it under `models:` in the cohort file.")
    for field, values in (("templates", axes.templates or []), ("models", axes.models)):
        for dup in _duplicates(values):
            p.append(f"{n}.cohort.{field}: '{dup}' is listed twice ({where}) — list each value once "
                     f"(twice would give two records one id)")
    if p:
        return None, p
    return Variants(templates=[_variant(stage, e) for e in chosen], models=list(axes.models),
                    replicates=axes.replicates), []


def apply_cohort(spec: PipelineSpec, resolve: Any) -> tuple[Cohort | None, list[str]]:
    """Read every stage's catalog and the pipeline's cohort; fill each stage's variants (and a whole-
    dataset stage's options) from them. Returns the cohort and the problems found."""
    problems: list[str] = []
    catalogs: dict[str, list[CatalogEntry]] = {}
    for stage in spec.stages:
        if stage.catalog:
            catalogs[stage.name], more = read_catalog(resolve(stage.catalog), f"{stage.name}.catalog")
            problems += more
    cohort = None
    if spec.pipeline.cohort:
        where = f"cohort {spec.pipeline.cohort}"
        cohort, more = read_cohort(resolve(spec.pipeline.cohort), "cohort")
        problems += more
    by_name = {s.name: s for s in spec.stages}
    axes_of = dict(cohort.stages) if cohort else {}
    for name in axes_of:
        if name not in by_name:
            problems.append(f"cohort.stages.{name}: unknown stage '{name}' — {closest(name, by_name)}")
    for stage in spec.stages:
        axes = axes_of.get(stage.name)
        if stage.is_operation:
            if axes is not None:
                problems += _op_axes(stage, axes)
            continue
        if axes is None and stage.name not in catalogs:
            continue
        if stage.variants is not None:
            problems.append(f"{stage.name}.variants: set both here and by the "
                            f"{'cohort' if axes else 'catalog'} — keep one (the cohort's axes fill variants)")
            continue
        if axes is not None and axes.options is not None:
            problems.append(f"{stage.name}.cohort.options: only whole-dataset (op) stages take options — remove them")
        variants, more = _axes_variants(stage, axes or StageAxes(), catalogs.get(stage.name), cohort or Cohort(id="none"),
                                        where if cohort else "no cohort")
        problems += more
        if variants is not None:
            stage.variants = variants
    return cohort, problems


def _op_axes(stage: StageSpec, axes: StageAxes) -> list[str]:
    if axes.templates is not None or axes.models or axes.replicates != 1:
        return [(f"{stage.name}.cohort: a whole-dataset stage (op: {stage.op}) takes only `options` from the "
                 f"cohort — remove templates/models/replicates")]
    stage.options = {**stage.options, **(axes.options or {})}
    return []


@load_hook("cohort", handles=("pipeline.cohort", "stage.catalog"))
def expand_cohort(pipe: Any) -> list[str]:
    """The loader's hook: catalogs and the cohort become each stage's variants before any other check."""
    cohort, problems = apply_cohort(pipe.spec, pipe.resolve)
    pipe.extras["cohort"] = cohort
    return problems
