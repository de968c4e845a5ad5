"""The evaluation's pieces that need no model: the teacher's repeat penalty, the constrained decoding
profile, content figures in the report, and the train stage's reported skips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pocketguide.engine.loader import load_pipeline
from pocketguide.engine.teacher_spec import TeacherSettings
from pocketguide.training.config import TrainConfig
from pocketguide.training.report import markdown, summarize

REPO = Path(__file__).resolve().parents[1]


def test_repeat_penalty_works_like_llama_cpp_over_a_window():
    torch = pytest.importorskip("torch")
    from pocketguide.training.generate import RepeatPenalty

    scores = torch.tensor([[2.0, -2.0, 1.0, 4.0]])
    ids = torch.tensor([[3, 0, 1]])  # token 3 is outside a window of the last 2
    out = RepeatPenalty(2.0, last_n=2)(ids, scores.clone())
    assert out.tolist() == [[1.0, -4.0, 1.0, 4.0]]  # positive logits divided, negative multiplied


def test_constrained_mode_decodes_with_the_draft_teachers_profile():
    from pocketguide.training.eval_run import decoding_profile

    pipe = load_pipeline(REPO / "stages.yaml")
    cfg = TrainConfig.model_validate(pipe.stage("train").options)
    schemas, penalty, note = decoding_profile(pipe, cfg, ["checklist", "procedure"], None)
    assert penalty is not None and penalty.repeat.penalty == 1.1 and penalty.repeat.last_n == 64  # the teacher's
    assert penalty.dry is None  # no tokenizer given: DRY cannot be built, and the note says so
    summary = schemas["checklist"]["properties"]["summary"]
    sent = json.loads((REPO / "data/schemas/response.checklist.v1.json").read_text())["properties"]["summary"]
    assert summary["pattern"] == sent["pattern"] and summary["maxLength"] <= sent["maxLength"]  # as the teacher's
    assert schemas["procedure"]["properties"]["payload_type"] == {"type": "string", "const": "procedure"}
    assert "stage 'draft'" in note and "repeat penalty 1.1" in note and "DRY sampler" in note
    api, none_, note = decoding_profile(pipe, cfg, ["checklist"], TeacherSettings(provider="openai", model="m"))
    # an API teacher decodes with the whole contract (the full profile), with no caps and no text pattern
    assert none_ is not None and "full" in api["checklist"]["title"] and "full decoding profile" in note
    assert '"pattern"' not in json.dumps(api) and '"maxLength": 200' not in json.dumps(api)


def _row(model, mode, output, parsed, valid, gates, ptype="checklist"):
    return {"model": model, "mode": mode, "id": f"{model}-{len(output)}", "payload_type": ptype, "output": output,
            "parsed": parsed, "envelope_valid": valid, "payload_valid": valid, "schema_valid": valid,
            "type_match": valid, "finished": True, "error": None, "gates": gates, "latency_s": 1.0,
            "new_tokens": 10, "chars": len(output)}


def test_the_report_states_what_was_learned_with_content_figures():
    good = {"destination_named": True, "no_placeholders": True, "no_repeated_items": True, "critic_checks": True}
    bad = {"destination_named": False, "no_placeholders": False, "no_repeated_items": True, "critic_checks": False}
    rows = [_row("base", "unconstrained", "I cannot", False, False, {}),
            _row("base", "unconstrained", "no json here", False, False, {}),
            _row("tuned", "unconstrained", "{...}", True, True, good),
            _row("tuned", "unconstrained", "{......}", True, True, bad)]
    summary = summarize(rows)
    tuned = summary["tuned"]["unconstrained"]
    assert tuned["n_parsed"] == 2 and tuned["content_of_parsed"]["destination_named"] == 0.5
    assert tuned["gate_pass_rates"]["critic_checks"] == 0.5 and tuned["mean_chars"] == 6.5
    assert summary["base"]["unconstrained"]["content_of_parsed"] == {}
    sub = {"n_examples": 2, "reference_based": False, "payload_types": ["checklist"], "summary": summary,
           "gain_points": {"unconstrained": {"schema_valid_rate": 100.0, "parsed_rate": 100.0}}}
    report = {"headline_suite": "heldout", "n_examples": 2, "summary": summary, "modes": ["unconstrained"],
              "max_new_tokens": 8, "teacher": {"provider": "embedded", "model": None, "judge": False},
              "suites": {"heldout": sub}, "notes": []}
    md = markdown(report)
    assert "**Learned: the contract.**" in md and "fine-tuned student's answers are one schema-valid JSON envelope " \
                                                "100% of the time, the base model's 0%" in md
    assert "**Not learned: facts.**" in md and "destination named 50%" in md and "placeholders 50%" in md
    assert "held-out plan prompts, no reference answers" in md
    import copy

    flat = copy.deepcopy(report)  # no gain: the headline must not claim the contract was learned
    flat["summary"]["tuned"]["unconstrained"]["schema_valid_rate"] = 0.0
    md = markdown(flat)
    assert "**Not learned: the contract.**" in md and "**Learned: the contract.**" not in md


def test_train_without_the_train_extra_is_a_reported_skip(tmp_path, monkeypatch):
    """Item 8: SFT rows but no [train] extra — the stage says what to install; the run summary still prints."""
    from training_helpers import options, write_project
    from typer.testing import CliRunner

    from pocketguide.cli.main import app
    from pocketguide.training import stage

    monkeypatch.setattr(stage, "missing_extras", lambda: ["torch", "peft"])
    path = write_project(tmp_path / "p", options(tmp_path / "models"))
    res = CliRunner().invoke(app, ["--pipeline", str(path), "run-all"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "run summary" in text and "pip install 'pocketguide[train]'" in text
    stats = json.loads((tmp_path / "p/runs/train/stats.json").read_text())
    assert stats["training"]["skipped"].startswith("training needs torch, peft")
    assert not (tmp_path / "models").exists()
