"""The per-record loop: outcomes, resume, --fresh, --limit, staleness, routes, variants, dry runs."""

from __future__ import annotations

import json

from pocketguide import run_pipeline, run_stage
from pocketguide.engine.loader import load_pipeline
from pocketguide.engine.pipeline import pipeline_status
from pocketguide.engine.store import iter_jsonl

SOURCE = "".join(json.dumps({"id": f"r{i}", "q": f"question number {i}", "ok": i % 3 != 0}) + "\n"
                 for i in range(10))

TWO_STAGES = """
    pipeline: {data_dir: runs}
    stages:
      - name: first
        source: in.jsonl
        template: first.j2
        mode: copy
        parser: json
        schema: card.json
        facets: [ok]
      - name: second
        inputs: [first]
        template: second.j2
        mode: copy
        parser: stripped
        gates: [{name: length, options: {min_chars: 5}}]
"""
TEMPLATES = {"first.j2": '{"q": {{ source.q | tojson }}, "ok": {{ source.ok | tojson }}}',
             "second.j2": "{% if first.parsed.ok %}{{ first.parsed.q }}{% else %}no{% endif %}"}
CARD = {"card.json": json.dumps({"type": "object", "required": ["q", "ok"],
                                 "properties": {"q": {"type": "string"}, "ok": {"const": True}}})}


def ids(path):
    return [r["id"] for r in iter_jsonl(path)]


def make(pipeline_dir, source=SOURCE):
    return pipeline_dir(TWO_STAGES, TEMPLATES, {"in.jsonl": source, **CARD})


def test_every_record_ends_accepted_or_rejected_with_reasons(pipeline_dir):
    path = make(pipeline_dir)
    result = run_pipeline(path)
    first, second = result.stages
    assert (first.accepted, first.rejected) == (6, 4)
    runs = path.parent / "runs"
    rejected = list(iter_jsonl(runs / "first" / "rejected.jsonl"))
    assert sorted(r["id"] for r in rejected) == ["r0", "r3", "r6", "r9"]
    assert all(r["reasons"] == ["schema_invalid"] for r in rejected)
    assert rejected[0]["validation"]["path"] == "$.ok"
    assert second.accepted == 6 and second.rejected == 0
    stats = json.loads((runs / "first" / "stats.json").read_text())
    assert stats["facets"]["ok"]["True"]["pass_rate"] == 1.0
    assert stats["facets"]["ok"]["False"]["pass_rate"] == 0.0
    manifest = json.loads((runs / "second" / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["inputs"]["first"]
    assert "second.j2" in next(iter(manifest["templates"]))


def test_records_join_by_id_and_carry_provenance(pipeline_dir):
    path = make(pipeline_dir)
    run_pipeline(path)
    rec = next(iter_jsonl(path.parent / "runs" / "second" / "records.jsonl"))
    assert rec["parent_ids"] == [rec["id"]] and rec["ancestors"] == [rec["id"]]
    assert rec["prompt"] == rec["raw"] == rec["parsed"]
    assert rec["gates"] == [{"name": "length", "passed": True, "reason": None, "details": {"chars": len(rec["raw"])}}]
    assert rec["data"]["q"].startswith("question")


def test_resume_skips_done_ids_and_limit_caps_new_records(pipeline_dir):
    path = make(pipeline_dir)
    r1 = run_stage("first", path, limit=4)
    assert r1.new_accepted + r1.new_rejected == 4 and r1.pending == 6 and not r1.complete
    r2 = run_stage("first", path)
    assert r2.skipped_done == 4 and r2.new_accepted + r2.new_rejected == 6 and r2.complete
    runs = path.parent / "runs" / "first"
    all_ids = ids(runs / "records.jsonl") + ids(runs / "rejected.jsonl")
    assert sorted(all_ids) == sorted(f"r{i}" for i in range(10))


def test_run_all_limit_caps_first_stage_in_total(pipeline_dir):
    path = make(pipeline_dir)
    run_pipeline(path, limit=3)
    again = run_pipeline(path, limit=3)
    assert again.stages[0].new_accepted + again.stages[0].new_rejected == 0
    assert again.stages[0].skipped_done == 3


def test_fresh_keeps_old_output_aside(pipeline_dir):
    path = make(pipeline_dir)
    run_stage("first", path)
    r = run_stage("first", path, fresh=True)
    assert r.skipped_done == 0 and r.new_accepted == 6
    olds = list((path.parent / "runs").glob("first.old-*"))
    assert len(olds) == 1 and (olds[0] / "records.jsonl").exists()


def test_changed_inputs_mark_downstream_stale_and_are_redone(pipeline_dir):
    path = make(pipeline_dir)
    run_pipeline(path)
    pipe = load_pipeline(path)
    assert [s.stale for s in pipeline_status(pipe)] == [False, False]
    run_stage("first", path, fresh=True)  # the same content again (only created_at differs): nothing to redo
    assert [s.stale for s in pipeline_status(pipe)] == [False, False]
    (path.parent / "in.jsonl").write_text(SOURCE.replace("question number 4", "question number four"))
    states = pipeline_status(pipe)
    assert states[0].stale and states[0].redo == {"inputs changed": 1}
    assert states[1].stale and states[1].upstream == ["first"]
    r = run_stage("first", path)
    assert (r.superseded, r.new_accepted, r.skipped_done) == (1, 1, 9)
    states = pipeline_status(pipe)
    assert states[1].stale and states[1].stale_inputs == ["first"] and states[1].redo == {"inputs changed": 1}
    r = run_stage("second", path)
    assert r.superseded == 1 and r.new_accepted == 1 and r.skipped_done == 5
    runs = path.parent / "runs" / "second"
    assert len(ids(runs / "records.jsonl")) == 6 == len(set(ids(runs / "records.jsonl")))
    assert ids(runs / "superseded.jsonl") == ["r4"]
    assert not pipeline_status(pipe)[1].stale


def test_malformed_source_lines_become_rejections(pipeline_dir):
    source = '{"id": "a", "q": "fine", "ok": true}\n{not json\n[1, 2]\n{"q": "no id", "ok": true}\n'
    path = make(pipeline_dir, source)
    r = run_stage("first", path)
    assert (r.accepted, r.rejected) == (2, 2)
    rej = {x["id"]: x for x in iter_jsonl(path.parent / "runs" / "first" / "rejected.jsonl")}
    assert rej["line_000002"]["reasons"] == ["malformed_input"] and "not valid JSON" in rej["line_000002"]["error"]
    assert rej["line_000003"]["reasons"] == ["malformed_input"]
    assert "line_000004" in ids(path.parent / "runs" / "first" / "records.jsonl")


def test_undefined_variable_at_run_time_is_a_rejection(pipeline_dir):
    path = pipeline_dir("""
        stages:
          - {name: a, source: in.jsonl, template: t.j2, mode: copy}
    """, {"t.j2": "{{ source.missing_field }}"}, {"in.jsonl": '{"id": "x", "q": 1}\n'})
    r = run_stage("a", path)
    rec = next(iter_jsonl(path.parent / "data/runs/a/rejected.jsonl"))
    assert r.rejected == 1 and rec["reasons"] == ["template_error"] and "missing_field" in rec["error"]


ROUTED = """
    stages:
      - {name: verdicts, source: in.jsonl, template: v.j2, mode: copy, parser: json}
      - name: refine
        inputs: [verdicts]
        template: r.j2
        mode: copy
        route:
          on: verdicts.parsed.verdict
          cases:
            pass: {mode: copy}
            reject: {mode: skip, reason: critique_reject}
"""


def test_route_chooses_mode_per_record(pipeline_dir):
    source = "".join(json.dumps({"id": i, "verdict": v}) + "\n" for i, v in
                     enumerate(["pass", "reject", "pass", "weird"]))
    path = pipeline_dir(ROUTED, {"v.j2": '{"verdict": {{ source.verdict | tojson }}}', "r.j2": "ok {{ id }}"},
                        {"in.jsonl": source})
    run_pipeline(path)
    runs = path.parent / "data/runs/refine"
    assert ids(runs / "records.jsonl") == ["0", "2"]
    rej = {r["id"]: r["reasons"] for r in iter_jsonl(runs / "rejected.jsonl")}
    assert rej == {"1": ["critique_reject"], "3": ["route_unmatched"]}


ROUTED_TWO_WAYS = """
    stages:
      - {name: verdicts, source: in.jsonl, template: v.j2, mode: copy, parser: json}
      - name: refine
        inputs: [verdicts]
        template: r.j2
        mode: copy
        route:
          "on": [verdicts.parsed.verdict, teacher.judge]
          cases:
            pass/*: copy
            revise/true: copy
            revise/false: {mode: skip, reason: critique_revise}
"""


def test_a_route_on_two_values_with_wildcards(pipeline_dir):
    source = "".join(json.dumps({"id": i, "verdict": v}) + "\n" for i, v in enumerate(["pass", "revise", "odd"]))
    path = pipeline_dir(ROUTED_TWO_WAYS, {"v.j2": '{"verdict": {{ source.verdict | tojson }}}', "r.j2": "ok {{ id }}"},
                        {"in.jsonl": source})
    run_pipeline(path)  # the default teacher (openai) can judge: teacher.judge is true
    runs = path.parent / "data/runs/refine"
    assert ids(runs / "records.jsonl") == ["0", "1"]
    rej = {r["id"]: (r["reasons"], r["route"]["value"]) for r in iter_jsonl(runs / "rejected.jsonl")}
    assert rej == {"2": (["route_unmatched"], ["odd", True])}
    from pocketguide.engine.session import RunOptions
    from pocketguide.engine.teacher_spec import TeacherSettings

    run_pipeline(path, options=RunOptions(fresh=True, teacher=TeacherSettings(judge=False)))
    rej = {r["id"]: r["reasons"] for r in iter_jsonl(runs / "rejected.jsonl")}
    assert ids(runs / "records.jsonl") == ["0"] and rej == {"1": ["critique_revise"], "2": ["route_unmatched"]}


GATED_BY_TEACHER = """
    stages:
      - name: a
        source: in.jsonl
        template: t.j2
        mode: copy
        parser: stripped
        gates: [{name: length, options: {min_chars: 5}, when: {teacher.judge: false}}]
"""


def test_a_gate_with_when_applies_only_to_the_teacher_it_names(pipeline_dir):
    from pocketguide.engine.session import RunOptions
    from pocketguide.engine.teacher_spec import TeacherSettings

    source = "".join(json.dumps({"id": i, "q": q}) + "\n" for i, q in enumerate(["hi", "a long answer"]))
    path = pipeline_dir(GATED_BY_TEACHER, {"t.j2": "{{ source.q }}"}, {"in.jsonl": source})
    run_pipeline(path)  # the default teacher (openai) can judge: the gate is not this teacher's
    runs = path.parent / "data/runs/a"
    assert ids(runs / "records.jsonl") == ["0", "1"]
    assert json.loads((runs / "manifest.json").read_text())["recipe"]["parts"]["gates"]["value"] == []
    run_pipeline(path, options=RunOptions(teacher=TeacherSettings(judge=False)))  # now it applies: re-judged
    assert ids(runs / "records.jsonl") == ["1"]
    assert [r["reasons"] for r in iter_jsonl(runs / "rejected.jsonl")] == [["gate:length:too_short"]]


VARIANTS = """
    pipeline: {teacher: {provider: openai, model: m}}
    stages:
      - name: fan
        source: in.jsonl
        mode: llm
        id_prefix: fan
        variants:
          templates: [{id: a, file: a.j2}, {id: b, file: b.j2}, {id: c, file: c.j2, mode: copy}]
          models: [m1, m2]
          replicates: 2
"""


def test_variant_ids_are_stable_and_unique(pipeline_dir, fake_openai):
    server = fake_openai()
    path = pipeline_dir(VARIANTS, {"a.j2": "A {{ variant.model }}", "b.j2": "B {{ variant.replicate }}",
                                   "c.j2": "C {{ id }}"},
                        {"in.jsonl": '{"id": "p1"}\n{"id": "p2"}\n'})
    run_stage("fan", path)
    first = ids(path.parent / "data/runs/fan/records.jsonl")
    # llm templates: 2 inputs × 2 templates × 2 models × 2 replicates; a copy template does not depend on
    # the model or the replicate, so it makes one child per input
    assert len(first) == 16 + 2 == len(set(first)) and all(i.startswith("fan_") for i in first)
    assert len(server.requests) == 16
    assert sorted({r["model"] for r in server.requests}) == ["m1", "m2"]
    run_stage("fan", path, fresh=True)
    assert sorted(ids(path.parent / "data/runs/fan/records.jsonl")) == sorted(first)


def test_dry_run_is_marked_and_kept_apart(pipeline_dir, fake_openai):
    server = fake_openai()
    path = pipeline_dir("""
        pipeline: {teacher: {provider: openai, model: m}}
        stages:
          - {name: ask, source: in.jsonl, template: t.j2, mode: llm}
    """, {"t.j2": "Q {{ source.q }}"}, {"in.jsonl": '{"id": "a", "q": 1}\n'})
    r = run_stage("ask", path, dry_run=True)
    assert r.dry_run and server.requests == []
    rec = next(iter_jsonl(path.parent / "data/runs/dry-run/ask/records.jsonl"))
    assert rec["dry_run"] is True and rec["prompt"] == "Q 1" and rec["raw"] is None
    assert not (path.parent / "data/runs/ask").exists()
    manifest = json.loads((path.parent / "data/runs/dry-run/ask/manifest.json").read_text())
    assert manifest["dry_run"] is True


def test_missing_upstream_output_is_a_clear_error(pipeline_dir):
    import pytest

    from pocketguide.engine.errors import StageError

    path = make(pipeline_dir)
    with pytest.raises(StageError, match="run `pocketguide run first` first"):
        run_stage("second", path)
