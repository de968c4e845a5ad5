"""The artifact writer: whole lines only, torn tails repaired, atomic JSON, arbitrary text survives."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pocketguide import run_stage
from pocketguide.engine.store import StageStore, atomic_write_json, iter_jsonl, repair_torn_tail


def test_torn_last_line_is_dropped_on_open(tmp_path):
    store = StageStore(tmp_path, "s")
    with store:
        store.append({"id": "a", "status": "accepted"})
        store.append({"id": "b", "status": "accepted"})
    with open(store.records_path, "ab") as fh:
        fh.write(b'{"id": "c", "stat')
    with store:
        store.append({"id": "d", "status": "accepted"})
    assert [r["id"] for r in iter_jsonl(store.records_path)] == ["a", "b", "d"]


def test_complete_json_without_newline_is_dropped(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_bytes(b'{"id": 1}\n{"id": 2}')
    assert repair_torn_tail(p) == len(b'{"id": 2}')
    assert p.read_bytes() == b'{"id": 1}\n'


def test_invalid_last_line_with_newline_is_dropped(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_bytes(b'{"id": 1}\n{"id": \n')
    repair_torn_tail(p)
    assert p.read_bytes() == b'{"id": 1}\n'


def test_atomic_json_leaves_no_temp_files(tmp_path):
    atomic_write_json(tmp_path / "m.json", {"a": 1})
    atomic_write_json(tmp_path / "m.json", {"a": 2})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_second_writer_is_refused(tmp_path):
    import pytest

    from pocketguide.engine.errors import StoreError

    a, b = StageStore(tmp_path, "s"), StageStore(tmp_path, "s")
    with a:
        with pytest.raises(StoreError, match="being written by another process"):
            b.open()


text = st.text(alphabet=st.characters(blacklist_categories=()), max_size=300) | st.sampled_from(
    ["", "\x00\x01\x1b[31m", "\ud800 lone surrogate", "x" * 20000, "{{ 7*7 }}", "line\nbreak\r\n", "\u2028\u2029"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(text, text), min_size=1, max_size=6))
def test_arbitrary_ids_and_values_never_crash_or_corrupt(pipeline_dir, rows):
    lines = [json.dumps({"id": rid, "v": val}) for rid, val in rows]
    path = pipeline_dir("""
        stages:
          - {name: echo, source: in.jsonl, template: t.j2, mode: copy, parser: identity}
    """, {"t.j2": "{{ source.v }}"}, {"in.jsonl": "\n".join(lines) + "\n"}, name="fuzz")
    store = StageStore(path.parent / "data/runs", "echo")
    if store.dir.exists():
        import shutil

        shutil.rmtree(store.dir)
    result = run_stage("echo", path)
    got = list(store.all_records())
    assert result.accepted + result.rejected == len(got)
    for line in store.records_path.read_bytes().splitlines():
        json.loads(line)
    for rec in got:
        if rec["status"] == "accepted":
            assert rec["raw"] == rec["parsed"]


def test_content_fingerprint_leaves_out_only_the_bookkeeping_tail(tmp_path):
    from pocketguide.engine.inputs import content_fp, fingerprint

    store = StageStore(tmp_path, "s")
    rec = {"id": "a", "created_at": "t1", "parsed": {"created_at": "inside"}, "route": {"on": "x"},
           "input_fp": "i1", "gen_fp": "g1", "judge_fp": "j1", "status": "accepted"}
    again = {**rec, "created_at": "t2", "judge_fp": "j2", "rejudged_from": "t1"}
    other = {**rec, "parsed": {"created_at": "changed"}}
    with store:
        for r in (dict(rec), again, other):
            store.append(r)
    first, second, third = (tmp_path / "s" / "records.jsonl").read_bytes().splitlines(keepends=True)
    assert first.endswith(b'"created_at":"t1","input_fp":"i1","gen_fp":"g1","judge_fp":"j1"}\n')  # written last
    assert content_fp(first) == content_fp(second) != content_fp(third)
    legacy = b'{"id":"a","created_at":"t1","input_fp":"i1","route":{"on":"x"}}\n'  # bookkeeping not last
    assert content_fp(legacy) == fingerprint(legacy)
