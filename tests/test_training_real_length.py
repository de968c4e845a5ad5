"""Real-length records (a strong teacher's ~1,500-token prompt + answer) through the real train stage on the
embedded SmolLM2-135M: the lengths are measured and max_seq_length picked from them (no too_long), every
capped answer is reported as unfinished, and the report and `pocketguide status` name the payload types
missing from the training data and the suite. The eval's own cap follows the reference answers (checked
with the real tokenizer; generating ~1,500 tokens on 2 shared cores takes longer than a test may, so the
training run's eval sets a small cap and checks every cut answer is reported)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from training_helpers import base_cache_dir
from typer.testing import CliRunner

from pocketguide.engine.loader import load_pipeline
from pocketguide.engine.runner import run_stage
from pocketguide.training.lengths import generation_cap

REPO = Path(__file__).resolve().parents[1]
SYSTEM = ("You are PocketGuide, a careful travel assistant. Answer with exactly one JSON object and nothing else: "
          "summary, assumptions, uncertainty_notes, next_steps, verification_steps, payload_type, payload.")
# a teacher-style request, as long as the original project's (its prompts ran to ~600 tokens)
REQUEST = """Traveller profile: two adults in their early forties, first trip to {place}, comfortable walking \
10-12 km a day, one of them vegetarian, no car, mid-range budget (about 150 EUR a day each excluding flights), \
interested in history, architecture, markets and local food, not interested in nightlife or shopping malls. \
They arrive on a Thursday afternoon and leave on a Monday evening; the hotel is near the main station. \
Trip context: travelling in late spring, outside school holidays, with carry-on luggage only; they want a \
relaxed pace with one early start for the most crowded sight, time for a long lunch each day, and one \
afternoon kept free in case of rain. They have read that some sights need timed tickets and that local \
transport cards are cheaper than single tickets, but they are not sure which ones apply here or how far \
ahead to book. One of them has a knee that dislikes long staircases, so steep climbs should come with an \
alternative or a warning. They would like each activity to say where it is, how to get there from the \
previous one, roughly what it costs, whether it must be booked, and what could go wrong (closures, queues, \
scams, weather). Please also list what to verify before the trip, since opening hours, prices and entry \
rules change, and say clearly what you assumed. Structure the plan as {ptype}. Keep the advice practical \
and specific to {place}; avoid generic tips that would apply anywhere, and say when something depends on \
the season or on the day of the week. If two options are equally good, pick one and say why in a few \
words. Mention the nearest public transport stop for each place, and whether it is step-free. Where a \
museum or temple has a free day or a discount, mention it, but say that the rule should be checked. \
Output JSON only. No prose before or after it, and no markdown fences."""


def _record(rid: str, answer_id: str, split: str, place: str) -> dict:
    answers = {a["id"]: a["answer"] for a in map(json.loads, (REPO / "tests/data/original_shape_answers.jsonl")
                                                   .read_text().splitlines())}
    answer = answers[answer_id]
    msgs = [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": REQUEST.format(place=place, ptype=answer["payload_type"])},
            {"role": "assistant", "content": json.dumps(answer, ensure_ascii=False)}]
    return {"id": rid, "payload_type": answer["payload_type"], "split": split, "messages": msgs}


CAP = 24  # the training run's eval cap: every real-length answer is cut, and must be reported as unfinished

PIPELINE = """\
pipeline: {{name: real-length, data_dir: runs}}
stages:
  - {{name: sft, source: data/sft.jsonl, template: messages.j2, mode: copy, parser: json}}
  - {{name: eval_suite, source: data/suite.jsonl, template: messages.j2, mode: copy, parser: json}}
  - name: train
    op: train
    inputs: [sft, eval_suite]
    options: {options}
"""


@pytest.mark.slow
def test_real_length_records_train_and_evaluate_without_being_cut(tmp_path_factory, tmp_path):
    cache = base_cache_dir(tmp_path_factory)
    (tmp_path / "data").mkdir()
    (tmp_path / "templates").mkdir()
    shutil.copytree(REPO / "data/schemas", tmp_path / "schemas")
    sft = [_record("t1", "it01", "train", "Kyoto"), _record("t2", "it07", "train", "the Scottish Highlands"),
           _record("t3", "pr01", "train", "the Schengen area"), _record("v1", "it03", "val", "Reykjavik")]
    suite = [_record("s1", "it01", "test", "Kyoto")]
    (tmp_path / "data/sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sft))
    (tmp_path / "data/suite.jsonl").write_text("".join(json.dumps(r) + "\n" for r in suite))
    (tmp_path / "templates/messages.j2").write_text('{{ {"messages": source.messages} | tojson }}')
    opts = {"model_cache_dir": str(cache), "r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"],
            "lr": 1e-5, "warmup_steps": 0, "max_steps": 2, "eval_every": 2, "save_every": 2,
            "gradient_checkpointing": True,  # the memory-saving path runs, then generation gets its cache back
            "eval": {"envelope_schema": "schemas/envelope.v0.json", "payload_schemas": "schemas/payload.{type}.v1.json",
                     "models": ["tuned"], "modes": ["unconstrained"], "batch_size": 1, "gates": ["contract_ok"],
                     "max_new_tokens": CAP}}
    (tmp_path / "stages.yaml").write_text(PIPELINE.format(options=json.dumps(opts)))
    pipe = load_pipeline(tmp_path / "stages.yaml")
    run_stage("sft", pipe)
    run_stage("eval_suite", pipe)
    result = run_stage("train", pipe)
    assert result.rejected == 0, "no record is too_long"

    stats = json.loads((tmp_path / "runs/train/stats.json").read_text())
    lengths = stats["lengths"]
    assert lengths["records"] == 4 and lengths["total"]["max"] <= lengths["max_seq_length"]
    assert lengths["total"]["max"] >= 1400 and lengths["chosen"].startswith("auto")
    assert stats["training"]["gradient_checkpointing"]["on"] is True
    assert stats["training"]["steps"] == 2 and stats["training"]["max_seq_length"] == lengths["max_seq_length"]

    report = json.loads((tmp_path / "runs/train/eval_report.json").read_text())
    assert report["max_new_tokens"] == CAP and report["max_new_tokens_chosen"] == "set"
    assert report["reference_tokens"]["max"] > 1000, "the suite's reference is measured all the same"
    for row in report["examples"]:  # an answer is finished, or it hit the cap and is reported as unfinished
        assert row["finished"] or row["new_tokens"] == CAP
    unfinished = sum(1 for r in report["examples"] if not r["finished"])
    assert unfinished == 1, "a ~1,100-token answer cannot fit in the small cap"
    assert report["summary"]["tuned"]["unconstrained"]["finished_rate"] == 0
    assert any(f"eval_suite: 1 of 1 answers stopped at max_new_tokens {CAP}" in n for n in report["notes"])
    md = (tmp_path / "runs/train/eval_report.md").read_text()
    assert "finished rate in brackets" in md and "## Payload types covered" in md and "(0%)" in md

    cov = report["coverage"]
    assert cov["expected"] == ["checklist", "decision_tree", "itinerary", "procedure"]
    assert cov["missing"] == {"train": ["checklist", "decision_tree"],
                              "eval_suite": ["checklist", "decision_tree", "procedure"]}
    from pocketguide.cli.main import app

    status = CliRunner().invoke(app, ["-p", str(tmp_path / "stages.yaml"), "status"], catch_exceptions=False)
    assert "train: missing train payload_type: checklist, decision_tree" in status.output
    assert "train: missing eval_suite payload_type: checklist, decision_tree, procedure" in status.output


def test_the_eval_cap_follows_the_suites_real_length_reference_answers(tmp_path_factory):
    """The cap the eval derives (max_new_tokens: null) for a real answer, with the student's real tokenizer:
    at least the reference's length × 1.25, so an answer as long as the data's is never cut."""
    from transformers import AutoTokenizer

    from pocketguide.training.evaluate import suite_items
    from pocketguide.training.model import prepare_base

    tok = AutoTokenizer.from_pretrained(str(prepare_base(None, base_cache_dir(tmp_path_factory)).path))
    recs = [_record("s1", "it01", "test", "Kyoto"), _record("s2", "pr01", "test", "the Schengen area")]
    items, bad = suite_items([{"id": r["id"], "parsed": {"messages": r["messages"]}} for r in recs], None)
    assert not bad
    cap, how, refs = generation_cap(tok, [i.reference for i in items], [5000], None)
    assert len(refs) == 2 and max(refs) > 1000 and how.startswith("auto: longest reference or training answer")
    assert cap >= 1.25 * max(refs) and cap % 64 == 0, "rounded up, never below the longest answer × 1.25"
    assert generation_cap(tok, [], [700, 900], None)[:2] == (1152, "auto: longest reference or training answer 900 tokens × 1.25")
    assert generation_cap(tok, [i.reference for i in items], None, 300)[:2] == (300, "set")
