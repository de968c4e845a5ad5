"""qa: planted duplicates are found and grouped, filters and balancing reject with reasons."""

from __future__ import annotations

import copy
import random

import pytest
from dataset_support import read_jsonl, synthetic, with_duplicates, write_project

from pocketguide import run_pipeline
from pocketguide.ops.content import normalize, response_text, shingles
from pocketguide.pipelines.pocketguide.synthetic import perturb


def _run(tmp_path, records, **kw):
    path = write_project(tmp_path, records, **kw)
    res = run_pipeline(path, only=["dataset", "qa"])
    assert res.ok
    return tmp_path / "runs" / "qa"


def test_planted_exact_and_near_duplicates_are_found_and_grouped(tmp_path):
    base = synthetic(120)
    records, planted = with_duplicates(base)
    rng = random.Random(5)
    second_near = perturb(rng, base[1], base[1]["id"] + "_near2", edits=2)  # two copies of one original
    qa = _run(tmp_path, records + [second_near])
    accepted = {r["id"]: r for r in read_jsonl(qa / "records.jsonl")}
    rejected = {r["id"]: r for r in read_jsonl(qa / "rejected.jsonl")}
    exact_id, near_id = list(planted)
    assert set(rejected) == {exact_id, near_id, second_near["id"]}
    assert rejected[exact_id]["reasons"] == ["qa:exact_duplicate"]
    assert rejected[exact_id]["duplicate_of"] == base[0]["id"]
    for rid in (near_id, second_near["id"]):
        assert rejected[rid]["reasons"] == ["qa:near_duplicate"]
        assert rejected[rid]["duplicate_of"] == base[1]["id"]
        assert rejected[rid]["qa"]["similarity"] >= 0.85
        assert rejected[rid]["data"]["cluster_id"] == accepted[base[1]["id"]]["data"]["cluster_id"]
    assert len(accepted) == 120 and all(r["data"]["cluster_id"] for r in accepted.values())
    stats = read_jsonl_stats(qa)
    assert stats["qa"]["dropped"] == {"qa:near_duplicate": 2, "qa:exact_duplicate": 1}
    assert stats["qa"]["near_duplicate_clusters"] == 1 and stats["qa"]["largest_near_duplicate_cluster"] == 3


def read_jsonl_stats(folder):
    import json

    return json.loads((folder / "stats.json").read_text())


def test_related_records_share_a_cluster_but_are_kept(tmp_path):
    base = synthetic(60, seed=3)
    related = perturb(random.Random(9), base[4], "related_one", edits=7)  # similar, not a duplicate
    qa = _run(tmp_path, base + [related])
    accepted = {r["id"]: r for r in read_jsonl(qa / "records.jsonl")}
    assert "related_one" in accepted
    assert accepted["related_one"]["data"]["cluster_id"] == accepted[base[4]["id"]]["data"]["cluster_id"]
    others = {r["data"]["cluster_id"] for rid, r in accepted.items() if rid not in ("related_one", base[4]["id"])}
    assert len(others) == 59  # every unrelated record is its own cluster


def test_clusters_come_from_content_not_the_shared_envelope_shape(tmp_path):
    # 200 records of ONE payload type share every key and enum value; they must not collapse
    qa = _run(tmp_path, synthetic(200, seed=4, payload_type="checklist", difficulty="easy",
                                   category="transport"))
    stats = read_jsonl_stats(qa)
    assert stats["qa"]["kept"] == 200
    assert stats["qa"]["groups"]["count"] == 200 and stats["qa"]["groups"]["largest"] == 1


def test_content_ignores_keys_and_enum_values():
    env = {"summary": "Book the ferry", "payload_type": "checklist",
           "payload": {"title": "T", "groups": [{"name": "G", "items": [{"text": "pack", "priority": "must"}]}]}}
    text = response_text(env)
    assert "checklist" not in text and "priority" not in text and "must" not in text
    assert normalize("  Book, the FERRY!! ") == "book the ferry"
    assert shingles("a b", 3) == [b"a b"]


def _bad(rec, **changes):
    rec = copy.deepcopy(rec)
    for key, value in changes.items():
        rec["parsed"][key] = value
    return rec


def test_filters_reject_with_reasons(tmp_path):
    base = synthetic(8, seed=6)
    short = copy.deepcopy(base[0])
    short["id"] = "short"
    short["parsed"] = {"summary": "Go.", "assumptions": [], "uncertainty_notes": "", "next_steps": [],
                       "verification_steps": [], "payload_type": "checklist", "payload": {"title": "x", "groups": []}}
    vague = _bad(base[1], next_steps=["ok", "fine"], verification_steps=[])
    vague["id"] = "vague"
    vague["parsed"]["payload"] = {"title": "Think about it and it depends on many personal things really",
                                  "steps": [{"step": 1, "instruction": "it depends"}]}
    claims = _bad(base[2], summary="Entry is guaranteed and 100% certain for sure.")
    claims["id"] = "claims"
    safe = _bad(base[3], summary="Always verify the fare and always check the timetable before you go.")
    safe["id"] = "safe_advice"
    not_object = dict(base[4], id="not_object", parsed=[1, 2])
    no_prompt = copy.deepcopy(base[5])
    no_prompt["id"] = "no_prompt"
    no_prompt["data"]["prompt"] = ""
    qa = _run(tmp_path, [short, vague, claims, safe, no_prompt, not_object, base[6]])
    rejected = {r["id"]: r for r in read_jsonl(qa / "rejected.jsonl")}
    assert rejected["short"]["reasons"] == ["qa:too_short"]
    assert rejected["vague"]["reasons"] == ["qa:vague_no_list"]
    assert rejected["claims"]["reasons"] == ["qa:overclaiming"] and "guaranteed" in rejected["claims"]["error"]
    assert rejected["no_prompt"]["reasons"] == ["qa:missing_prompt"]
    assert rejected["not_object"]["reasons"] == ["qa:invalid_envelope"]
    assert {r["id"] for r in read_jsonl(qa / "records.jsonl")} == {"safe_advice", base[6]["id"]}
    assert all(r["error"] for r in rejected.values())


def test_few_actions_is_vague(tmp_path):
    rec = synthetic(1, seed=8, payload_type="procedure")[0]
    rec["parsed"]["next_steps"] = []
    rec["parsed"]["verification_steps"] = []
    rec["parsed"]["payload"]["steps"] = [{"step": 1, "instruction": "go"}, {"step": 2, "instruction": "see"}]
    rec["parsed"]["summary"] = " ".join(["quite a long summary with many words"] * 4)
    qa = _run(tmp_path, [rec])
    assert read_jsonl(qa / "rejected.jsonl")[0]["reasons"] == ["qa:vague_few_actions"]


@pytest.mark.parametrize("ratio", ["1.5"])
def test_balancing_caps_over_represented_buckets(tmp_path, ratio):
    big = synthetic(40, seed=10, payload_type="checklist", category="safety", difficulty="easy")
    small = [r for r in synthetic(80, seed=11) if r["data"]["payload_type"] != "checklist"]
    for i, r in enumerate(big):
        r["id"] = f"big_{i:03d}"
    qa = _run(tmp_path, big + small, ratio=ratio)
    stats = read_jsonl_stats(qa)["qa"]
    cap = stats["balance"]["cap"]
    kept_big = [r for r in read_jsonl(qa / "records.jsonl") if r["id"].startswith("big_")]
    capped = [r for r in read_jsonl(qa / "rejected.jsonl") if r["reasons"] == ["qa:balance_cap"]]
    assert len(kept_big) == cap < 40 and len(capped) == 40 - cap
    assert all(r["id"].startswith("big_") for r in capped)
    assert stats["balance"]["capped_buckets"] == {"checklist/safety/easy": {"before": 40, "after": cap}}


def _original_shapes():
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent / "data" / "original_shape_answers.jsonl"
    return {a["id"]: a["answer"] for a in map(json.loads, path.read_text().splitlines())}


def test_list_entries_are_counted_by_structure_on_real_shaped_payloads():
    from pocketguide.ops.content import list_entry_counts

    answers = _original_shapes()
    assert list_entry_counts(answers["ck01"]["payload"]) == {"$.groups[].items": 7}
    assert list_entry_counts(answers["it01"]["payload"]) == {"$.trip_days[].items": 6}  # items hold warnings lists
    assert list_entry_counts(answers["pr01"]["payload"]) == {"$.steps": 4, "$.preconditions": 2, "$.postchecks": 2}
    assert list_entry_counts(answers["dt01"]["payload"]) == {"$.nodes": 5, "$.edges": 4}  # graph form
    assert list_entry_counts(answers["dt06"]["payload"]) == {"$.nodes[].options": 7}  # prompt form: the choices
    assert list_entry_counts(answers["dt07"]["payload"]) == {"$.nodes": 2, "$.nodes[].options": 2}  # leaves + choices


def test_no_real_shaped_answer_is_called_listless_and_the_message_says_what_it_counted():
    from pocketguide.ops.content import response_text
    from pocketguide.ops.qa import Filters, QAOptions

    filters = Filters(QAOptions())
    verdicts = {aid: filters.check(env, response_text(env)) for aid, env in _original_shapes().items()}
    assert not [aid for aid, v in verdicts.items() if v and v[0] == "qa:vague_no_list"]
    one_step = {"summary": "A short answer about the airport train with enough words to pass the length check.",
                "payload_type": "procedure", "next_steps": [], "verification_steps": [],
                "payload": {"title": "Airport train to the centre of town", "steps": [{"step": 1, "instruction": "Go"}]}}
    reason, detail = filters.check(one_step, response_text(one_step))
    assert reason == "qa:vague_no_list"
    assert detail.startswith("1 payload list entry < min_list_items 2") and detail.endswith("1 at $.steps)")
