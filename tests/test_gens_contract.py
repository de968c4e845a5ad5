"""`export --format gens` keeps the DayDreaming runner contract: metadata.json validated against the JSON Schema
written from the original's key list; copy mode writes no raw.txt; raw.txt keeps the model's bytes while the
parser reads normalised newlines."""

from __future__ import annotations

import json

import jsonschema
from daydreaming_helpers import copy_example, judge_reply
from typer.testing import CliRunner

from pocketguide.cli.main import app
from pocketguide.engine.loader import load_pipeline
from pocketguide.engine.pipeline import run_pipeline
from pocketguide.engine.session import RunOptions
from pocketguide.engine.store import StageStore
from pocketguide.engine.teacher_spec import TeacherSettings
from pocketguide.pipelines.daydreaming.gens import SCHEMA_PATH
from pocketguide.testing import Reply

LOOPBACK = TeacherSettings(provider="openai", model="fake-teacher")
CONTRACT = ["stage", "gen_id", "template_id", "template_path", "template_sha1", "model", "parser_name", "skip_llm",
            "pass_through_from", "files", "started_at", "finished_at", "duration_s", "mode", "error",
            "error_message", "cohort_id", "run_id"]


def reply(req):
    prompt = req["messages"][-1]["content"]
    if "Reply with exactly these four lines" in prompt:  # the multi-criterion rubric (inline template)
        if req["model"] == "judge-b":
            return Reply(text="Novelty: 7\r\nCoherence: 6\r\nInsight: 8\r\nTotal: 21\r\n")
        return Reply(text="I liked it a lot.")  # no criteria: rejected, and exported with its error
    return judge_reply(req)


def test_gens_metadata_follows_the_contract(tmp_path, fake_openai, monkeypatch):
    fake_openai(reply)
    path = copy_example(tmp_path)
    monkeypatch.setenv("DD_COHORT", "tiny")
    pipe = load_pipeline(path)
    run_pipeline(pipe, options=RunOptions(cache=False, teacher=LOOPBACK))
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["required"] == CONTRACT
    metas = {}
    for stage in ("draft", "essay", "evaluation"):
        res = CliRunner().invoke(app, ["--pipeline", str(path), "export", stage, "--format", "gens",
                                       "--out", str(tmp_path / "g")])
        assert res.exit_code == 0, res.output
        for meta_path in (tmp_path / "g" / stage).glob("*/metadata.json"):
            meta = json.loads(meta_path.read_text())
            jsonschema.validate(meta, schema)
            metas[meta["gen_id"]] = (meta, meta_path.parent)
    by_stage = {s: [m for m, _ in metas.values() if m["stage"] == s] for s in ("draft", "essay", "evaluation")}
    assert [len(v) for v in by_stage.values()] == [1, 1, 8]
    run_ids = {s: StageStore(pipe.data_dir, s).manifest()["run_id"] for s in by_stage}
    assert all(m["run_id"] == run_ids[m["stage"]] and m["cohort_id"] == "tiny" for m, _ in metas.values())

    (draft,), (essay,) = by_stage["draft"], by_stage["essay"]
    assert draft["template_path"] == "templates/draft/plain_notes.j2" and draft["model"] == "smollm2-135m"
    assert draft["duration_s"] >= 0 and draft["finished_at"] >= draft["started_at"]
    assert essay["skip_llm"] and essay["files"]["raw"] is None and essay["pass_through_from"] == draft["gen_id"]
    assert not (metas[essay["gen_id"]][1] / "raw.txt").exists() and essay["model"] is None

    rubric = [m for m in by_stage["evaluation"] if m["template_id"] == "rubric_breakdown"]
    assert {m["template_path"] for m in rubric} == {"inline:evaluation/rubric_breakdown"}
    good = next(m for m in rubric if m["model"] == "judge-b")
    bad = next(m for m in rubric if m["model"] == "smollm2-135m")
    folder = metas[good["gen_id"]][1]
    assert (folder / "raw.txt").read_bytes() == b"Novelty: 7\r\nCoherence: 6\r\nInsight: 8\r\nTotal: 21\r\n"
    assert json.loads((folder / "parsed.txt").read_text())["total"] == 21 and good["parser_name"] == "complex"
    assert bad["error"] == "missing_criteria" and "no score for novelty" in bad["error_message"]
    assert bad["files"] == {"prompt": "prompt.txt", "raw": "raw.txt", "parsed": None}


def test_parsers_read_normalised_newlines_and_raw_keeps_the_bytes(pipeline_dir, fake_openai):
    fake_openai(lambda req: Reply(text="one\r\ntwo\rthree\n"))
    path = pipeline_dir("""
        pipeline: {data_dir: runs, teacher: {provider: openai, model: m}}
        stages:
          - {name: s, source: in.jsonl, template: t.j2, mode: llm, parser: stripped}
    """, {"t.j2": "{{ source.q }}"}, {"in.jsonl": '{"id": "a", "q": "hi"}\n'})
    run_pipeline(path)
    (rec,) = StageStore(path.parent / "runs", "s").accepted()
    assert rec["raw"] == "one\r\ntwo\rthree\n" and rec["parsed"] == "one\ntwo\nthree"
