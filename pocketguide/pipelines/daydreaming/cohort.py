"""Cohorts: one file lists the axes of a study, and the loader turns them into each stage's `variants`
(which templates exist, which models, how many replicates) before any check or call. The membership
table (membership.py) then lists every record those axes make; the per-record stages make exactly those.

A cohort file:

    id: pilot-1                       # recorded with every exported record
    models: [model-a, model-b]        # the models axes may name, when there is no models catalog
    stages:
      draft:      {templates: [creative, problem], models: [model-a], replicates: 1}
      essay:      {templates: [from_draft, copy], models: [model-a]}
      evaluation: {models: [model-a, model-b], replicates: 2}   # no templates: every active one
      combos:     {options: {combos: [[a, b], [c, d]]}}          # merged into a whole-dataset stage's options

Which cohort: `--cohort ID|FILE` on the command line, else the environment variable named by
`pipeline.cohort_env` (default DD_COHORT), else `pipeline.cohort` in stages.yaml. An id names
`<id>.yaml` in the cohorts folder (the folder of `pipeline.cohort`, else `cohorts/`). The same cohort file
always expands to the same variants, in the same order, so the same membership and the same ids.
Catalog columns (active, parser, inline content) and the models catalog: catalogs.py.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator

from pocketguide.engine.registry import closest, load_hook
from pocketguide.engine.spec import PipelineSpec, StageSpec, TemplateVariant, Variants
from pocketguide.engine.teacher_spec import Strict
from pocketguide.pipelines.daydreaming.catalogs import ID_PATTERN, CatalogEntry, ModelRow, read_catalog, read_models
from pocketguide.pipelines.daydreaming.membership import membership_problems

DEFAULT_COHORT_ENV = "DD_COHORT"


class ModelEntry(Strict):
    id: str = Field(min_length=1, description="model id sent to the teacher and stored in the record's variant")
    description: str = ""


class StageAxes(Strict):
    """One stage's axes in a cohort."""

    templates: list[str] | None = Field(None, description="catalog template ids (absent: every active template)")
    models: list[str] | None = Field(None, description="model ids (absent: every active model the models catalog "
                                                       "marks for the stage's role; none without a catalog)")
    replicates: int = Field(1, ge=1, description="samples per template × model (llm templates only)")
    options: dict[str, Any] | None = Field(None, description="merged into a whole-dataset stage's options")


class Cohort(Strict):
    id: str = Field(pattern=ID_PATTERN, description="cohort id, recorded in metadata")
    description: str = ""
    models: list[ModelEntry] = Field(default_factory=list)
    stages: dict[str, StageAxes] = Field(default_factory=dict)

    @field_validator("models", mode="before")
    @classmethod
    def _plain_models(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"id": v} if isinstance(v, str) else v for v in value]
        return value


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


def _looks_like_file(value: str) -> bool:
    return "/" in value or os.sep in value or Path(value).suffix.lower() in (".yaml", ".yml", ".json")


def select_cohort(pipe: Any) -> tuple[Path | None, str, str | None, list[str]]:
    """(cohort file, how it was chosen, the id asked for, problems): --cohort, then the environment, then YAML."""
    spec = pipe.spec.pipeline
    env = spec.cohort_env or DEFAULT_COHORT_ENV
    for value, how in ((pipe.settings.get("cohort"), "--cohort "), (os.environ.get(env), f"${env}="),
                       (spec.cohort, "")):
        if not value:
            continue
        how += value
        if _looks_like_file(value):
            return pipe.resolve(value), how, None, []
        folder = pipe.resolve(spec.cohort).parent if spec.cohort else pipe.resolve("cohorts")
        path = folder / f"{value}.yaml"
        if not path.exists():
            known = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
            return None, how, value, [f"cohort: {how} names cohort '{value}', but {path} does not exist — "
                                      f"{closest(value, known)}"]
        return path, how, value, []
    return None, "", None, []


def _variant(stage: StageSpec, entry: CatalogEntry) -> TemplateVariant:
    file = None if entry.content is not None else (entry.file or f"{stage.name}/{entry.template_id}.j2")
    return TemplateVariant(id=entry.template_id, file=file, content=entry.content, mode=entry.generator,
                           parser=entry.parser, parser_options=entry.parser_options, description=entry.description)


def _duplicates(values: list[str]) -> list[str]:
    seen, dups = set(), []
    for v in values:
        if v in seen and v not in dups:
            dups.append(v)
        seen.add(v)
    return dups


def _chosen_templates(stage: StageSpec, axes: StageAxes, catalog: list[CatalogEntry] | None, where: str
                      ) -> tuple[list[CatalogEntry], list[str]]:
    n, p = stage.name, []
    if axes.templates is not None and catalog is None:
        return [], [f"{n}.catalog: the cohort picks templates for '{n}' but the stage has no catalog — add "
                    f"`catalog: <file>` to the stage"]
    if axes.templates is None:  # the Cartesian product: active rows only
        chosen = [e for e in catalog or [] if e.active]
        if catalog and not chosen:
            p.append(f"{n}.catalog: no row is active — set active to true on the templates the cohort should use")
        return chosen, p
    by_id = {e.template_id: e for e in catalog or []}
    chosen = []
    for i, tid in enumerate(axes.templates):
        entry = by_id.get(tid)
        if entry is None:
            p.append(f"{n}.cohort.templates[{i}]: unknown template '{tid}' ({where}) — {closest(tid, by_id)}")
        elif not entry.active:
            p.append(f"{n}.cohort.templates[{i}]: template '{tid}' is inactive in the catalog ({where}) — set its "
                     f"active cell to true, or leave it out of the cohort")
        else:
            chosen.append(entry)
    return chosen, p


def _chosen_models(stage: StageSpec, axes: StageAxes, known: dict[str, ModelRow | None], catalog: bool,
                   where: str) -> tuple[list[str], list[str]]:
    """The stage's model ids; with a models catalog, each must be active and marked for the stage's role."""
    n, p = stage.name, []
    role = stage.role or "generation"
    flag = "for_evaluation" if role == "evaluation" else "for_generation"
    if axes.models is None:
        return ([m for m, row in known.items() if row is not None and row.active and getattr(row, flag)]
                if catalog else []), []
    for i, model in enumerate(axes.models):
        if model not in known:
            p.append(f"{n}.cohort.models[{i}]: unknown model '{model}' ({where}) — {closest(model, known)} "
                     + ("Add it to the models catalog." if catalog
                        else "Declare it under `models:` in the cohort file."))
            continue
        row = known[model]
        if row is not None and not row.active:
            p.append(f"{n}.cohort.models[{i}]: model '{model}' is inactive in the models catalog — set active to "
                     f"true or leave it out")
        elif row is not None and not getattr(row, flag):
            what = "judge" if role == "evaluation" else "write drafts or essays"
            p.append(f"{n}.cohort.models[{i}]: model '{model}' is not marked {flag} in the models catalog, so it "
                     f"cannot {what} (stage role: {role}) — set {flag} to true or pick another model")
    return list(axes.models), p


def _axes_variants(stage: StageSpec, axes: StageAxes, catalog: list[CatalogEntry] | None,
                   known: dict[str, ModelRow | None], models_catalog: bool, where: str
                   ) -> tuple[Variants | None, list[str]]:
    """Turn one stage's axes into its Variants; every unknown, inactive or repeated name is a problem line."""
    chosen, p = _chosen_templates(stage, axes, catalog, where)
    models, more = _chosen_models(stage, axes, known, models_catalog, where)
    p += more
    for field, values in (("templates", axes.templates or []), ("models", axes.models or [])):
        for dup in _duplicates(values):
            p.append(f"{stage.name}.cohort.{field}: '{dup}' is listed twice ({where}) — list each value once "
                     f"(twice would give two records one id)")
    if p:
        return None, p
    return Variants(templates=[_variant(stage, e) for e in chosen], models=models, replicates=axes.replicates), []


def _known_models(spec: PipelineSpec, cohort: Cohort | None, resolve: Any) -> tuple[dict[str, ModelRow | None],
                                                                                   bool, list[str]]:
    """Model id → its catalog row (None when the cohort declares it); whether a models catalog is in use."""
    if spec.pipeline.models_catalog:
        rows, problems = read_models(resolve(spec.pipeline.models_catalog), "pipeline.models_catalog")
        if cohort is not None and cohort.models:
            problems.append("cohort.models: models are declared both here and in pipeline.models_catalog — keep "
                            "the catalog (it says what each model may do) and remove them from the cohort")
        return {r.id: r for r in rows}, True, problems
    return {m.id: None for m in (cohort.models if cohort else [])}, False, []


def apply_cohort(pipe: Any) -> tuple[Cohort | None, list[str]]:
    """Read every stage's catalog, the models catalog and the selected cohort; fill each stage's variants
    (and a whole-dataset stage's options) from them. Returns the cohort and the problems found."""
    spec: PipelineSpec = pipe.spec
    problems: list[str] = []
    catalogs: dict[str, list[CatalogEntry]] = {}
    for stage in spec.stages:
        if stage.catalog:
            catalogs[stage.name], more = read_catalog(pipe.resolve(stage.catalog), f"{stage.name}.catalog",
                                                      evaluation=stage.role == "evaluation")
            problems += more
    path, how, asked, more = select_cohort(pipe)
    problems += more
    cohort, where = None, "no cohort"
    if path is not None:
        where = f"cohort {how}"
        cohort, more = read_cohort(path, "cohort")
        problems += more
        if cohort is not None and asked is not None and cohort.id != asked:
            problems.append(f"cohort.id: {path.name} says id '{cohort.id}' but {how} asked for it by name — make "
                            f"the file's id match its name ('{asked}')")
    known, models_catalog, more = _known_models(spec, cohort, pipe.resolve)
    problems += more
    problems += _fill_stages(spec, cohort, catalogs, known, models_catalog, where)
    pipe.extras["cohort_source"] = how or None
    return cohort, problems


def _fill_stages(spec: PipelineSpec, cohort: Cohort | None, catalogs: dict[str, list[CatalogEntry]],
                 known: dict[str, ModelRow | None], models_catalog: bool, where: str) -> list[str]:
    problems: list[str] = []
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
        variants, more = _axes_variants(stage, axes or StageAxes(), catalogs.get(stage.name), known, models_catalog,
                                        where)
        problems += more
        if variants is not None:
            stage.variants = variants
    return problems


def _op_axes(stage: StageSpec, axes: StageAxes) -> list[str]:
    if axes.templates is not None or axes.models is not None or axes.replicates != 1:
        return [(f"{stage.name}.cohort: a whole-dataset stage (op: {stage.op}) takes only `options` from the "
                 f"cohort — remove templates/models/replicates")]
    stage.options = {**stage.options, **(axes.options or {})}
    return []


@load_hook("cohort", handles=("pipeline.cohort", "pipeline.cohort_env", "pipeline.models_catalog", "stage.catalog",
                              "stage.role"))
def expand_cohort(pipe: Any) -> list[str]:
    """The loader's hook: catalogs and the cohort become each stage's variants before any other check."""
    cohort, problems = apply_cohort(pipe)
    pipe.extras["cohort"] = cohort
    return problems + membership_problems(pipe)
