"""Shared by tests/test_dataset_*.py: a real pipeline whose first stage, `dataset`, copies synthetic
envelope records from a source file; then qa → split → sft → eval_suite as in docs/dataset.md."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from pocketguide.pipelines.pocketguide.synthetic import make_record, perturb, source_line

# the same blocks as docs/dataset.md, after a stand-in `dataset` stage
STAGES = """\
pipeline:
  name: dataset-test
  data_dir: runs
stages:
  - name: dataset
    source: data/dataset.jsonl
    mode: copy
    copy_from: source.envelope
    parser: json
    facets: [payload_type]

  - name: qa
    inputs: [dataset]
    op: qa
    options: {threshold: 0.85, group_threshold: 0.6, max_bucket_ratio: %(ratio)s,
              bucket_by: [payload_type, category, difficulty]}
    facets: [payload_type, category, difficulty]

  - name: split
    inputs: [qa]
    op: split
    options: {ratios: {train: 0.8, val: 0.1, test: 0.1}, seed: 13, stratify_by: [payload_type, difficulty],
              report_by: [category]}
    facets: [split, payload_type, difficulty]

  - name: sft
    inputs: [split]
    op: sft
    options:
      schema: data/schemas/envelope.v0.json
      system_prompt: You are a travel assistant. Answer with one JSON object.
      key_order: [summary, assumptions, uncertainty_notes, next_steps, verification_steps, payload_type, metadata, payload]
    facets: [split, payload_type]

  - name: eval_suite
    inputs: [sft]
    op: eval_suite
    options: {size: %(size)s, seed: 7}
    facets: [payload_type, difficulty]
"""

ENVELOPE_ORDER = ["summary", "assumptions", "uncertainty_notes", "next_steps", "verification_steps",
                  "payload_type", "metadata", "payload"]

ENVELOPE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "envelope.v0", "version": "0", "type": "object", "additionalProperties": False,
    "required": ["summary", "assumptions", "uncertainty_notes", "next_steps", "verification_steps",
                 "payload_type", "payload"],
    "properties": {
        "summary": {"type": "string", "minLength": 1},
        "assumptions": {"type": "array", "items": {"type": "string"}},
        "uncertainty_notes": {"type": "string"},
        "next_steps": {"type": "array", "items": {"type": "string"}},
        "verification_steps": {"type": "array", "items": {"type": "string"}},
        "payload_type": {"enum": ["itinerary", "checklist", "decision_tree", "procedure"]},
        "payload": {"type": "object"},
        "metadata": {"type": "object"},
    },
}


def synthetic(n: int, seed: int = 0, **kw: Any) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [make_record(rng, i, **kw) for i in range(n)]


def write_project(root: Path, records: list[dict[str, Any]], *, size: int = 20, ratio: str = "null") -> Path:
    """stages.yaml, the schema and the source file under root; returns the stages.yaml path."""
    (root / "data" / "schemas").mkdir(parents=True, exist_ok=True)
    (root / "data" / "schemas" / "envelope.v0.json").write_text(json.dumps(ENVELOPE_SCHEMA))
    write_source(root, records)
    path = root / "stages.yaml"
    path.write_text(STAGES % {"size": size, "ratio": ratio})
    return path


def write_source(root: Path, records: list[dict[str, Any]]) -> None:
    lines = [json.dumps(source_line(r)) if "parsed" in r else json.dumps(r) for r in records]
    (root / "data" / "dataset.jsonl").write_text("\n".join(lines) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def with_duplicates(records: list[dict[str, Any]], seed: int = 1) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Plant one exact copy and one 1-word near copy of the first two records; returns planted id → original id."""
    rng = random.Random(seed)
    exact = dict(records[0], id=records[0]["id"] + "_exact")
    near = perturb(rng, records[1], records[1]["id"] + "_near")
    return records + [exact, near], {exact["id"]: records[0]["id"], near["id"]: records[1]["id"]}
