"""The compact decoding profile only where a teacher needs it: the embedded teacher decodes the PocketGuide
draft with the compact per-type `response_schema` (arrays capped at 3), every other teacher gets the full
contract (`schema`) unless its `decoding_profile` says compact. A strict structured-output endpoint can
then write the 4-item checklist the contract accepts."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from pg_samples import envelope

from pocketguide.engine import registry
from pocketguide.engine.loader import load_pipeline
from pocketguide.engine.runtime import build_runtime
from pocketguide.engine.session import RunOptions, Services, StageRun, resolved_teacher
from pocketguide.engine.spec import TeacherSettings
from pocketguide.pipelines.pocketguide.contracts import check_envelope

REPO = Path(__file__).resolve().parents[1]


def four_item_checklist() -> dict:
    env = envelope("checklist")
    env["payload"]["groups"][0]["items"] = [{"text": t} for t in ("Passport", "Visa", "Tickets", "Insurance")]
    return env


def sent_schema(override: TeacherSettings | None, payload_type: str = "checklist") -> dict:
    """The JSON schema the llm generator puts in response_format for a draft record of this type."""
    pipe = load_pipeline(REPO / "stages.yaml")
    stage = pipe.stage("draft")
    settings = resolved_teacher(pipe.spec.pipeline.teacher, stage, override)
    rt = build_runtime(pipe, stage, settings, True, {})  # a dry run builds no teacher
    gen = registry.GENERATORS["llm"](rt, StageRun(pipe, RunOptions(dry_run=True), Services(), 1))
    return gen._format_for({"data": {"payload_type": payload_type}})["json_schema"]["schema"]


def test_the_contract_accepts_a_four_item_checklist():
    ok, code, path, message = check_envelope(four_item_checklist(), REPO / "data" / "schemas")
    assert ok, (code, path, message)


@pytest.mark.parametrize("override, profile", [
    (None, "compact"),  # the project's default teacher is the embedded 135M model
    (TeacherSettings(provider="openai", model="m"), "full"),
    (TeacherSettings(provider="openai", model="m", decoding_profile="compact"), "compact"),
    (TeacherSettings(provider="embedded", decoding_profile="full"), "full"),
])
def test_which_schema_each_teacher_decodes_with(override, profile):
    schema = sent_schema(override)
    fits = Draft202012Validator(schema).is_valid(four_item_checklist())
    if profile == "full":
        assert "full" in schema["title"] and fits  # the whole contract: 4 items are allowed
    else:
        assert schema["title"] == "PocketGuide answer (compact, checklist)" and not fits  # capped at 3


def test_the_manifest_says_which_profile_decoded(tmp_path, fake_openai):
    from pocketguide.engine.runner import run_stage
    from pocketguide.engine.store import StageStore
    from pocketguide.testing import Reply

    proj = tmp_path / "proj"
    shutil.copytree(REPO / "data", proj / "data", ignore=shutil.ignore_patterns("runs"))
    shutil.copytree(REPO / "templates", proj / "templates")
    shutil.copy(REPO / "stages.yaml", proj / "stages.yaml")
    run_stage("plan", proj / "stages.yaml", limit=1)
    reply = copy.deepcopy(four_item_checklist())
    server = fake_openai(lambda req: Reply(text=__import__("json").dumps(reply)))
    res = run_stage("draft", proj / "stages.yaml",
                    options=RunOptions(limit=1, teacher=TeacherSettings(provider="openai", model="fake")))
    assert server.count() == 1
    decoding = StageStore(res.output_dir.parent, "draft").manifest()["teacher"]["decoding"]
    assert decoding == {"profile": "full", "schema": "data/schemas/response.full.v1.json"}
