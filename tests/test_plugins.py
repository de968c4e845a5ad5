"""Plugins from outside the package: a parser, a gate, an operation and a generator mode, loaded from a
local file, an importable module, or an installed entry point, before the pipeline is validated."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pocketguide import run_pipeline
from pocketguide.engine import plugins
from pocketguide.engine.errors import StagesConfigError
from pocketguide.engine.loader import load_pipeline
from pocketguide.engine.registry import GATES, GENERATORS, OPERATIONS, PARSERS

PLUGIN = '''
from pocketguide import GateResult, Generated, Generator, gate, generator, operation, parser
from pocketguide.engine.errors import ParseError


@parser("{p}_words")
def words(raw, ctx):
    if not raw.strip():
        raise ParseError("empty", "no words")
    return {{"words": raw.split()}}


@gate("{p}_no_shouting")
def no_shouting(item, opts):
    shouted = [w for w in item.parsed["words"] if w.isupper() and len(w) > 1]
    return GateResult(passed=not shouted, reason="shouting", details={{"shouted": shouted}})


@generator("{p}_reverse")
class Reverse(Generator):
    calls_teacher = False

    def generate(self, item):
        return Generated(raw=" ".join(reversed(item.prompt.split())))


@operation("{p}_count")
def count(ctx, opts):
    """One record with the number of accepted input records and words."""
    recs = list(ctx.records())
    ctx.accept(ctx.new("total", parsed={{"records": len(recs),
                                        "words": sum(len(r["parsed"]["words"]) for r in recs)}}))
'''

STAGES = """
plugins: {plugins}
pipeline: {{name: plug, data_dir: runs}}
stages:
  - name: flip
    source: data/in.jsonl
    template: t.j2
    mode: {p}_reverse
    parser: {p}_words
    gates: [{p}_no_shouting]
  - name: total
    inputs: [flip]
    op: {p}_count
"""


def _project(root: Path, plugin_ref: str | None, prefix: str) -> Path:
    (root / "templates").mkdir(parents=True)
    (root / "templates" / "t.j2").write_text("{{ source.text }}")
    (root / "data").mkdir()
    rows = [{"id": "a", "text": "one two three"}, {"id": "b", "text": "quiet LOUD words"}, {"id": "c", "text": "x y"}]
    (root / "data" / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = root / "stages.yaml"
    path.write_text(STAGES.format(plugins=f"[{plugin_ref}]" if plugin_ref else "[]", p=prefix))
    return path


def _check_run(path: Path, prefix: str) -> None:
    res = run_pipeline(path)
    flip, total = res.stages
    assert (flip.accepted, flip.rejected) == (2, 1)
    rows = {json.loads(line)["id"]: json.loads(line) for line in (path.parent / "runs/flip/records.jsonl").open()}
    assert rows["a"]["raw"] == "three two one" and rows["a"]["mode"] == f"{prefix}_reverse"
    rejected = json.loads((path.parent / "runs/flip/rejected.jsonl").read_text())
    assert rejected["id"] == "b" and rejected["reasons"] == [f"gate:{prefix}_no_shouting:shouting"]
    out = json.loads((path.parent / "runs/total/records.jsonl").read_text())
    assert out["parsed"] == {"records": 2, "words": 5}


def test_a_local_file_plugin_adds_a_parser_gate_operation_and_generator(tmp_path):
    (tmp_path / "local_checks.py").write_text(PLUGIN.format(p="filep"))
    path = _project(tmp_path, "./local_checks.py", "filep")
    _check_run(path, "filep")
    assert ("*", "filep_words") in PARSERS and "filep_no_shouting" in GATES
    assert "filep_count" in OPERATIONS and "filep_reverse" in GENERATORS
    load_pipeline(path)  # loading again reuses the imported plugin (no "already registered")


def test_a_module_plugin_from_an_installed_package(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "my_checks"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(PLUGIN.format(p="modp"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    _check_run(_project(tmp_path / "proj", "my_checks", "modp"), "modp")


def test_an_entry_point_plugin_loads_without_being_named(tmp_path, monkeypatch):
    site = tmp_path / "site"
    dist = site / "pg_demo_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pg-demo-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[pocketguide.plugins]\ndemo = pg_demo_checks\n")
    (site / "pg_demo_checks.py").write_text(PLUGIN.format(p="epp"))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(plugins, "_builtins_done", False)  # this process loaded them before the install
    plugins.load_builtin_plugins()
    assert "epp_no_shouting" in GATES
    _check_run(_project(tmp_path / "proj", None, "epp"), "epp")  # not named in stages.yaml


def test_unknown_names_after_plugins_still_get_did_you_mean(tmp_path):
    (tmp_path / "typo_checks.py").write_text(PLUGIN.format(p="typo"))
    path = _project(tmp_path, "./typo_checks.py", "typo")
    path.write_text(path.read_text().replace("[typo_no_shouting]", "[typo_no_shoutin]")
                    .replace("mode: typo_reverse", "mode: typo_revers"))
    with pytest.raises(StagesConfigError) as exc:
        load_pipeline(path)
    text = str(exc.value)
    assert "Did you mean 'typo_no_shouting'?" in text
    assert "flip.mode: unknown generator mode 'typo_revers'" in text and "Did you mean 'typo_reverse'?" in text


def test_a_missing_or_broken_plugin_is_a_load_error_naming_it(tmp_path):
    path = _project(tmp_path, "./nowhere.py", "gone")
    with pytest.raises(StagesConfigError, match=r"plugins\[0\]: file .*nowhere.py not found"):
        load_pipeline(path)
    path.write_text(path.read_text().replace("./nowhere.py", "no_such_module_xyz"))
    with pytest.raises(StagesConfigError, match=r"plugins\[0\]: cannot import module 'no_such_module_xyz'"):
        load_pipeline(path)
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    path.write_text(path.read_text().replace("no_such_module_xyz", "./broken.py"))
    with pytest.raises(StagesConfigError, match=r"broken.py failed to import: RuntimeError: boom"):
        load_pipeline(path)
    assert "pocketguide_plugin_broken" not in " ".join(sys.modules)


def test_pipeline_parts_need_their_plugin(tmp_path):
    """The PocketGuide parsers are not built-ins: a pipeline that names one without the plugin is told so.
    (A fresh process: registries are per process, and other tests load the plugin.)"""
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "t.j2").write_text("{{ source.q }}")
    (tmp_path / "in.jsonl").write_text('{"id": "a", "q": "x"}\n')
    stages = textwrap.dedent("""
        stages:
          - {name: a, source: in.jsonl, template: t.j2, mode: copy, parser: envelope_lenient}
    """)
    (tmp_path / "stages.yaml").write_text(stages)
    cmd = [sys.executable, "-m", "pocketguide", "stages"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "unknown parser 'envelope_lenient'" in proc.stdout + proc.stderr
    (tmp_path / "stages.yaml").write_text("plugins: [pocketguide.pipelines.pocketguide]\n" + stages)
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
