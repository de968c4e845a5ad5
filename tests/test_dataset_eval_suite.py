"""eval_suite: drawn from test only, covers every payload type and difficulty, fixed per dataset version."""

from __future__ import annotations

import json

from dataset_support import read_jsonl, synthetic, write_project, write_source

from pocketguide import run_pipeline
from pocketguide.ops.content import normalize
from pocketguide.ops.eval_suite import select

TYPES = {"itinerary", "checklist", "decision_tree", "procedure"}


def _suite(root):
    folder = root / "runs" / "eval_suite"
    return folder, read_jsonl(folder / "records.jsonl"), json.loads((folder / "stats.json").read_text())


def test_suite_is_stratified_drawn_from_test_and_disjoint_from_train_val(tmp_path):
    path = write_project(tmp_path, synthetic(400, seed=50), size=24)
    assert run_pipeline(path).ok
    folder, suite, stats = _suite(tmp_path)
    sft = read_jsonl(tmp_path / "runs" / "sft" / "records.jsonl")
    split_of = {r["id"]: r["data"]["split"] for r in sft}
    assert len(suite) == 24
    assert all(split_of[r["id"]] == "test" for r in suite)
    assert {r["data"]["payload_type"] for r in suite} == TYPES
    assert {r["data"]["difficulty"] for r in suite} == {"easy", "medium", "hard"}
    seen = {normalize(r["data"]["prompt"]) for r in sft if r["data"]["split"] in ("train", "val")}
    assert not [r for r in suite if normalize(r["data"]["prompt"]) in seen]
    for r in suite:
        msgs = r["parsed"]["messages"]
        assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
    assert stats["eval_suite"]["status"] == "new" and stats["eval_suite"]["missing_from_suite"] == {
        "payload_type": [], "difficulty": []}
    assert (folder / "suite.jsonl").exists() and json.loads((folder / "suite.json").read_text())["size"] == 24


def test_suite_is_kept_for_the_same_version_and_set_aside_when_it_changes(tmp_path):
    records = synthetic(300, seed=51)
    path = write_project(tmp_path, records, size=12)
    assert run_pipeline(path).ok
    folder, first, _ = _suite(tmp_path)
    before = (folder / "suite.jsonl").read_bytes()
    (folder / "manifest.json").unlink()  # force the stage to run again on the same test split
    assert run_pipeline(path).ok
    _, again, stats = _suite(tmp_path)
    assert stats["eval_suite"]["status"] == "reused"
    assert (folder / "suite.jsonl").read_bytes() == before and [r["id"] for r in again] == [r["id"] for r in first]
    more = synthetic(40, seed=52, payload_type="procedure")
    for r in more:
        r["id"] = "more_" + r["id"]
    write_source(tmp_path, records + more)  # a new dataset version
    assert run_pipeline(path).ok
    _, _, stats = _suite(tmp_path)
    assert stats["eval_suite"]["status"] == "replaced"
    kept_aside = list((folder / "previous").glob("*/suite.jsonl"))
    assert len(kept_aside) == 1 and kept_aside[0].read_bytes() == before
    assert stats["eval_suite"]["previous_moved_to"] == str(kept_aside[0].parent)


def test_edited_suite_file_is_not_silently_overwritten(tmp_path):
    path = write_project(tmp_path, synthetic(200, seed=53), size=8)
    assert run_pipeline(path).ok
    folder = tmp_path / "runs" / "eval_suite"
    (folder / "suite.jsonl").write_text((folder / "suite.jsonl").read_text() + "\n")  # hand edit
    (folder / "manifest.json").unlink()
    assert run_pipeline(path).ok
    assert len(list((folder / "previous").glob("*/suite.jsonl"))) == 1


def test_select_covers_types_and_difficulties_before_filling_proportionally():
    def rec(i, pt, d):
        return {"id": f"r{i:03d}", "data": {"payload_type": pt, "difficulty": d}}

    records = [rec(i, "checklist", "easy") for i in range(60)]
    records += [rec(100, "procedure", "hard"), rec(101, "itinerary", "medium"), rec(102, "decision_tree", "easy")]
    picked = select(records, 5, seed=1)
    assert {r["data"]["payload_type"] for r in picked} == TYPES
    assert {r["data"]["difficulty"] for r in picked} == {"easy", "medium", "hard"}
    assert select(records, 5, seed=1) == picked
    assert len(select(records, 500, seed=1)) == len(records)


def test_an_empty_test_split_gives_an_empty_suite_not_a_crash(tmp_path):
    path = write_project(tmp_path, synthetic(1, seed=54), size=5)
    assert run_pipeline(path).ok
    _, suite, stats = _suite(tmp_path)
    assert suite == [] and stats["eval_suite"]["status"] == "empty_test_split"
