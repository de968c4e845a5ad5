"""split: no near-duplicate cluster or prompt spans splits; each split's mix follows the whole."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from dataset_support import read_jsonl, synthetic, with_duplicates, write_project
from hypothesis import given, settings
from hypothesis import strategies as st

from pocketguide import run_pipeline
from pocketguide.engine.errors import StagesConfigError
from pocketguide.engine.loader import load_pipeline
from pocketguide.ops.stratify import Row, assign, split_report

RATIOS = {"train": 0.8, "val": 0.1, "test": 0.1}
TYPES = ["itinerary", "checklist", "decision_tree", "procedure"]
DIFFS = ["easy", "medium", "hard"]


def _row(i: int, pt: str, diff: str, cluster: str, prompt: str) -> Row:
    return Row(f"r{i}", f"{pt}/{diff}", cluster, prompt, {"payload_type": pt, "difficulty": diff, "category": "c"})


rows_strategy = st.lists(
    st.tuples(st.sampled_from(TYPES), st.sampled_from(DIFFS), st.integers(0, 40), st.integers(0, 60)),
    min_size=1, max_size=150)


@settings(max_examples=60, deadline=None)
@given(rows_strategy, st.integers(0, 2**16))
def test_no_cluster_or_prompt_spans_splits(raw, seed):
    rows = [_row(i, pt, d, f"c{c}", f"p{p}") for i, (pt, d, c, p) in enumerate(raw)]
    splits = assign(rows, RATIOS, seed)
    assert set(splits) <= set(RATIOS)
    for key in ("cluster", "prompt"):
        where: dict[str, set[str]] = {}
        for r, s in zip(rows, splits):
            where.setdefault(getattr(r, key), set()).add(s)
        assert all(len(v) == 1 for v in where.values())
    report = split_report(rows, splits, list(RATIOS))
    assert report["clusters_spanning_splits"] == 0 and report["prompts_spanning_splits"] == 0


def _skewed(n: int, seed: int) -> list[Row]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        pt = "checklist" if rng.random() < 0.7 else rng.choice(TYPES)
        diff = "hard" if rng.random() < 0.08 else rng.choice(["easy", "medium"])
        cluster = f"c{i - 1}" if i and rng.random() < 0.1 else f"c{i}"  # some pairs of paraphrases
        rows.append(_row(i, pt, diff, cluster, f"p{i}"))
    return rows


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_stratification_bounds_hold_on_skewed_data(seed):
    rows = _skewed(2000, seed)
    splits = assign(rows, RATIOS, seed)
    report = split_report(rows, splits, list(RATIOS))
    assert report["max_mix_deviation_points"] <= 3.0, report
    for name, ratio in RATIOS.items():
        assert abs(report["splits"][name]["share"] - ratio) <= 0.02
        # the rare stratum (hard) reaches every split
        assert report["splits"][name]["counts"]["difficulty"].get("hard", 0) > 0


def test_small_strata_still_reach_val_and_test():
    rows = [_row(i, TYPES[i % 4], DIFFS[i % 3], f"c{i}", f"p{i}") for i in range(36)]  # 3 per stratum
    splits = assign(rows, RATIOS, 0)
    for name in ("val", "test"):
        assert {r.facets["payload_type"] for r, s in zip(rows, splits) if s == name} == set(TYPES)


def test_same_seed_same_split_and_seed_matters():
    rows = _skewed(300, 5)
    assert assign(rows, RATIOS, 4) == assign(rows, RATIOS, 4)
    assert assign(rows, RATIOS, 4) != assign(rows, RATIOS, 5)


def test_split_stage_in_a_pipeline_reports_per_split_stats(tmp_path):
    records, _ = with_duplicates(synthetic(300, seed=21))
    # two distinct answers to one prompt must land in one split
    twin = synthetic(1, seed=99)[0]
    twin["id"] = "same_prompt_other_answer"
    twin["data"]["prompt"] = records[7]["data"]["prompt"].upper()
    path = write_project(tmp_path, records + [twin])
    assert run_pipeline(path, only=["dataset", "qa", "split"]).ok
    out = {r["id"]: r for r in read_jsonl(tmp_path / "runs" / "split" / "records.jsonl")}
    assert len(out) == 301 and {r["data"]["split"] for r in out.values()} == set(RATIOS)
    assert out["same_prompt_other_answer"]["data"]["split"] == out[records[7]["id"]]["data"]["split"]
    stats = json.loads((tmp_path / "runs" / "split" / "stats.json").read_text())["split"]
    assert stats["clusters_spanning_splits"] == 0 and stats["prompts_spanning_splits"] == 0
    for name in RATIOS:
        counts = stats["splits"][name]["counts"]
        assert set(counts) == {"payload_type", "category", "difficulty"}
        assert sum(counts["payload_type"].values()) == stats["splits"][name]["count"]
        assert set(counts["payload_type"]) == set(TYPES)
    real = Counter(r["data"]["split"] for r in out.values())
    assert {k: stats["splits"][k]["count"] for k in RATIOS} == dict(real)
    assert stats["max_mix_deviation_points"] == max(s["max_mix_deviation_points"] for s in stats["splits"].values())


def test_ratios_must_sum_to_one(tmp_path):
    path = write_project(tmp_path, synthetic(3))
    path.write_text(path.read_text().replace("{train: 0.8, val: 0.1, test: 0.1}", "{train: 0.8, val: 0.3}"))
    with pytest.raises(StagesConfigError, match="split.options.*sum to 1"):
        load_pipeline(path)
