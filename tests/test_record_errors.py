"""One bad record never stops a stage: any exception raised while handling one record (render, parse,
validate, gate, a plugin's generator) becomes a rejected record with a reason code and the exception's
type and message, and the stage goes on. Only what concerns the whole stage stops it."""

from __future__ import annotations

import errno
import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pocketguide.cli.main import app
from pocketguide.engine.runner import run_stage
from pocketguide.engine.store import iter_jsonl

N = 20


def _rows(poison_at: int, value) -> str:
    return "".join(json.dumps({"id": f"r{i}", "n": value if i == poison_at else i}) + "\n" for i in range(N))


def _copy_project(pipeline_dir, template: str, rows: str) -> Path:
    return pipeline_dir("""
pipeline: {name: t, data_dir: runs}
stages:
  - {name: a, source: data/src.jsonl, template: t.j2, mode: copy}
""", {"t.j2": template}, {"data/src.jsonl": rows})


def _records(path: Path, stage: str) -> tuple[list[dict], list[dict]]:
    folder = path.parent / "runs" / stage
    return list(iter_jsonl(folder / "records.jsonl")), list(iter_jsonl(folder / "rejected.jsonl"))


@pytest.mark.parametrize("template, poison, exc_type", [
    ("{{ source.n + 1 }}", "x", "TypeError"),  # one record's n is a string
    ("{% if source.n == 5 %}{{ range(10**9) }}{% endif %}{{ source.n }}", 5, "OverflowError"),
])
def test_a_poisoned_record_is_rejected_and_every_other_record_is_processed(pipeline_dir, monkeypatch, template,
                                                                         poison, exc_type):
    path = _copy_project(pipeline_dir, template, _rows(9 if poison == "x" else 5, poison))
    monkeypatch.chdir(path.parent)
    first = CliRunner().invoke(app, ["run", "a"])
    assert first.exit_code == 0, first.output
    accepted, rejected = _records(path, "a")
    assert len(accepted) == N - 1  # every record after the poisoned one was processed too
    assert [r["reasons"] for r in rejected] == [["template_error"]]
    assert exc_type in rejected[0]["error"] and "t.j2" in rejected[0]["error"]
    again = CliRunner().invoke(app, ["run", "a"])  # a rerun does not die at the same record
    assert again.exit_code == 0, again.output
    assert _records(path, "a") == (accepted, rejected)


PLUGIN = '''
import errno
from pocketguide import GateResult, Generated, Generator, gate, generator, parser
from pocketguide.engine.errors import BudgetExceeded


@generator("{p}_gen")
class Gen(Generator):
    calls_teacher = False

    def prepare(self, item):
        if item.record["id"] == "r1":
            raise KeyError("prepare blew up")

    def generate(self, item):
        n = item.context["source"]["n"]
        if n == 2:
            return Generated(raw=str(1 / 0))
        if n == 90:
            raise OSError(errno.ENOSPC, "No space left on device")
        if n == 91:
            raise BudgetExceeded("budget spent")
        return Generated(raw=item.prompt)


@parser("{p}_parse")
def parse(raw, ctx):
    if raw == "3":
        raise ValueError("the parser has a bug")
    if raw == "4":  # a value nested deeper than any JSON writer goes
        deep = []
        for _ in range(5000):
            deep = [deep]
        return deep
    return {{"n": raw}}


@gate("{p}_gate")
def check(item, opts):
    if item.parsed == {{"n": "5"}}:
        raise RuntimeError("the gate has a bug")
    return GateResult(passed=True)
'''


def _plugin_project(pipeline_dir, rows: str) -> tuple[Path, str]:
    p = "e" + uuid.uuid4().hex[:8]  # registries are process-wide: a fresh prefix per test
    path = pipeline_dir(f"""
plugins: [./bad.py]
pipeline: {{name: t, data_dir: runs}}
stages:
  - name: a
    source: data/src.jsonl
    template: t.j2
    mode: {p}_gen
    parser: {p}_parse
    gates: [{p}_gate]
""", {"t.j2": "{{ source.n }}"}, {"data/src.jsonl": rows, "bad.py": PLUGIN.format(p=p)})
    return path, p


def test_a_plugins_errors_in_prepare_generate_parse_and_gates_fail_one_record_each(pipeline_dir):
    rows = "".join(json.dumps({"id": f"r{i}", "n": i}) + "\n" for i in range(N))
    path, _ = _plugin_project(pipeline_dir, rows)
    res = run_stage("a", path)
    assert res.complete and (res.new_accepted, res.new_rejected) == (N - 5, 5)
    _, rejected = _records(path, "a")
    got = {r["id"]: (r["reasons"], r["error"] or r["gates"][0]["details"]["error"]) for r in rejected}
    assert got["r1"] == (["generator_error"], "KeyError: 'prepare blew up'")
    assert got["r2"] == (["generator_error"], "ZeroDivisionError: division by zero")
    assert got["r3"] == (["parse_failed"], "ValueError: the parser has a bug")
    assert got["r4"][0] == ["record_unwritable"] and "recursion" in got["r4"][1]
    assert got["r5"] == ([f"gate:{_gate_name(rejected)}:error"], "RuntimeError: the gate has a bug")
    assert run_stage("a", path).skipped_done == N  # the rerun reads every line it wrote


def _gate_name(rejected: list[dict]) -> str:
    return next(r for r in rejected if r["id"] == "r5")["gates"][0]["name"]


@pytest.mark.parametrize("n, expect", [(90, OSError), (91, None)])
def test_what_concerns_the_whole_stage_still_stops_it(pipeline_dir, n, expect):
    rows = "".join(json.dumps({"id": f"r{i}", "n": n if i == 6 else i + 10}) + "\n" for i in range(N))
    path, _ = _plugin_project(pipeline_dir, rows)
    if expect is OSError:  # a full disk: no other record can be written either
        with pytest.raises(OSError) as info:
            run_stage("a", path)
        assert info.value.errno == errno.ENOSPC
    else:  # a spent budget ends the stage cleanly, finished records kept
        res = run_stage("a", path)
        assert not res.complete and res.stopped == "budget spent"
    accepted, rejected = _records(path, "a")  # what came before is kept (r1 fails in prepare)
    assert [r["id"] for r in accepted] == ["r0", "r2", "r3", "r4", "r5"] and [r["id"] for r in rejected] == ["r1"]
