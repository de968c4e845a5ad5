"""`pocketguide export <stage> --format parquet|hf`: loadable files with a dataset card."""

from __future__ import annotations

import json

import pytest
from dataset_support import read_jsonl, synthetic, write_project
from typer.testing import CliRunner

from pocketguide.cli.main import app


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    path = write_project(root, synthetic(120, seed=60), size=10)
    res = CliRunner().invoke(app, ["--pipeline", str(path), "run-all"])  # dataset → … → eval_suite
    assert res.exit_code == 0, res.output
    assert (root / "runs" / "eval_suite" / "manifest.json").exists()
    return root, path


def _export(path, stage, fmt, out):
    res = CliRunner().invoke(app, ["--pipeline", str(path), "export", stage, "--format", fmt, "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def test_hf_export_has_splits_messages_and_a_card(project, tmp_path):
    from datasets import load_from_disk

    root, path = project
    out = _export(path, "sft", "hf", tmp_path / "sft_hf")
    ds = load_from_disk(str(out))
    records = read_jsonl(root / "runs" / "sft" / "records.jsonl")
    assert list(ds) == ["train", "validation", "test"]
    for hf_name, ours in (("train", "train"), ("validation", "val"), ("test", "test")):
        expected = [r for r in records if r["data"]["split"] == ours]
        assert ds[hf_name]["id"] == [r["id"] for r in expected]
        assert ds[hf_name]["messages"] == [r["parsed"]["messages"] for r in expected]
    card = (out / "README.md").read_text()
    counts = {s: sum(1 for r in records if r["data"]["split"] == s) for s in ("train", "val", "test")}
    assert f"test {counts['test']}, train {counts['train']}, val {counts['val']}" in card
    assert "envelope.v0" in card and "clusters_spanning_splits: 0" in card
    assert "no end-of-sequence token" in card


def test_parquet_export_reads_back(project, tmp_path):
    import pyarrow.parquet as pq

    root, path = project
    out = _export(path, "qa", "parquet", tmp_path / "qa.parquet")
    table = pq.read_table(out).to_pylist()
    records = read_jsonl(root / "runs" / "qa" / "records.jsonl")
    assert [r["id"] for r in table] == [r["id"] for r in records]
    assert json.loads(table[0]["parsed"]) == records[0]["parsed"]
    assert table[0]["cluster_id"] == records[0]["data"]["cluster_id"]
    assert (tmp_path / "qa.README.md").read_text().startswith("---\npretty_name:")


def test_card_reports_teacher_models_and_gate_pass_rates(project, tmp_path):
    root, path = project
    stats_path = root / "runs" / "dataset" / "stats.json"
    stats = json.loads(stats_path.read_text())
    stats["teacher"]["models"] = {"teacher-x": 7}
    stats["gates"] = {"contract_ok": {"passed": 9, "failed": 1, "pass_rate": 0.9}}
    stats_path.write_text(json.dumps(stats))
    out = _export(path, "eval_suite", "hf", tmp_path / "suite_hf")
    card = (out / "README.md").read_text()
    assert "teacher-x: 7 calls" in card and "contract_ok 90.0%" in card


def test_unknown_format_lists_the_known_ones(project):
    _, path = project
    res = CliRunner().invoke(app, ["--pipeline", str(path), "export", "sft", "--format", "parqet"])
    assert res.exit_code != 0 and "parquet" in res.output
