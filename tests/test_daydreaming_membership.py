"""The membership table is the authority on what runs; catalog columns (active, inline content, parser on
evaluation templates), the models catalog's roles, and choosing the cohort by --cohort, $DD_COHORT or YAML."""

from __future__ import annotations

import csv
import io

import orjson
import pytest
import yaml
from daydreaming_helpers import copy_example
from typer.testing import CliRunner

from pocketguide.cli.main import app
from pocketguide.engine.errors import StagesConfigError
from pocketguide.engine.loader import load_pipeline
from pocketguide.engine.pipeline import run_pipeline
from pocketguide.engine.records import child_id
from pocketguide.engine.runner import run_stage
from pocketguide.engine.session import RunOptions
from pocketguide.engine.store import StageStore


def _table(pipe, root=None):
    return list(StageStore(root or pipe.data_dir, "membership").accepted())


def _build(path, **settings):
    pipe = load_pipeline(path, settings=settings or None)
    run_stage("combos", pipe)
    run_stage("membership", pipe)
    return pipe


def test_membership_table_lists_every_record_with_its_template_model_and_parent(tmp_path):
    pipe = _build(copy_example(tmp_path))
    rows = [r["data"] for r in _table(pipe)]
    by_stage = {s: [r for r in rows if r["stage"] == s] for s in ("draft", "essay", "evaluation")}
    assert {s: len(v) for s, v in by_stage.items()} == {"draft": 4, "essay": 8, "evaluation": 96}
    combos = {r["id"] for r in StageStore(pipe.data_dir, "combos").accepted()}
    listed = {r["gen_id"] for r in rows}
    for stage, parents in (("draft", combos), ("essay", {r["gen_id"] for r in by_stage["draft"]}),
                           ("evaluation", {r["gen_id"] for r in by_stage["essay"]})):
        assert all(r["parent_id"] in parents and r["parent_gen_id"] == r["parent_id"] for r in by_stage[stage])
    assert all(r["cohort_id"] == "pilot" and r["combo_id"] in combos for r in rows)
    assert len(listed) == len(rows), "one row per (stage, id)"
    # the ids are the ones the cohort's axes always gave: child_id(parent, variant, prefix)
    combo = child_id("concepts", {"concepts": sorted(["boredom", "creativity"])}, "combo")
    draft = child_id(combo, {"template": "creative_synthesis", "model": "smollm2-135m"}, "draft")
    assert draft in listed and child_id(draft, {"template": "copy_draft"}, "essay") in listed
    copy = next(r for r in by_stage["essay"] if r["template_id"] == "copy_draft")
    assert copy["mode"] == "copy" and copy["model_id"] is None and copy["variant"] == {"template": "copy_draft"}
    judge = next(r for r in by_stage["evaluation"] if r["model_id"] == "judge-b" and r["replicate"] == 1)
    assert judge["parser"] == "judge_score" and judge["variant"]["replicate"] == 1
    # inspectable and exportable as CSV: the stage folder's membership.csv and `export --format csv`
    table = list(csv.DictReader(io.StringIO((pipe.data_dir / "membership" / "membership.csv").read_text())))
    assert [r["gen_id"] for r in table] == [r["gen_id"] for r in rows]
    assert list(table[0])[:4] == ["stage", "gen_id", "parent_gen_id", "parent_stage"]
    path = pipe.path
    res = CliRunner().invoke(app, ["--pipeline", str(path), "export", "membership", "--format", "csv",
                                   "--out", str(tmp_path / "m.csv")])
    assert res.exit_code == 0, res.output
    exported = list(csv.DictReader(io.StringIO((tmp_path / "m.csv").read_text())))
    assert len(exported) == 108 and {"template_id", "model_id", "parent_id", "cohort_id"} <= set(exported[0])
    res = CliRunner().invoke(app, ["--pipeline", str(path), "inspect", "membership", draft])
    assert res.exit_code == 0 and "creative_synthesis" in res.output


def test_same_cohort_file_same_table_byte_for_byte(tmp_path):
    a = _build(copy_example(tmp_path / "a"))
    b = _build(copy_example(tmp_path / "b"))
    for name in ("records.jsonl", "membership.csv"):
        assert (a.data_dir / "membership" / name).read_bytes() == (b.data_dir / "membership" / name).read_bytes()
    again = run_stage("membership", load_pipeline(a.path))
    assert again.skipped_done == 108 and again.new_accepted == 0, "unchanged axes: the table is up to date"


def test_per_record_stages_make_exactly_the_rows_of_the_table(tmp_path):
    """A hand-curated table (rows removed, one changed): the stage follows it, not the cohort's axes."""
    pipe = _build(copy_example(tmp_path))
    rows = _table(pipe)
    drafts = [r for r in rows if r["data"]["stage"] == "draft"]
    keep, changed = drafts[0], drafts[1]
    changed["data"]["variant"] = {"template": "plain_notes", "model": "judge-b"}
    unknown = dict(drafts[2], id="draft_unknown", data={**drafts[2]["data"], "variant": {"template": "nope"}})
    table = pipe.data_dir / "membership" / "records.jsonl"
    table.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in (keep, changed, unknown)))
    run_stage("draft", pipe, options=RunOptions(dry_run=True))
    made = {r["id"]: r for r in StageStore(pipe.data_dir / "dry-run", "draft").all_records()}
    assert set(made) == {keep["id"], changed["id"], "draft_unknown"}
    assert made[changed["id"]]["variant"] == {"template": "plain_notes", "model": "judge-b"}
    assert made[changed["id"]]["template"] == "plain_notes"
    assert made[changed["id"]]["parent_ids"] == [changed["data"]["parent_id"]]
    assert made["draft_unknown"]["reasons"] == ["unknown_template"]


def test_a_new_cohort_axis_rebuilds_the_table_and_only_new_records_run(tmp_path):
    path = copy_example(tmp_path)
    pipe = load_pipeline(path)
    run_pipeline(pipe, options=RunOptions(dry_run=True))
    before = {r["id"] for r in StageStore(pipe.data_dir / "dry-run", "evaluation").all_records()}
    cohort = path.parent / "cohorts" / "pilot.yaml"
    data = yaml.safe_load(cohort.read_text())
    data["stages"]["evaluation"]["replicates"] = 3
    cohort.write_text(yaml.safe_dump(data))
    result = run_pipeline(load_pipeline(path), options=RunOptions(dry_run=True))
    by = {r.stage: r for r in result.stages}
    assert by["membership"].accepted == 4 + 8 + 144
    assert by["evaluation"].skipped_done == 96 and by["evaluation"].new_accepted == 48
    after = {r["id"] for r in StageStore(pipe.data_dir / "dry-run", "evaluation").all_records()}
    assert before < after


def _catalog(path, stage):
    return path.parent / "catalogs" / f"{stage}.csv"


def test_only_active_templates_enter_the_cartesian_product(tmp_path):
    path = copy_example(tmp_path)
    pipe = load_pipeline(path)
    assert [t.id for t in pipe.stage("draft").variants.templates] == ["creative_synthesis", "plain_notes"]
    text = _catalog(path, "draft").read_text()
    _catalog(path, "draft").write_text(text.replace("plain_notes,true", "plain_notes,false"))
    assert [t.id for t in load_pipeline(path).stage("draft").variants.templates] == ["creative_synthesis"]
    cohort = path.parent / "cohorts" / "pilot.yaml"
    cohort.write_text(cohort.read_text().replace("draft:                        # no templates: every active row "
                                                 "of catalogs/draft.csv", "draft:\n    templates: [idea_ladder]"))
    with pytest.raises(StagesConfigError, match=r"draft.cohort.templates\[0\]: template 'idea_ladder' is inactive"):
        load_pipeline(path)


@pytest.mark.parametrize("edit,expected", [
    (lambda t: t.replace("template_id,active,", "template_id,").replace(",true,llm", ",llm")
     .replace(",true,copy", ",copy"),
     "essay.catalog[0].active: required column is missing or empty"),
    (lambda t: t.replace("essay_from_draft,true", "essay_from_draft,maybe"),
     "essay.catalog[0].active: Input should be a valid boolean"),
])
def test_active_is_a_required_boolean(tmp_path, edit, expected):
    path = copy_example(tmp_path)
    _catalog(path, "essay").write_text(edit(_catalog(path, "essay").read_text()))
    with pytest.raises(StagesConfigError) as exc:
        load_pipeline(path)
    assert expected in str(exc.value)


def test_evaluation_templates_need_a_parser_and_inline_content_renders(tmp_path):
    path = copy_example(tmp_path)
    text = _catalog(path, "evaluation").read_text()
    _catalog(path, "evaluation").write_text(text.replace("coherence,true,llm,judge_score,", "coherence,true,llm,,"))
    with pytest.raises(StagesConfigError, match=r"evaluation.catalog\[1\].parser: blank — an evaluation template "
                                                r"must name the parser"):
        load_pipeline(path)
    _catalog(path, "evaluation").write_text(text.replace(",how new", ",how new").replace(
        "novelty,true,llm,judge_score,,how new is the central idea (0-10),",
        "novelty,true,llm,judge_score,,inline,{{ essay.parsed }} — SCORE: <0-10>"))
    pipe = load_pipeline(path)
    novelty = next(t for t in pipe.stage("evaluation").variants.templates if t.id == "novelty")
    assert novelty.file is None and novelty.content.startswith("{{ essay.parsed }}")
    both = text.replace("novelty,true,llm,judge_score,,how new is the central idea (0-10),",
                        "novelty,true,llm,judge_score,,x,inline text").replace(
        "template_id,active,generator,parser,parser_options,description,content",
        "template_id,active,generator,parser,parser_options,description,content,file")
    _catalog(path, "evaluation").write_text(both.replace("inline text", "inline text,evaluation/novelty.j2"))
    with pytest.raises(StagesConfigError, match="both file and content are set"):
        load_pipeline(path)


def test_inline_template_is_rendered_and_hashed_in_the_manifest(tmp_path):
    path = copy_example(tmp_path)
    pipe = load_pipeline(path, settings={"cohort": "tiny"})
    run_pipeline(pipe, options=RunOptions(dry_run=True))
    evals = list(StageStore(pipe.data_dir / "dry-run", "evaluation").all_records())
    rubric = [e for e in evals if e["template"] == "rubric_breakdown"]
    assert rubric and all("Reply with exactly these four lines" in e["prompt"] for e in rubric)
    manifest = StageStore(pipe.data_dir / "dry-run", "evaluation").manifest()
    assert "inline:evaluation/rubric_breakdown" in manifest["templates"]


def test_models_catalog_roles_are_enforced_at_load_time(tmp_path):
    path = copy_example(tmp_path)
    models = path.parent / "catalogs" / "models.csv"
    models.write_text(models.read_text().replace("smollm2-135m,true,true", "smollm2-135m,true,false"))
    with pytest.raises(StagesConfigError) as exc:
        load_pipeline(path)
    assert ("evaluation.cohort.models[0]: model 'smollm2-135m' is not marked for_evaluation in the models catalog, "
            "so it cannot judge (stage role: evaluation)") in str(exc.value)
    models.write_text(models.read_text().replace("judge-b,false,true", "judge-b,false,true").replace(
        "smollm2-135m,true,false", "smollm2-135m,true,true"))
    cohort = path.parent / "cohorts" / "pilot.yaml"
    cohort.write_text(cohort.read_text().replace("  draft:                        # no templates: every active row "
                                                 "of catalogs/draft.csv\n    models: [smollm2-135m]",
                                                 "  draft:\n    models: [judge-b]"))
    with pytest.raises(StagesConfigError, match="draft.cohort.models.0.: model 'judge-b' is not marked for_generation"):
        load_pipeline(path)
    cohort.write_text(cohort.read_text().replace("models: [judge-b]", "templates: [plain_notes]"))
    # no models on the axis: every active model the catalog marks for the role
    assert load_pipeline(path).stage("draft").variants.models == ["smollm2-135m"]


def test_cohort_from_the_environment_the_flag_or_the_yaml(tmp_path, monkeypatch):
    path = copy_example(tmp_path)
    assert load_pipeline(path).extras["cohort"].id == "pilot"
    monkeypatch.setenv("DD_COHORT", "tiny")
    pipe = load_pipeline(path)
    assert pipe.extras["cohort"].id == "tiny" and pipe.extras["cohort_source"] == "$DD_COHORT=tiny"
    result = run_pipeline(pipe, options=RunOptions(dry_run=True))
    counts = {r.stage: r.accepted + r.rejected for r in result.stages}
    # 1 combo × 1 draft × 1 copied essay × 4 active rubrics × 2 judges (models catalog: for_evaluation)
    assert counts["draft"] == 1 and counts["essay"] == 1 and counts["evaluation"] == 8
    monkeypatch.setenv("DD_COHORT", str(path.parent / "cohorts" / "pilot.yaml"))
    assert load_pipeline(path).extras["cohort"].id == "pilot", "a file path works too"
    assert load_pipeline(path, settings={"cohort": "tiny"}).extras["cohort"].id == "tiny", "--cohort wins"
    monkeypatch.setenv("DD_COHORT", "pilt")
    with pytest.raises(StagesConfigError, match=r"\$DD_COHORT=pilt names cohort 'pilt'.*Did you mean 'pilot'"):
        load_pipeline(path)
    monkeypatch.delenv("DD_COHORT")
    path.write_text(path.read_text().replace("models_catalog: catalogs/models.csv",
                                             "models_catalog: catalogs/models.csv\n  cohort_env: STUDY"))
    monkeypatch.setenv("STUDY", "tiny")
    assert load_pipeline(path).extras["cohort"].id == "tiny", "pipeline.cohort_env names the variable"
    res = CliRunner().invoke(app, ["--pipeline", str(path), "--cohort", "pilot", "run-all", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert len(_table(load_pipeline(path), path.parent / "runs" / "dry-run")) == 108


def test_a_cohort_file_whose_id_is_not_its_name_is_refused(tmp_path):
    path = copy_example(tmp_path)
    (path.parent / "cohorts" / "other.yaml").write_text("id: something_else\nstages: {}\n")
    with pytest.raises(StagesConfigError, match="says id 'something_else' but --cohort other asked for it by name"):
        load_pipeline(path, settings={"cohort": "other"})
