"""Cohorts and catalogs: expansion counts, stable ids, collisions, and load-time validation."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re

import pytest
import yaml
from daydreaming_helpers import copy_example

from pocketguide.engine.errors import StagesConfigError
from pocketguide.engine.loader import load_pipeline
from pocketguide.engine.pipeline import run_pipeline
from pocketguide.engine.records import child_id
from pocketguide.engine.runner import run_stage
from pocketguide.engine.store import StageStore


def _edit_cohort(path, **changes):
    cohort = path.parent / "cohorts" / "pilot.yaml"
    data = yaml.safe_load(cohort.read_text())
    for dotted, value in changes.items():
        cur = data
        *head, last = dotted.split("__")
        for k in head:
            cur = cur[k]
        cur[last] = value
    cohort.write_text(yaml.safe_dump(data))


def _set_model(path, model, **flags):
    """Add or change a row of the example's models catalog."""
    catalog = path.parent / "catalogs" / "models.csv"
    rows = list(csv.DictReader(io.StringIO(catalog.read_text())))
    row = next((r for r in rows if r["id"] == model), None)
    if row is None:
        row = {"id": model, "for_generation": "true", "for_evaluation": "true", "active": "true", "description": ""}
        rows.append(row)
    row.update({k: str(v).lower() for k, v in flags.items()})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    catalog.write_text(out.getvalue())


def _dry_counts(path):
    pipe = load_pipeline(path)
    result = run_pipeline(pipe, dry_run=True)
    assert result.ok, result.stopped
    return pipe, {r.stage: r.accepted + r.rejected for r in result.stages}


def _ids(pipe, stage, dry_run=True):
    root = pipe.data_dir / "dry-run" if dry_run else pipe.data_dir
    return [r["id"] for r in StageStore(root, stage).all_records()]


def test_child_id_is_a_documented_hash():
    variant = {"template": "novelty", "model": "judge-b", "replicate": 1}
    canon = json.dumps({"parent": "essay_1", "variant": variant}, sort_keys=True, ensure_ascii=True)
    assert child_id("essay_1", variant, "eval") == "eval_" + hashlib.sha256(canon.encode()).hexdigest()[:12]
    assert child_id("essay_1", dict(reversed(variant.items())), "eval") == child_id("essay_1", variant, "eval")
    assert child_id("essay_1", {**variant, "model": "other"}, "eval") != child_id("essay_1", variant, "eval")


def test_expansion_counts_of_the_pilot_cohort(tmp_path):
    pipe, counts = _dry_counts(copy_example(tmp_path))
    # 2 combos × 2 active draft templates × 1 model = 4 drafts; × (1 llm essay × 1 model + 1 copy) = 8 essays;
    # × 3 rubrics × 2 judges × 2 replicates = 96 evaluations; the membership table lists all 108
    assert counts["combos"] == 2 and counts["draft"] == 4 and counts["essay"] == 8 and counts["evaluation"] == 96
    assert counts["membership"] == 4 + 8 + 96
    for stage, prefix in (("draft", "draft_"), ("essay", "essay_"), ("evaluation", "eval_")):
        ids = _ids(pipe, stage)
        assert len(set(ids)) == len(ids) and all(i.startswith(prefix) for i in ids)


def test_copy_templates_ignore_model_and_replicate_axes(tmp_path):
    path = copy_example(tmp_path)
    _set_model(path, "judge-b", for_generation=True)
    _edit_cohort(path, stages__essay__models=["smollm2-135m", "judge-b"], stages__essay__replicates=3)
    pipe, counts = _dry_counts(path)
    # per draft: 1 llm essay template × 2 models × 3 replicates + 1 copy = 7
    assert counts["essay"] == 4 * 7
    essays = list(StageStore(pipe.data_dir / "dry-run", "essay").accepted())
    copies = [e for e in essays if e["template"] == "copy_draft"]
    assert len(copies) == 4 and all(e["variant"] == {"template": "copy_draft"} for e in copies)
    assert {(e["variant"]["model"], e["variant"]["replicate"]) for e in essays if e["mode"] == "llm"} == \
        {(m, r) for m in ("smollm2-135m", "judge-b") for r in range(3)}


def test_same_cohort_same_ids_anywhere(tmp_path):
    a = copy_example(tmp_path / "machine_a")
    b = copy_example(tmp_path / "machine_b")
    pa, _ = _dry_counts(a)
    pb, _ = _dry_counts(b)
    for stage in ("combos", "draft", "essay", "evaluation"):
        assert _ids(pa, stage) == _ids(pb, stage)
    # the combo id ignores the order the concepts are listed in
    assert child_id("concepts", {"concepts": sorted(["boredom", "creativity"])}, "combo") in _ids(pa, "combos")


def test_essay_model_is_part_of_the_essay_id(tmp_path):
    path = copy_example(tmp_path)
    pipe, _ = _dry_counts(path)
    before = set(_ids(pipe, "essay"))
    _set_model(path, "other")
    _edit_cohort(path, stages__essay__models=["other"])
    pipe, _ = _dry_counts(path)
    after = set(_ids(pipe, "essay"))
    llm_before = {i for i in before if i not in after}
    assert len(llm_before) == 4, "llm essays get new ids with another model; copy essays keep theirs"


def test_duplicate_inputs_become_visible_rejections(tmp_path):
    path = copy_example(tmp_path)
    _edit_cohort(path, stages__combos__options={"combos": [["boredom", "creativity"], ["creativity", "boredom"],
                                                            ["boredom", "nonexistent"]]})
    pipe = load_pipeline(path)
    run_stage("combos", pipe)
    rejected = list(StageStore(pipe.data_dir, "combos").rejected())
    assert sorted(r["reasons"][0] for r in rejected) == ["duplicate_id", "unknown_concept"]
    assert len(list(StageStore(pipe.data_dir, "combos").accepted())) == 1


def test_duplicate_source_ids_in_a_per_record_stage(pipeline_dir):
    path = pipeline_dir("""
        stages:
          - name: a
            source: in.jsonl
            template: t.j2
            mode: copy
        """, templates={"t.j2": "{{ source.text }}"},
        files={"in.jsonl": '{"id": "x", "text": "one"}\n{"id": "x", "text": "two"}\n{"id": "y", "text": "3"}\n'})
    res = run_stage("a", path)
    assert (res.accepted, res.rejected) == (2, 1)
    pipe = load_pipeline(path)
    (dup,) = StageStore(pipe.data_dir, "a").rejected()
    assert dup["id"] == "x~dup2" and dup["reasons"] == ["duplicate_id"] and "unique id" in dup["error"]
    again = run_stage("a", path)
    assert again.new_accepted == again.new_rejected == 0, "a rerun finds everything done"


@pytest.mark.parametrize("changes,expected", [
    ({"stages__draft__templates": ["creative_synthesis", "creativ_synthesis"]},
     ("draft.cohort.templates[1]: unknown template 'creativ_synthesis' (cohort cohorts/pilot.yaml) — known: "
      "creative_synthesis, idea_ladder, plain_notes. Did you mean 'creative_synthesis'?")),
    ({"stages__evaluation__models": ["smollm2-135m", "gpt-5"]},
     "evaluation.cohort.models[1]: unknown model 'gpt-5'"),
    ({"stages__essay__templates": ["copy_draft", "copy_draft"]}, "essay.cohort.templates: 'copy_draft' is listed twice"),
    ({"stages__evaluation__models": ["judge-b", "judge-b"]}, "evaluation.cohort.models: 'judge-b' is listed twice"),
    ({"stages__drafts": {"templates": ["plain_notes"]}}, "cohort.stages.drafts: unknown stage 'drafts'"),
    ({"stages__draft__replicates": 0}, "cohort.stages.draft.replicates: Input should be greater than or equal to 1"),
    ({"stages__combos__models": ["judge-b"]}, "combos.cohort: a whole-dataset stage (op: concept_combos) takes only"),
    ({"stages__combos__options": {"combo": []}}, "combos.options.combo: unknown option"),
])
def test_cohort_problems_are_found_at_load_time(tmp_path, changes, expected):
    path = copy_example(tmp_path)
    _edit_cohort(path, **changes)
    with pytest.raises(StagesConfigError) as exc:
        load_pipeline(path)
    assert expected in str(exc.value)


def test_catalog_problems_are_found_at_load_time(tmp_path):
    path = copy_example(tmp_path)
    catalog = path.parent / "catalogs" / "evaluation.csv"
    catalog.write_text(catalog.read_text() + "novelty,true,llm,in_last_line,,again,\n"
                                              "style,true,llm,in_last_lines,,typo,\n"
                                              "vibes,true,human,identity,,bad generator,\n")
    _edit_cohort(path, stages__evaluation__templates=["novelty", "style"])
    with pytest.raises(StagesConfigError) as exc:
        load_pipeline(path)
    text = str(exc.value)
    assert "evaluation.catalog[4].template_id: 'novelty' is listed twice" in text
    # known modes: copy, llm and any mode a loaded plugin (or another test of the session) registered
    known = re.search(r"evaluation\.catalog\[6\]\.generator: unknown generator mode 'human' — known: ([^.]*)\.", text)
    assert known and {"copy", "llm"} <= set(known.group(1).split(", "))
    assert "evaluation.variants.templates[1].parser: unknown parser 'in_last_lines'" in text
    assert "Did you mean 'in_last_line'?" in text


def test_parser_options_are_validated(tmp_path):
    path = copy_example(tmp_path)
    text = path.read_text().replace("parser_options: {min_score: 0, max_score: 10}",
                                    "parser_options: {min_score: 0, max_scor: 10}")
    path.write_text(text)
    with pytest.raises(StagesConfigError, match=r"evaluation.parser_options.max_scor: Extra inputs are not permitted"):
        load_pipeline(path)


def test_yaml_catalog_and_variants_conflict(pipeline_dir):
    path = pipeline_dir("""
        pipeline: {cohort: cohort.yaml}
        stages:
          - name: a
            source: in.jsonl
            catalog: cat.yaml
            variants: {templates: [t.j2]}
        """, templates={"a/t.j2": "{{ source.text }}", "t.j2": "{{ source.text }}"},
        files={"in.jsonl": '{"id": "x", "text": "one"}\n',
               "cat.yaml": "templates:\n  - {template_id: t, active: true, generator: copy, parser: stripped}\n",
               "cohort.yaml": "id: c\nstages:\n  a: {templates: [t]}\n"})
    with pytest.raises(StagesConfigError, match=r"a.variants: set both here and by the cohort — keep one"):
        load_pipeline(path)
    path.write_text(path.read_text().replace("    variants: {templates: [t.j2]}\n", ""))
    res = run_stage("a", path)
    assert res.accepted == 1
