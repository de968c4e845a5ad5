"""The held-out prompt suite: stratified by payload type, disjoint from every prompt the training plan can
hold, recorded by id, and the same file for the same plan version whatever --limit the run used."""

from __future__ import annotations

import json
from collections import Counter

from pg_samples import copy_project

from pocketguide import run_stage
from pocketguide.engine.loader import load_pipeline
from pocketguide.ops.content import normalize
from pocketguide.pipelines.pocketguide.heldout import training_prompts
from pocketguide.pipelines.pocketguide.plan import load_plan_spec
from pocketguide.training.data import prompt_and_reference
from pocketguide.training.evaluate import suite_items


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_heldout_prompts_are_stratified_disjoint_and_fixed(tmp_path):
    path = copy_project(tmp_path / "proj")
    run_stage("plan", path, limit=5)
    res = run_stage("heldout", path)
    out = tmp_path / "proj/data/runs/heldout"
    suite = _lines(out / "records.jsonl")
    assert res.accepted == len(suite) == 40
    types = ("checklist", "decision_tree", "itinerary", "procedure")
    assert Counter(r["data"]["payload_type"] for r in suite) == {t: 10 for t in types}
    assert len({r["id"] for r in suite}) == 40 and all("_heldout_" in r["id"] for r in suite)
    # never a prompt of the training plan: not the 5 planned, nor any of the spec's full count
    spec = load_plan_spec(tmp_path / "proj/data/specs/pocketguide.v1.yaml")
    everything = training_prompts(spec, spec.seed, spec.count)
    assert not {normalize(r["data"]["prompt"]) for r in suite} & everything
    # prompt only: system + user (the plan prompt, then the sft stage's format line for its payload type),
    # no reference answer
    hints = load_pipeline(path).stage("sft").options["format_hints"]
    for r in suite:
        prompt, ref = prompt_and_reference(r["parsed"])
        want = r["data"]["prompt"] + "\n\n" + hints[r["data"]["payload_type"]]
        assert ref is None and prompt[-1] == {"role": "user", "content": want}
    items, bad = suite_items(suite, None)
    assert not bad and {i.payload_type for i in items} == {"checklist", "decision_tree", "itinerary", "procedure"}
    assert all(i.data["destination"] for i in items)
    stats = json.loads((out / "stats.json").read_text())["heldout"]
    assert stats["overlap_with_plan"] == 0 and stats["size"] == 40
    # another --limit for the plan leaves the suite byte for byte the same
    first = (out / "records.jsonl").read_bytes()
    run_stage("plan", path, limit=9, fresh=True)
    run_stage("heldout", path, fresh=True)
    assert (out / "records.jsonl").read_bytes() == first


def test_the_default_train_stage_evaluates_on_heldout_first():
    from pathlib import Path

    from pocketguide.training.config import TrainConfig
    from pocketguide.training.stage import suite_names

    pipe = load_pipeline(Path(__file__).resolve().parents[1] / "stages.yaml")
    stage = pipe.stage("train")
    cfg = TrainConfig.model_validate(stage.options)
    assert suite_names(stage, cfg) == ["heldout", "eval_suite"]
    assert cfg.eval.decoding_stage == "draft"
    old = TrainConfig.model_validate({**stage.options, "eval": {"suite": "eval_suite"}})  # the older spelling
    assert old.eval.suites == ["eval_suite"]
