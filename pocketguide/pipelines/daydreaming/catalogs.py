"""Catalogs of a cohort study: each stage's templates, and the models.

Template catalog (a stage's `catalog:`, CSV or YAML), one row per template:

    template_id   the id cohorts pick (and part of every record id made with it)
    active        required: the cohort's Cartesian product (a stage whose cohort entry names no templates)
                  uses only active rows; naming an inactive row in a cohort is an error
    generator     a registered generator mode: llm or copy (or a plugin's)
    parser        the parser of the template's output; required on an evaluation stage (`role: evaluation`):
                  a blank cell there is a load-time error, not an identity parser
    parser_options  optional: JSON (a CSV cell) or a mapping (YAML) for the parser
    file | content  the template file (default `<stage>/<template_id>.j2` under the templates folder), or its
                  text inline
    description

Models catalog (`pipeline.models_catalog`), one row per model id (the id sent to the teacher):

    id, for_generation, for_evaluation (required flags), active (default true), description

A stage whose role is evaluation takes only models marked for_evaluation; any other stage only models
marked for_generation. A cohort that names one the other way round is a load-time error.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from pocketguide.engine.registry import GENERATORS, closest
from pocketguide.engine.teacher_spec import Strict

ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"


class CatalogEntry(Strict):
    template_id: str = Field(pattern=ID_PATTERN)
    active: bool = Field(description="only active rows enter a cohort's Cartesian product")
    generator: str = Field(description="a registered generator mode: llm or copy (or a plugin's)")
    parser: str | None = None
    parser_options: dict[str, Any] | None = None
    description: str = ""
    file: str | None = None
    content: str | None = None

    @field_validator("parser", "file", "content", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("parser_options", mode="before")
    @classmethod
    def _json_cell(cls, value: Any) -> Any:
        if value == "":
            return None
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError as exc:
                raise ValueError(f"not JSON ({exc.args[0]}) — write the options as a JSON object") from None
        return value

    @model_validator(mode="after")
    def _one_source(self) -> "CatalogEntry":
        if self.file is not None and self.content is not None:
            raise ValueError("both file and content are set — keep one (content is the template's text inline)")
        return self


class ModelRow(Strict):
    id: str = Field(pattern=ID_PATTERN, description="model id sent to the teacher and stored in record variants")
    for_generation: bool = Field(description="may write drafts and essays")
    for_evaluation: bool = Field(description="may judge")
    active: bool = True
    description: str = ""


def read_rows(path: Path, key: str) -> list[Any]:
    """CSV rows as dicts, or a YAML list (or a mapping holding the list under `key`)."""
    text = path.read_text()
    if path.suffix.lower() == ".csv":
        return list(csv.DictReader(io.StringIO(text)))
    data = yaml.safe_load(text)
    if isinstance(data, dict) and key in data:
        data = data[key]
    if not isinstance(data, list):
        raise ValueError(f"expected a list of {key} (or a mapping with a `{key}:` list)")
    return data


def _validated(model: type[Strict], rows: list[Any], where: str, path: Path, id_field: str
               ) -> tuple[list[tuple[int, Any]], list[str]]:
    """(row index, entry) for each good row, and the problems of the others."""
    out, problems, seen = [], [], set()
    for i, row in enumerate(rows):
        try:
            entry = model.model_validate(row)
        except ValidationError as exc:
            for e in exc.errors():
                field = ".".join(map(str, e["loc"])) or "(row)"
                msg = "required column is missing or empty — add it" if e["type"] == "missing" else e["msg"]
                problems.append(f"{where}[{i}].{field}: {msg} — fix row {i + 1} of {path.name}")
            continue
        value = getattr(entry, id_field)
        if value in seen:
            problems.append(f"{where}[{i}].{id_field}: '{value}' is listed twice — give each row a unique id")
            continue
        seen.add(value)
        out.append((i, entry))
    return out, problems


def _read(path: Path, where: str, key: str, model: type[Strict], id_field: str
          ) -> tuple[list[tuple[int, Any]], list[str]]:
    try:
        rows = read_rows(path, key)
    except FileNotFoundError:
        return [], [f"{where}: file {path} not found — create it or fix the path (relative to the pipeline file)"]
    except (ValueError, yaml.YAMLError, csv.Error) as exc:
        return [], [f"{where}: cannot read {path.name}: {str(exc).splitlines()[0]} — fix the file"]
    return _validated(model, rows, where, path, id_field)


def read_catalog(path: Path, where: str, evaluation: bool = False) -> tuple[list[CatalogEntry], list[str]]:
    """The rows of one template catalog, and one `where: problem — fix` line per bad row."""
    entries, problems = _read(path, where, "templates", CatalogEntry, "template_id")
    good = []
    for i, entry in entries:
        if entry.generator not in GENERATORS:
            problems.append(f"{where}[{i}].generator: unknown generator mode '{entry.generator}' — "
                            f"{closest(entry.generator, GENERATORS)} Fix row {i + 1} of {path.name}")
            continue
        if evaluation and entry.parser is None:
            problems.append(f"{where}[{i}].parser: blank — an evaluation template must name the parser that reads "
                            f"its judge's reply (judge_score, in_last_line, complex). Fix row {i + 1} of {path.name}")
            continue
        good.append(entry)
    return good, problems


def read_models(path: Path, where: str) -> tuple[list[ModelRow], list[str]]:
    rows, problems = _read(path, where, "models", ModelRow, "id")
    return [row for _, row in rows], problems
