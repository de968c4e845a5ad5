"""Every load-time problem is reported before any work, one `stage.field: problem — fix` line each."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pocketguide.cli.main import app
from pocketguide.engine.errors import StagesConfigError
from pocketguide.engine.loader import load_pipeline

GOOD_TEMPLATE = {"t.j2": "Q: {{ source.q }}"}
SOURCE = {"in.jsonl": '{"id": "a", "q": "x"}\n'}


def problems(pipeline_dir, yaml_text, templates=GOOD_TEMPLATE, files=SOURCE) -> str:
    path = pipeline_dir(yaml_text, templates, files)
    with pytest.raises(StagesConfigError) as exc:
        load_pipeline(path)
    return str(exc.value)


def test_valid_pipeline_loads(pipeline_dir):
    path = pipeline_dir("""
        stages:
          - {name: a, source: in.jsonl, template: t.j2, mode: copy}
    """, GOOD_TEMPLATE, SOURCE)
    pipe = load_pipeline(path)
    assert [s.name for s in pipe.stages] == ["a"]


def test_unknown_input_lists_known_names_and_closest(pipeline_dir):
    msg = problems(pipeline_dir, """
        stages:
          - {name: draft, source: in.jsonl, template: t.j2, mode: copy}
          - {name: critique, inputs: [drafts], template: t.j2, mode: copy}
    """)
    assert "critique.inputs: unknown stage 'drafts'" in msg
    assert "Did you mean 'draft'?" in msg


def test_unknown_parser_and_gate(pipeline_dir):
    msg = problems(pipeline_dir, """
        stages:
          - {name: a, source: in.jsonl, template: t.j2, mode: copy, parser: jsn, gates: [lenght]}
    """)
    assert "a.parser: unknown parser 'jsn'" in msg and "Did you mean 'json'?" in msg
    assert "a.gates[0]: unknown gate 'lenght'" in msg and "Did you mean 'length'?" in msg


def test_gate_options_are_validated(pipeline_dir):
    msg = problems(pipeline_dir, """
        stages:
          - name: a
            source: in.jsonl
            template: t.j2
            mode: copy
            gates: [{name: length, options: {min_chars: -1, colour: red}}]
    """)
    assert "a.gates[0].options.min_chars" in msg
    assert "a.gates[0].options.colour" in msg


def test_a_gate_when_tests_only_stage_wide_values(pipeline_dir):
    msg = problems(pipeline_dir, """
        stages:
          - name: a
            source: in.jsonl
            template: t.j2
            mode: copy
            gates: [{name: length, when: {source.q: x}}, {name: length, when: {teacher.judge: false}}]
    """)
    assert "a.gates[0].when: 'source.q' is not a stage-wide value — start it with teacher, vars, stage" in msg
    assert "a.gates[1]" not in msg


def test_missing_template_file(pipeline_dir):
    msg = problems(pipeline_dir, """
        stages:
          - {name: a, source: in.jsonl, template: nope.j2, mode: copy}
    """)
    assert "a.template: template 'nope.j2' not found" in msg


def test_template_variable_the_stage_does_not_provide(pipeline_dir):
    msg = problems(pipeline_dir, """
        stages:
          - {name: a, source: in.jsonl, template: t.j2, mode: copy}
          - {name: b, inputs: [a], template: u.j2, mode: copy}
    """, {"t.j2": "{{ source.q }}", "u.j2": "{{ a.parsed }} and {{ critique.parsed.verdict }}"})
    assert "b.template: template 'u.j2' uses undefined variable 'critique'" in msg


def test_cycle_and_wrong_order(pipeline_dir):
    msg = problems(pipeline_dir, """
        stages:
          - {name: a, inputs: [b], template: t.j2, mode: copy}
          - {name: b, inputs: [a], template: t.j2, mode: copy}
          - {name: c, inputs: [c], template: t.j2, mode: copy}
    """, {"t.j2": "x"})
    assert "a.inputs: 'b' comes later in the file (a cycle or wrong order)" in msg
    assert "c.inputs: the stage reads itself (a cycle)" in msg


def test_duplicate_stage_names(pipeline_dir):
    msg = problems(pipeline_dir, """
        stages:
          - {name: a, source: in.jsonl, template: t.j2, mode: copy}
          - {name: a, source: in.jsonl, template: t.j2, mode: copy}
    """)
    assert "a.name: duplicate stage name" in msg


def test_unknown_field_and_bad_mode(pipeline_dir):
    msg = problems(pipeline_dir, """
        stages:
          - {name: a, source: in.jsonl, template: t.j2, mode: magic, temprature: 0.3}
    """)
    assert "a.mode: unknown generator mode 'magic' — known: copy, llm" in msg  # + any plugin's modes
    assert "a.temprature: unknown field — remove it or check its spelling" in msg


def test_api_key_in_yaml_is_refused(pipeline_dir):
    msg = problems(pipeline_dir, """
        pipeline:
          teacher: {provider: openai, api_key: sk-secret-123456}
        stages:
          - {name: a, source: in.jsonl, template: t.j2, mode: copy}
    """)
    assert "api_key is not allowed in stages.yaml" in msg
    assert "sk-secret-123456" not in msg


def test_unknown_operation_and_options(pipeline_dir):
    msg = problems(pipeline_dir, """
        stages:
          - {name: a, source: in.jsonl, template: t.j2, mode: copy}
          - {name: b, inputs: [a], op: dedupe}
    """)
    assert "b.op: unknown operation 'dedupe'" in msg


def test_invalid_yaml_names_line(pipeline_dir):
    msg = problems(pipeline_dir, "stages:\n  - {name: a, source: [\n")
    assert "invalid YAML" in msg and "line" in msg


def test_missing_schema_and_source(pipeline_dir):
    msg = problems(pipeline_dir, """
        stages:
          - {name: a, source: missing.jsonl, template: t.j2, mode: copy, schema: nope.json}
    """)
    assert "a.source: file missing.jsonl not found" in msg
    assert "a.schema: file nope.json not found" in msg


def test_all_problems_reported_at_once(pipeline_dir):
    path = pipeline_dir("""
        stages:
          - {name: a, source: in.jsonl, template: nope.j2, mode: copy, parser: jsn}
          - {name: b, inputs: [zzz], template: t.j2, mode: copy}
    """, GOOD_TEMPLATE, SOURCE)
    with pytest.raises(StagesConfigError) as exc:
        load_pipeline(path)
    assert len(exc.value.problems) == 3


def test_help_works_with_broken_yaml(pipeline_dir, monkeypatch):
    path = pipeline_dir("stages: [[[")
    monkeypatch.chdir(path.parent)
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0 and "run-all" in result.output
    result = CliRunner().invoke(app, ["stages"])
    assert result.exit_code == 2
    assert "invalid YAML" in result.output
    assert "Traceback" not in result.output
