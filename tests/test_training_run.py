"""The train stage through a real pipeline (source copy stages → op: train) on the real embedded
SmolLM2-135M, with a tiny dataset: loss falls, a crash resumes from its checkpoint, adapters reload to
identical logits, bad records are rejected with reasons, and the eval report recomputes from its rows."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator
from training_helpers import CITIES, ENVELOPE, GATE, PAYLOADS, base_cache_dir, options, write_project

from pocketguide.engine.errors import StageError
from pocketguide.engine.loader import load_pipeline
from pocketguide.engine.runner import run_stage
from pocketguide.engine.session import RunOptions
from pocketguide.engine.store import StageStore, iter_jsonl


class CrashAt:
    """A progress sink whose step hook dies at one step, as a killed process would."""

    def __init__(self, step: int | None):
        self.step, self.seen = step, []

    def stage_started(self, *a):
        pass

    def record_done(self, *a):
        pass

    def stage_finished(self, *a):
        pass

    def message(self, text):
        pass

    def train_step(self, stage, row):
        self.seen.append(row["step"])
        if row["step"] == self.step:
            raise RuntimeError("simulated crash")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Run sft + eval_suite, crash the train stage at step 4, then rerun it to completion."""
    cache = base_cache_dir(tmp_path_factory)
    root = tmp_path_factory.mktemp("proj")
    path = write_project(root, options(cache))
    pipe = load_pipeline(path)
    run_stage("sft", pipe)
    run_stage("eval_suite", pipe)
    first = CrashAt(4)
    with pytest.raises(StageError, match="simulated crash"):
        run_stage("train", pipe, options=RunOptions(progress=first))
    before = list(iter_jsonl(root / "runs/train/metrics.jsonl"))
    second = CrashAt(None)
    result = run_stage("train", pipe, options=RunOptions(progress=second))
    return {"root": root, "pipe": pipe, "result": result, "first": first, "second": second, "before": before,
            "cache": cache}


def test_a_crash_resumes_from_the_last_checkpoint(trained):
    assert trained["first"].seen == [1, 2, 3, 4]
    assert trained["second"].seen == [5, 6]  # continued, not restarted
    stats = json.loads((trained["root"] / "runs/train/stats.json").read_text())
    assert stats["training"]["resumed_from"] == 4 and stats["training"]["steps"] == 6
    rows = list(iter_jsonl(trained["root"] / "runs/train/metrics.jsonl"))
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[:4] == trained["before"]  # the pre-crash log is kept as it was


def test_the_loss_falls(trained):
    rows = list(iter_jsonl(trained["root"] / "runs/train/metrics.jsonl"))
    assert (rows[-1]["loss"] + rows[-2]["loss"]) / 2 < 0.7 * rows[0]["loss"]
    vals = [r["val_loss"] for r in rows if "val_loss" in r]
    assert len(vals) == 2 and vals[-1] < vals[0]


def test_records_artifacts_and_manifest(trained):
    root = trained["root"]
    store = StageStore(root / "runs", "train")
    acc = {r["id"]: r["data"]["train_role"] for r in store.accepted()}
    assert acc == {**{f"t{i}": "train" for i in range(6)}, "v0": "val", "v1": "val", "x0": "held_out"}
    rej = {r["id"]: r["reasons"] for r in store.rejected()}
    assert rej == {"bad_no_target": ["no_target"], "bad_long": ["too_long"], "bad_nosplit": ["missing_split"]}
    for name in ("adapter_best", "adapter_final"):
        cfg = json.loads((root / f"runs/train/{name}/adapter_config.json").read_text())
        assert cfg["base_model_name_or_path"].startswith(str(trained["cache"]))  # the safetensors cache, not the hub
        meta = json.loads((root / f"runs/train/{name}/training_config.json").read_text())
        assert meta["config"]["lr"] == 5e-3 and len(meta["base_model"]["sha256"]) == 64
    assert (root / "runs/train/loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = json.loads((root / "runs/train/manifest.json").read_text())
    assert m["complete"] and set(m["training"]["data_sha256"]["inputs"]) == {"sft", "eval_suite"}
    assert m["training"]["metrics"]["steps"] == 6 and m["training"]["config"]["max_steps"] == 6


def test_the_eval_report_recomputes_from_its_own_rows(trained):
    report = json.loads((trained["root"] / "runs/train/eval_report.json").read_text())
    env = Draft202012Validator(ENVELOPE)
    pay = {t: Draft202012Validator(s) for t, s in PAYLOADS.items()}
    rows = report["examples"]
    assert {(r["model"], r["mode"]) for r in rows} == {(m, x) for m in ("base", "tuned")
                                                       for x in ("unconstrained", "constrained")}
    for model, modes in report["summary"].items():
        for mode, got in modes.items():
            sel = [r for r in rows if r["model"] == model and r["mode"] == mode]
            assert got["n"] == len(sel) == 4
            parsed = env_ok = pay_ok = 0
            for r in sel:  # re-score the raw text independently of the library's scorer
                try:
                    obj = json.loads(r["output"])
                except ValueError:
                    continue
                if not isinstance(obj, dict):
                    continue
                parsed += 1
                env_ok += env.is_valid(obj)
                v = pay.get(obj.get("payload_type"))
                pay_ok += bool(v is not None and v.is_valid(obj.get("payload")))
            assert got["parsed_rate"] == round(parsed / 4, 4)
            assert got["envelope_valid_rate"] == round(env_ok / 4, 4)
            assert got["payload_valid_rate"] == round(pay_ok / 4, 4)
            assert got["mean_latency_s"] == round(sum(r["latency_s"] for r in sel) / 4, 3)
            summaries = [json.loads(r["output"]).get("summary") for r in sel if r["parsed"]]
            ok = sum(1 for x in summaries if isinstance(x, str) and any(c in x for c in CITIES))
            assert got["gate_pass_rates"] == ({GATE: round(ok / 4, 4)} if parsed else {})  # unknown gate skipped
            for t, sub in got["by_payload_type"].items():
                assert sub["n"] == sum(1 for r in sel if r["payload_type"] == t)
    # a schema-constrained answer that finished within the cap is valid by construction
    for r in rows:
        if r["mode"] == "constrained" and r["finished"]:
            assert r["schema_valid"], r["output"]
    md = (trained["root"] / "runs/train/eval_report.md").read_text()
    assert "| tuned | unconstrained | 4 |" in md


def test_the_saved_adapter_reloads_to_identical_logits(trained):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = trained["root"]
    adir = root / "runs/train/adapter_final"
    base_path = json.loads((adir / "adapter_config.json").read_text())["base_model_name_or_path"]
    tok = AutoTokenizer.from_pretrained(base_path)
    ids = tok("Plan a day in Kyoto.", return_tensors="pt")["input_ids"]

    def logits(adapter_dir):
        model = AutoModelForCausalLM.from_pretrained(base_path)
        if adapter_dir is not None:
            model = PeftModel.from_pretrained(model, str(adapter_dir))
        model.eval()
        with torch.no_grad():
            return model(ids).logits

    # the final adapter equals the last checkpoint's weights, saved by a different code path
    ckpt = root / "runs/train/checkpoints" / json.loads((root / "runs/train/checkpoints/latest.json").read_text())["dir"]
    a, b = logits(adir), logits(ckpt)
    assert torch.equal(a, b)
    assert not torch.allclose(a, logits(None), atol=1e-3)  # and it really changed the model


def test_a_finished_stage_is_skipped_and_a_changed_option_reruns_without_retraining(trained):
    pipe = trained["pipe"]
    again = run_stage("train", pipe, options=RunOptions(progress=CrashAt(None)))
    assert again.skipped_done > 0  # inputs and options unchanged: nothing to do
