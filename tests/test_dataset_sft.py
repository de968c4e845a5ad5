"""sft: chat records validate against the envelope schema, round-trip through `datasets`, carry no EOS."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest
from dataset_support import ENVELOPE_ORDER, ENVELOPE_SCHEMA, read_jsonl, synthetic, write_project

from pocketguide import run_pipeline
from pocketguide.engine.errors import StageError
from pocketguide.ops.sft_format import canonical_target


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    records = synthetic(150, seed=31)
    fresh = synthetic(2, seed=32)  # not copies of `records`, which qa would drop as near duplicates
    bad = copy.deepcopy(fresh[0])
    bad["id"] = "extra_key"
    bad["parsed"]["advice"] = "not an envelope field"  # envelope is additionalProperties: false
    missing = copy.deepcopy(fresh[1])
    missing["id"] = "no_summary"
    del missing["parsed"]["summary"]
    path = write_project(root, records + [bad, missing])
    assert run_pipeline(path, only=["dataset", "qa", "split", "sft"]).ok
    return root / "runs" / "sft"


def test_invalid_envelopes_are_rejected_not_fixed(sft_run):
    rejected = {r["id"]: r for r in read_jsonl(sft_run / "rejected.jsonl")}
    assert set(rejected) == {"extra_key", "no_summary"}
    assert rejected["extra_key"]["reasons"] == ["sft:envelope_schema_failed"]
    assert "advice" in rejected["extra_key"]["error"] and rejected["extra_key"]["error"].startswith("$")
    assert rejected["no_summary"]["reasons"] == ["sft:envelope_schema_failed"]
    assert "summary" in rejected["no_summary"]["error"]
    assert all(r["id"] not in rejected for r in read_jsonl(sft_run / "train.jsonl") if "id" in r)


def test_records_are_messages_with_canonical_schema_valid_targets(sft_run):
    validator = jsonschema.Draft202012Validator(ENVELOPE_SCHEMA)
    records = read_jsonl(sft_run / "records.jsonl")
    assert len(records) == 150
    for rec in records:
        msgs = rec["parsed"]["messages"]
        assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
        assert msgs[1]["content"] == rec["data"]["prompt"]
        target = msgs[2]["content"]
        env = json.loads(target)
        validator.validate(env)
        keys = list(env)
        assert keys == [k for k in ENVELOPE_ORDER if k in env] and keys[-1] == "payload"
        assert canonical_target(env, ENVELOPE_ORDER) == target  # stable: re-canonicalizing changes nothing
        assert rec["data"]["split"] in ("train", "val", "test")


def test_no_end_of_sequence_token_in_targets_and_the_policy_is_written(sft_run):
    fmt = json.loads((sft_run / "sft_format.json").read_text())
    assert "trainer appends tokenizer.eos_token" in fmt["eos"]
    assert fmt["envelope_schema"]["id"] == "envelope.v0"
    for line in read_jsonl(sft_run / "train.jsonl"):
        assert not any(t in line["messages"][-1]["content"] for t in ("</s>", "<|im_end|>", "<|endoftext|>"))


def test_split_files_round_trip_through_datasets(sft_run):
    from datasets import load_dataset

    files = {s: str(sft_run / f"{s}.jsonl") for s in ("train", "val", "test")}
    ds = load_dataset("json", data_files=files)
    records = read_jsonl(sft_run / "records.jsonl")
    for split in files:
        expected = [r["parsed"]["messages"] for r in records if r["data"]["split"] == split]
        assert ds[split].num_rows == len(expected) > 0
        assert ds[split]["messages"] == expected
    openai = read_jsonl(sft_run / "openai_ft.jsonl")
    assert [o["messages"] for o in openai] == ds["train"]["messages"]
    assert set(openai[0]) == {"messages"}


def test_canonical_order_keeps_short_fields_before_payload():
    env = {"payload": {"title": "t", "b": 1, "a": 2}, "payload_type": "procedure", "summary": "s", "zz": 1,
           "next_steps": [], "assumptions": [], "uncertainty_notes": "", "verification_steps": []}
    text = canonical_target(env, ENVELOPE_ORDER)
    assert list(json.loads(text)) == ["summary", "assumptions", "uncertainty_notes", "next_steps",
                                      "verification_steps", "payload_type", "zz", "payload"]
    assert text.index('"a"') < text.index('"b"') < text.index('"title"')


def test_special_tokens_in_text_are_rejected(tmp_path):
    rec = synthetic(1, seed=40)[0]
    rec["parsed"]["summary"] += " </s>"
    path = write_project(tmp_path, [rec])
    assert run_pipeline(path, only=["dataset", "qa", "split", "sft"]).ok
    rej = read_jsonl(tmp_path / "runs" / "sft" / "rejected.jsonl")
    assert rej[0]["reasons"] == ["sft:special_token_in_text"] and "</s>" in rej[0]["error"]


def test_missing_schema_is_a_clear_error(tmp_path):
    path = write_project(tmp_path, synthetic(5, seed=41))
    (tmp_path / "data" / "schemas" / "envelope.v0.json").unlink()
    with pytest.raises(StageError, match="envelope schema .* not found"):
        run_pipeline(path, only=["dataset", "qa", "split", "sft"])
