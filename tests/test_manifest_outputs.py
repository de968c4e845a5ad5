"""A manifest's output hashes are those of the files as the stage left them, batched lines included."""

from __future__ import annotations

import json

from report_helpers import make_run

from pocketguide.engine.store import file_sha256


def test_first_run_manifest_hashes_the_written_files(tmp_path):
    make_run(tmp_path / "proj")
    for stage in ("questions", "answers"):  # questions is copy mode: its lines are batched
        folder = tmp_path / "proj" / "runs" / stage
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["outputs"] == {name: file_sha256(folder / name) for name in ("records.jsonl", "rejected.jsonl")}
