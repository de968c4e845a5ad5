"""The student's user message: the plan prompt plus the format line of its payload type, built by one
function for the training records (sft) and the held-out suite, so both see the same prompt form."""

from __future__ import annotations

import pytest
from dataset_support import read_jsonl, synthetic, write_project

from pocketguide import run_pipeline
from pocketguide.engine.loader import load_pipeline
from pocketguide.ops.student_prompt import FormatHintOptions, MissingFormatHint, user_message

HINTS = {"checklist": "Answer as a checklist.", "itinerary": "Answer as an itinerary."}


def test_the_hint_of_the_records_field_follows_the_prompt():
    opts = FormatHintOptions(format_hints=HINTS)
    assert user_message("Q?", {"payload_type": "itinerary"}, opts) == "Q?\n\nAnswer as an itinerary."
    assert user_message("Q?", {"payload_type": "checklist"}, FormatHintOptions()) == "Q?"  # no hints: prompt alone
    by_region = FormatHintOptions(format_hints={"asia": "Mind the region."}, format_hint_field="region")
    assert user_message("Q?", {"region": "asia"}, by_region) == "Q?\n\nMind the region."
    with pytest.raises(MissingFormatHint, match="payload_type='procedure'.*format_hints"):
        user_message("Q?", {"payload_type": "procedure"}, opts)


def test_sft_appends_the_hint_and_rejects_a_record_without_one(tmp_path):
    records = [r for r in synthetic(40, seed=5)]
    path = write_project(tmp_path, records)
    pipe_text = path.read_text()
    types = sorted({r["data"]["payload_type"] for r in records})
    hinted, unhinted = types[:-1], types[-1]
    block = "".join(f"\n        {t}: 'Answer as {t}.'" for t in hinted)
    path.write_text(pipe_text.replace("system_prompt:", "format_hints:" + block + "\n      system_prompt:", 1))
    assert "format_hints" in load_pipeline(path).stage("sft").options
    assert run_pipeline(path, only=["dataset", "qa", "split", "sft"]).ok
    out = tmp_path / "runs" / "sft"
    accepted = read_jsonl(out / "records.jsonl")
    assert accepted and all(r["data"]["payload_type"] != unhinted for r in accepted)
    for rec in accepted:
        user = rec["parsed"]["messages"][1]["content"]
        assert user == f"{rec['data']['prompt']}\n\nAnswer as {rec['data']['payload_type']}."
    rejected = [r for r in read_jsonl(out / "rejected.jsonl") if r["stage"] == "sft"]
    assert rejected and all(r["reasons"] == ["sft:no_format_hint"] for r in rejected)
    assert all(r["data"]["payload_type"] == unhinted and "format_hints" in r["error"] for r in rejected)
