"""The deterministic critic: its planted-defect figures, its output contract, and how the default pipeline
chooses it (a route on the teacher's `judge` capability) and records it (made_by, stats by critic)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator
from pg_samples import copy_project

from pocketguide import run_pipeline
from pocketguide.engine.loader import load_pipeline
from pocketguide.engine.runtime import GateInput, route_on_teacher
from pocketguide.engine.session import RunOptions
from pocketguide.engine.teacher_spec import TeacherSettings
from pocketguide.pipelines.pocketguide.checks import Question, run_checks
from pocketguide.pipelines.pocketguide.contracts import validate_envelope
from pocketguide.pipelines.pocketguide.critic import CRITIC_ID, critique
from pocketguide.pipelines.pocketguide.gates import critique_consistent
from pocketguide.pipelines.pocketguide.planted import draft_record, rates, score
from pocketguide.teachers.structured import response_format_for, system_prompt_for
from pocketguide.testing import Reply

REPO = Path(__file__).resolve().parents[1]
PLANTED = REPO / "tests/data/planted_drafts.yaml"
CRITIQUE_SCHEMA = json.loads((REPO / "data/schemas/critique.v1.json").read_text())


@pytest.fixture(scope="module")
def pipe():
    return load_pipeline(REPO / "stages.yaml")


def _hints(pipe):
    return pipe.stage("draft").vars["payload_hints"]


def test_planted_defects_are_caught_and_good_drafts_pass(pipe):
    rows = score(PLANTED, pipe.templates_dir, _hints(pipe))
    defects = {r.defect for r in rows}
    assert len(rows) >= 40 and sum(r.defect == "good" for r in rows) >= 10
    # every defect the issue lists is planted at least twice
    assert {"placeholder", "copied_example", "destination_missing", "repeated_items", "thin_structure",
            "traveller_voice", "fake_link", "absolute_claim", "missing_verification", "copied_prompt"} <= defects
    caught, passed = rates(rows)
    assert caught >= 0.9, [(r.id, r.verdict) for r in rows if r.defect != "good" and not r.flagged]
    assert passed >= 0.9, [(r.id, r.checks) for r in rows if r.defect == "good" and r.flagged]


def test_planted_drafts_keep_the_contract_and_critiques_are_valid_and_consistent(pipe):
    """The critic only ever sees contract-valid drafts; every critique it writes is a valid, consistent v1."""
    validator = Draft202012Validator(CRITIQUE_SCHEMA)
    for entry in yaml.safe_load(PLANTED.read_text()):
        rec = draft_record(entry, pipe.templates_dir, _hints(pipe))
        ok, code, path = validate_envelope(rec["parsed"], REPO / "data/schemas")
        assert ok, (entry["id"], code, path)
        c = critique(rec["parsed"], Question.from_record(rec))
        assert not list(validator.iter_errors(c)), entry["id"]
        assert critique_consistent(GateInput(c, json.dumps(c), {}, {}), None).passed, entry["id"]
        if c["verdict"] == "revise":  # concrete instructions: they quote the text or name the field or place
            named = [i for i in c["rewrite_instructions"] if "'" in i or entry["destination"] in i
                     or any(f in i for f in ("summary", "assumptions", "uncertainty_notes", "next_steps",
                                             "verification_steps", "payload"))]
            assert named == c["rewrite_instructions"], c


def test_junk_from_the_135m_teacher_is_never_passed():
    """Drafts SmolLM2-135M wrote at temperature 0.7 before this change (schema-valid, content junk)."""
    junk = [json.loads(line) for line in (REPO / "tests/data/smollm2_junk_drafts.jsonl").read_text().splitlines()]
    assert len(junk) >= 5
    for rec in junk:
        assert critique(rec["parsed"], Question.from_record(rec))["verdict"] != "pass", rec["id"]


def test_the_word_lists_do_not_flag_decision_tree_questions_or_safety_advice():
    env = {"summary": "Night walks in Lima: stay on busy lit streets.", "assumptions": ["You stay in Miraflores"],
           "uncertainty_notes": "Areas differ.", "next_steps": ["Ask your hotel about routes"],
           "verification_steps": ["Ask locally"], "payload_type": "decision_tree",
           "payload": {"title": "Walking in Lima at night", "root_question": "Should I walk back or take a taxi?",
                       "nodes": [{"id": "q1", "type": "question", "text": "Do I need to cross a quiet park?"},
                                 {"id": "o1", "type": "outcome", "text": "Never walk through empty parks at night"}]}}
    q = Question(prompt="Is it safe to walk around Lima at night?", destination="Lima", payload_type="decision_tree")
    assert run_checks(env, q) == []


def test_never_counts_only_in_a_sentence_that_is_itself_time_sensitive():
    """A fare elsewhere in the answer does not make "never leave your bag" a stale claim; "always" on a fare does."""
    env = {"summary": "Simple habits that keep a solo trip to Bangkok safe.", "assumptions": ["You go out at night"],
           "uncertainty_notes": "Scams change; hotel staff know the current ones.",
           "next_steps": ["Save the tourist police number"], "verification_steps": ["Ask your hotel which areas to avoid"],
           "payload_type": "checklist",
           "payload": {"title": "Solo safety in Bangkok", "groups": [{"name": "Habits", "items": [
               {"text": "Never leave your bag on the back of a chair", "priority": "must"},
               {"text": "Agree on the fare before a tuk tuk ride", "priority": "should"}]}]}}
    q = Question(prompt="What safety precautions should I take in Bangkok?", destination="Bangkok",
                 payload_type="checklist")
    assert [f.check for f in run_checks(env, q)] == []
    env["payload"]["groups"][0]["items"][1]["text"] = "The tuk tuk fare is always 50 baht"
    assert [f.check for f in run_checks(env, q)] == ["absolute_claim"]


def test_the_default_pipeline_routes_the_critique_on_the_teacher(pipe):
    stage = pipe.stage("critique")
    embedded = pipe.spec.pipeline.teacher.facts()
    assert embedded["provider"] == "embedded" and embedded["judge"] is False
    assert route_on_teacher(stage, embedded)[1].mode == "pocketguide_critic"
    api = pipe.spec.pipeline.teacher.merged(TeacherSettings(provider="openai", model="m")).facts()
    assert route_on_teacher(stage, api)[1].mode == "llm"
    bigger = pipe.spec.pipeline.teacher.merged(TeacherSettings(judge=True)).facts()
    assert route_on_teacher(stage, bigger)[1].mode == "llm"  # a bigger GGUF: set teacher.judge: true


def test_pocketguide_stages_shows_which_critic_runs(monkeypatch):
    from typer.testing import CliRunner

    from pocketguide.cli.main import app

    monkeypatch.chdir(REPO)
    monkeypatch.setenv("COLUMNS", "200")
    out = CliRunner().invoke(app, ["stages"]).output
    assert "critique: route on teacher.judge" in out and "teacher.judge = false): pocketguide_critic" in out
    out = CliRunner().invoke(app, ["stages", "--teacher", "openai", "--model", "m"]).output
    assert "teacher.judge = true): llm" in out


def test_the_auto_one_shot_critique_example_is_consistent():
    """Item 8: a model that copies the embedded teacher's one-shot critique must not fail critique_consistent."""
    s = TeacherSettings(provider="embedded", response_format="json_schema", max_tokens=900)
    rf = response_format_for(s, CRITIQUE_SCHEMA, "critique")
    example = json.loads(system_prompt_for(s, rf).rsplit("\n", 1)[1])
    assert not list(Draft202012Validator(rf["json_schema"]["schema"]).iter_errors(example))
    assert critique_consistent(GateInput(example, "", {}, {}), None).passed


def test_a_run_with_a_teacher_that_cannot_judge_uses_the_deterministic_critic(tmp_path, fake_openai):
    """An API teacher declared `judge: false` gets the deterministic critic: no critique request is sent, every
    critique record says which critic made it, and the stats break verdicts down by critic."""
    from pg_samples import careful

    def reply(req):
        user = req["messages"][-1]["content"]
        assert not user.startswith("Review")  # the LLM critic is never asked
        ptype = user.split('payload_type must ', 1)[1].split('"', 2)[1]  # "be" (draft) or "stay" (refine)
        return Reply(text=json.dumps(careful(ptype)))

    path = copy_project(tmp_path / "proj")
    server = fake_openai(reply)
    opts = RunOptions(limit=4, teacher=TeacherSettings(provider="openai", model="fake", judge=False))
    result = run_pipeline(path, options=opts, only=["plan", "draft", "critique", "refine", "dataset"])
    assert result.ok
    runs = tmp_path / "proj/data/runs"
    crit = [json.loads(x) for x in (runs / "critique/records.jsonl").read_text().splitlines()]
    assert len(crit) == 4 and {r["made_by"] for r in crit} == {CRITIC_ID} and all(r["teacher"] is None for r in crit)
    stats = json.loads((runs / "critique/stats.json").read_text())
    by_critic = stats["facets"]["made_by+parsed.verdict"]
    assert sum(v["accepted"] for v in by_critic.values()) == 4
    assert all(k.startswith(CRITIC_ID + " | ") for k in by_critic)
    report = json.loads((runs / "dataset/stats.json").read_text())["report"]
    assert set(report["verdicts_by_critic"]) == {CRITIC_ID}
    refine = [json.loads(x) for name in ("records", "rejected")
              for x in (runs / f"refine/{name}.jsonl").read_text().splitlines()]
    verdicts = {r["id"]: r["parsed"]["verdict"] for r in crit}
    for r in refine:  # a teacher that cannot judge does not rewrite either: revise is a reported rejection
        expected = {"pass": [], "revise": ["critique_revise"], "reject": ["critique_reject"]}[verdicts[r["id"]]]
        assert r["reasons"] == expected or (verdicts[r["id"]] == "pass" and r["status"] == "accepted")
    assert not [q for q in server.requests if q["messages"][-1]["content"].startswith("Rewrite")]
