"""Ids as paths: whatever a record id holds (`..`, `/`, NUL, 300 characters, case twins), the gens export
writes one folder per record directly under its stage folder, with a reversible name and a recorded
mapping. Stage names the store uses for itself are refused at load time."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pocketguide.engine.errors import StagesConfigError
from pocketguide.engine.loader import load_pipeline
from pocketguide.engine.records import new_record
from pocketguide.engine.safenames import MAX_NAME, NameMap, decode, encode
from pocketguide.engine.store import RESERVED_NAMES, StageStore
from pocketguide.pipelines.daydreaming.gens import NAMES_FILE, export_gens

HOSTILE_IDS = ["..", ".", "a/b", "../../escape", "/abs", "nul\x00byte", "x" * 300, "é" * 200, "Q1", "q1", "CON",
               "aux.txt", "", " ", "trailing.", "names.json", "%41", "~", "back\\slash", "\ud800lone", "line\nbreak"]


def _export(tmp_path: Path, ids: list[str]) -> tuple[Path, Path]:
    store = StageStore(tmp_path / "runs", "essay")
    with store:
        for rid in ids:
            rec = new_record(id=rid, stage="essay", parent_ids=[], ancestors=[], data={})
            rec.update(status="accepted", raw=f"text of {rid!r}", prompt="p")
            store.append(rec)
    pipe = SimpleNamespace(data_dir=tmp_path / "runs", extras={})
    stage = SimpleNamespace(name="essay", variants=None, parser=None)
    out = tmp_path / "gens"
    return export_gens(pipe, stage, store, out), out


def _check_export(root: Path, out: Path, ids: list[str]) -> None:
    mapping = json.loads((root / NAMES_FILE).read_text())
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    assert {p.parent for p in folders} <= {root}  # nothing written beside or above the stage folder
    assert sorted(p.name for p in out.iterdir()) == ["essay"]
    assert len(folders) == len(set(ids)) == len(mapping)  # one folder per distinct id, none overwritten
    assert len({p.name.casefold() for p in folders}) == len(folders)  # distinct on a case-insensitive disk too
    for folder in folders:
        rid = mapping[folder.name]
        assert json.loads((folder / "metadata.json").read_text())["id"] == rid
        assert len(folder.name.encode()) <= MAX_NAME
        if "~" not in folder.name:
            assert decode(folder.name) == rid  # the name alone gives the id back


def test_hostile_ids_export_one_safe_folder_each(tmp_path):
    root, out = _export(tmp_path, HOSTILE_IDS)
    _check_export(root, out, HOSTILE_IDS)
    assert (root / "%2E%2E").is_dir() and (root / "a%2Fb").is_dir() and (root / "nul%00byte").is_dir()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.text(max_size=40), st.text(alphabet="./\\\x00aA~%", max_size=8),
                          st.text(min_size=250, max_size=400)), max_size=8))
def test_any_ids_export_safely(tmp_path_factory, ids):
    tmp = tmp_path_factory.mktemp("g")
    root, out = _export(tmp, ids)
    _check_export(root, out, ids)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.text(), max_size=6))
def test_names_are_safe_unique_and_reversible(texts):
    names = NameMap()
    got = [names.name(t) for t in texts]
    assert len({n.casefold() for n in set(got)}) == len(set(texts))
    assert names.mapping() == {n: t for t, n in zip(texts, got)}
    for t, n in zip(texts, got):
        assert n == names.name(t)  # stable
        assert n not in ("", ".", "..") and not n.startswith(".") and "/" not in n and "\x00" not in n
        assert len(n) <= MAX_NAME and n.isascii()
        assert decode(encode(t)) == t


STAGES = """
pipeline: {{name: t, data_dir: runs}}
stages:
  - {{name: a, source: in.jsonl, template: t.j2, mode: copy}}
  - {{name: "{name}", inputs: [a], template: t.j2, mode: copy}}
"""


@pytest.mark.parametrize("name", [*RESERVED_NAMES, "Cache.SQLite", "a.old-20240101-120000", "A", "s" * 101])
def test_the_stores_own_names_are_refused_as_stage_names(pipeline_dir, name):
    path = pipeline_dir(STAGES.format(name=name), {"t.j2": "x"}, {"in.jsonl": '{"id": "1"}\n'})
    with pytest.raises(StagesConfigError) as exc:
        load_pipeline(path)
    assert f"{name}.name: " in str(exc.value)
