"""A changed stage is noticed and redone exactly: one test per kind of change, each asserting the set of
redone record ids, the number of teacher requests (0 when only judging changed) and that every other
record's line is left byte for byte. The real openai client talks to the loopback server."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from pocketguide import run_pipeline, run_stage
from pocketguide.cli.main import app
from pocketguide.engine.loader import load_pipeline
from pocketguide.engine.pipeline import pipeline_status
from pocketguide.engine.session import RunOptions
from pocketguide.engine.store import iter_jsonl
from pocketguide.testing import Reply
from recompute_plugin import CALLS

N = 8
SOURCE = "".join(json.dumps({"id": f"q{i}", "q": f"question {i}", "kind": ["even", "odd"][i % 2]}) + "\n"
                 for i in range(N))
STAGES = """
    plugins: [recompute_plugin]
    pipeline:
      data_dir: runs
      teacher: {provider: openai, model: m1, temperature: 0.5}
    stages:
      - name: ask
        source: in.jsonl
        mode: llm
        variants:
          templates:
            - {id: a, file: a.j2}
            - {id: b, file: b.j2, parser: fields, parser_options: {keep: [answer, confidence]}}
        parser: fields
        parser_options: {keep: [answer]}
        schema: answer.json
        vars: {tone: plain}
        gates:
          - {name: length, options: {min_chars: 5}}
          - {name: banned_words, options: {file: banned.txt}}
      - name: echo
        inputs: [ask]
        template: echo.j2
        mode: copy
        parser: stripped
      - name: count
        inputs: [echo]
        op: count_words
        options: {min_words: 0}
"""
TEMPLATES = {"a.j2": '{% include "_style.j2" %}\nQ: {{ source.q }} ({{ vars.tone }})',
             "_style.j2": "Answer with one JSON object.",
             "b.j2": "Q: {{ source.q }} ({{ vars.tone }}), briefly, as JSON.",
             "echo.j2": "{{ ask.parsed.answer }}"}
SCHEMA = {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "string"}}}


def answer(req: dict) -> Reply:
    """Question n gets n + 1 words (question 5 says 'guaranteed'); the same question, the same answer."""
    n = int(re.search(r"question (\d+)", req["messages"][-1]["content"]).group(1))
    words = ["fine"] * (n + 1) + (["guaranteed"] if n == 5 else [])
    return Reply(text=json.dumps({"answer": " ".join(words), "confidence": n / 10}))


@pytest.fixture
def project(pipeline_dir, fake_openai):
    """The two stages, run once; returns (stages.yaml path, server)."""
    server = fake_openai(answer)
    path = pipeline_dir(STAGES, TEMPLATES, {"in.jsonl": SOURCE, "answer.json": json.dumps(SCHEMA),
                                            "banned.txt": "forbidden\n"})
    first = run_pipeline(path)
    assert first.ok and first.stages[0].accepted == 2 * N and server.count() == 2 * N
    return path, server


def lines(path, stage="ask") -> dict[str, bytes]:
    """id → its stored line (accepted or rejected)."""
    out = {}
    for name in ("records.jsonl", "rejected.jsonl"):
        f = path.parent / "runs" / stage / name
        for line in f.read_bytes().splitlines(keepends=True) if f.exists() else []:
            out[json.loads(line)["id"]] = line
    return out


def ids_of(path, variant=None, stage="ask", question=None) -> set[str]:
    return {json.loads(line)["id"] for line in lines(path, stage).values()
            if (variant is None or json.loads(line)["variant"]["template"] == variant)
            and (question is None or json.loads(line)["data"]["q"] == question)}


def edit(path, name: str, old: str, new: str) -> None:
    f = path.parent / name
    text = f.read_text()
    assert old in text, (name, old)
    f.write_text(text.replace(old, new))


def rerun(path, server, expected_redo: set[str], requests: int, stage="ask"):
    """Rerun the stage (response cache off: every answer not re-judged is asked for); exactly
    `expected_redo` were redone, with `requests` teacher requests, and every other record's line is unchanged."""
    history = path.parent / "runs" / stage / "superseded.jsonl"
    before, sent, earlier = lines(path, stage), server.count(), len(list(iter_jsonl(history)))
    result = run_stage(stage, path, options=RunOptions(cache=False))
    after = lines(path, stage)
    redone = {r["id"] for r in list(iter_jsonl(history))[earlier:]}
    assert redone == expected_redo
    assert server.count() - sent == requests
    assert result.superseded == len(expected_redo) and result.complete
    assert {k: v for k, v in after.items() if k not in redone} == {k: v for k, v in before.items() if k not in redone}
    assert set(after) == set(before)
    return result


def stale_reasons(path, stage="ask") -> list[str]:
    return next(s for s in pipeline_status(load_pipeline(path)) if s.name == stage).reasons


# --- what decides the text: redone by asking the teacher again ----------------------------------------

def test_the_http_client_leaves_a_finished_stage_current_and_lean_writes_the_same_records(project):
    """`transport` changes how a call is made, not its answer: switching it redoes nothing, and a fresh run over
    the lean client (teachers/wire.py) stores the records the SDK's client stored."""
    path, server = project

    def comparable(line: bytes) -> dict:
        """The record less what belongs to the run or the moment: run id, timings, clock times, the answer's id."""
        def strip(value):
            if isinstance(value, dict):
                return {k: strip(v) for k, v in value.items()
                        if k not in ("run_id", "timings", "created_at", "latency_s", "request_id")}
            return [strip(v) for v in value] if isinstance(value, list) else value

        return strip(json.loads(line))

    with_sdk = {k: comparable(v) for k, v in lines(path).items()}
    edit(path, "stages.yaml", "temperature: 0.5}", "temperature: 0.5, transport: lean}")
    assert load_pipeline(path).spec.pipeline.teacher.transport == "lean"
    assert not any(s.stale for s in pipeline_status(load_pipeline(path)))
    shown = CliRunner().invoke(app, ["--pipeline", str(path), "stages"])
    assert shown.exit_code == 0 and "teacher HTTP client: lean" in shown.output and "for ask\n" in shown.output
    rerun(path, server, set(), 0)
    result = run_stage("ask", path, options=RunOptions(cache=False, fresh=True))
    assert result.complete and server.count() == 4 * N
    assert {k: comparable(v) for k, v in lines(path).items()} == with_sdk


def test_template_text_regenerates_that_templates_records(project):
    path, server = project
    edit(path, "templates/b.j2", "briefly", "in few words")
    assert stale_reasons(path) == [f"template b.j2 changed: {N} records"]
    r = rerun(path, server, ids_of(path, "b"), N)
    assert r.rejudged == 0 and r.redo == {"regenerate": N}


def test_an_include_regenerates_the_records_of_templates_that_include_it(project):
    path, server = project
    edit(path, "templates/_style.j2", "one JSON object", "a single JSON object")
    assert stale_reasons(path) == [f"template _style.j2 changed: {N} records"]
    rerun(path, server, ids_of(path, "a"), N)


def test_vars_regenerate_every_record(project):
    path, server = project
    edit(path, "stages.yaml", "tone: plain", "tone: friendly")
    assert stale_reasons(path) == [f"vars changed: {2 * N} records"]
    rerun(path, server, ids_of(path), 2 * N)
    assert all("(friendly)" in p for p in server.prompts()[-2 * N:])


def test_teacher_model_regenerates_every_record(project):
    path, server = project
    edit(path, "stages.yaml", "model: m1", "model: m2")
    assert stale_reasons(path) == [f"teacher endpoint changed: {2 * N} records"]
    rerun(path, server, ids_of(path), 2 * N)
    assert server.count("m2") == 2 * N


def test_another_server_from_the_environment_regenerates_every_record(project, fake_openai):
    path, old = project
    server = fake_openai(answer)  # OPENAI_BASE_URL now names another server; stages.yaml is unchanged
    assert stale_reasons(path) == [f"teacher endpoint changed: {2 * N} records"]
    rerun(path, server, ids_of(path), 2 * N)
    assert old.count() == 2 * N


def test_temperature_regenerates_every_record(project):
    path, server = project
    edit(path, "stages.yaml", "temperature: 0.5", "temperature: 0.9")
    assert stale_reasons(path) == [f"teacher sampling changed: {2 * N} records"]
    rerun(path, server, ids_of(path), 2 * N)
    assert {r["temperature"] for r in server.requests[-2 * N:]} == {0.9}


def test_a_schema_sent_to_the_teacher_regenerates(project):
    path, server = project
    edit(path, "stages.yaml", "temperature: 0.5}", "temperature: 0.5, response_format: json_schema}")
    run_stage("ask", path)  # the decoding schema is now part of what the teacher is asked
    edit(path, "answer.json", '"required": ["answer"]', '"required": ["answer"], "maxProperties": 3')
    assert stale_reasons(path) == [f"decoding schema answer.json changed: {2 * N} records"]
    rerun(path, server, ids_of(path), 2 * N)


def test_a_records_own_decoding_schema_regenerates_only_the_records_sent_it(project):
    path, server = project
    for kind in ("even", "odd"):
        (path.parent / f"decode.{kind}.json").write_text(json.dumps(SCHEMA))
    sent = "temperature: 0.5, response_format: json_schema, decoding_profile: compact}"  # response_schema is sent
    edit(path, "stages.yaml", "temperature: 0.5}", sent)
    edit(path, "stages.yaml", "schema: answer.json", "schema: answer.json\n    response_schema: decode.{kind}.json")
    run_stage("ask", path)
    assert not stale_reasons(path)
    edit(path, "decode.odd.json", '"required": ["answer"]', '"required": ["answer"], "maxProperties": 2')
    assert stale_reasons(path) == [f"decoding schema decode.odd.json changed: {N} records"]
    rerun(path, server, {rid for rid in ids_of(path) if json.loads(lines(path)[rid])["data"]["kind"] == "odd"}, N)


# --- what only judges the text: re-parsed, re-validated, re-gated from the stored output -------------

def test_parser_rejudges_the_records_it_parses_with_no_request(project):
    path, server = project
    edit(path, "stages.yaml", "parser: fields\n", "parser: json\n")  # the stage's; variant b names its own
    edit(path, "stages.yaml", "parser_options: {keep: [answer]}", "parser_options: {}")  # json takes none
    assert stale_reasons(path) == [f"parser changed: {N} records", f"parser code changed: {N} records",
                                   f"parser options changed: {N} records"]
    r = rerun(path, server, ids_of(path, "a"), 0)
    assert r.rejudged == N and r.redo == {"re-judge": N}
    rec = json.loads(lines(path)[next(iter(ids_of(path, "a")))])
    assert set(rec["parsed"]) == {"answer", "confidence"} and rec["rejudged_from"]


def test_parser_options_rejudge_only_the_records_they_apply_to(project):
    path, server = project
    edit(path, "stages.yaml", "parser_options: {keep: [answer]}", "parser_options: {keep: [answer, missing]}")
    assert stale_reasons(path) == [f"parser options changed: {N} records"]  # variant b has its own options
    CALLS["fields"] = 0
    r = rerun(path, server, ids_of(path, "a"), 0)
    assert r.rejudged == N and CALLS["fields"] == N  # re-parsed: its parse_fp changed


def test_schema_rejudges_and_flips_verdicts_with_no_request(project):
    path, server = project
    edit(path, "answer.json", '"required": ["answer"]', '"required": ["answer", "confidence"]')
    assert stale_reasons(path) == [f"schema answer.json changed: {2 * N} records"]
    r = rerun(path, server, ids_of(path), 0)
    assert (r.rejudged, r.accepted, r.rejected) == (2 * N, N, N)  # variant a keeps only `answer`
    assert {json.loads(x)["reasons"][0] for x in lines(path).values() if b'"rejected"' in x} == {"schema_invalid"}


def test_gate_options_rejudge_flip_verdicts_and_downstream_redoes_only_what_changed(project):
    path, server = project
    echo_before = lines(path, "echo")
    edit(path, "stages.yaml", "min_chars: 5", "min_chars: 40")
    states = {s.name: s for s in pipeline_status(load_pipeline(path))}
    assert states["ask"].reasons == [f"gate length options changed: {2 * N} records"]
    assert states["ask"].redo == {"re-judge": 2 * N} and states["ask"].downstream == ["echo", "count"]
    assert states["echo"].stale and states["echo"].upstream == ["ask"]
    before = {k: json.loads(v) for k, v in lines(path).items()}
    CALLS["fields"] = 0
    r = rerun(path, server, ids_of(path), 0)
    # only a gate changed: the stored parse stands (parse_fp unchanged), the gates run again
    assert CALLS["fields"] == 0
    after = {k: json.loads(v) for k, v in lines(path).items()}
    assert all(after[k]["parsed"] == before[k]["parsed"] and after[k]["parse_fp"] == before[k]["parse_fp"]
               and after[k]["validation"] == before[k]["validation"] for k in before)
    assert all(next(g for g in after[k]["gates"] if g["name"] == "length")["details"]["min_chars"] == 40
               for k in after if after[k]["status"] == "rejected")
    short = {k for k, v in lines(path).items() if len(json.dumps(json.loads(v)["parsed"])) < 40}
    assert short == {k for k, v in lines(path).items() if b'"status":"rejected"' in v}
    assert short and r.rejected == len(short)
    # echo: the records that are now rejected upstream are set aside; the others read the same content
    r2 = run_stage("echo", path)
    assert (r2.superseded, r2.new_accepted, r2.skipped_done) == (len(short), 0, 2 * N - len(short))
    after = lines(path, "echo")
    assert set(after) == set(echo_before) - short and all(after[k] == echo_before[k] for k in after)
    assert run_stage("count", path).accepted == 2 * N - len(short)  # its input changed: rerun whole
    assert not any(s.stale for s in pipeline_status(load_pipeline(path)))


def test_a_file_a_gate_reads_rejudges_with_no_request(project):
    path, server = project
    (path.parent / "banned.txt").write_text("forbidden\nguaranteed\n")
    assert stale_reasons(path) == [f"files read by the parser and gates changed: {2 * N} records"]
    r = rerun(path, server, ids_of(path), 0)
    banned = {k for k, v in lines(path).items() if "gate:banned_words:banned_word" in json.loads(v)["reasons"]}
    assert banned == ids_of(path, question="question 5")
    assert r.rejected == 2


# --- inputs ----------------------------------------------------------------------------------------

def test_an_upstream_record_redoes_only_its_descendants(project):
    path, server = project
    echo_before = lines(path, "echo")
    changed = ids_of(path, question="question 3")
    edit(path, "in.jsonl", '"question 3"', '"question 3, in winter"')
    result = run_pipeline(path)
    ask, echo, _ = result.stages
    assert ask.redo == {"inputs changed": 2} and echo.redo == {"inputs changed": 2}
    assert server.count() == 2 * N + 2
    after = lines(path, "echo")
    assert {k for k in after if after[k] != echo_before[k]} == changed


# --- status, explain, history, --fresh ---------------------------------------------------------------

def test_status_explain_and_history(project):
    path, _ = project
    edit(path, "stages.yaml", "min_chars: 5", "min_chars: 40")
    cli = CliRunner()
    out = cli.invoke(app, ["--pipeline", str(path), "status"], env={"COLUMNS": "250"}).output
    assert "stale" in out and f"gate length options changed: {2 * N} records" in out
    assert "then stale: echo, count" in out
    explain = cli.invoke(app, ["--pipeline", str(path), "status", "--explain", "ask"], env={"COLUMNS": "250"})
    assert explain.exit_code == 0, explain.output
    assert "gate length options: min_chars: 5 → 40" in explain.output and "re-judge from the stored output" in \
        explain.output
    run_pipeline(path)
    manifest = json.loads((path.parent / "runs" / "ask" / "manifest.json").read_text())
    first, second = manifest["history"]
    assert first["run"]["new_accepted"] == 2 * N and second["changed"] == ["gate length options"]
    assert second["run"]["rejudged"] == 2 * N and second["recipe"] != first["recipe"]
    assert manifest["recipe"]["parts"]["gate length options"]["value"] == {"min_chars": 40, "max_chars": None}
    assert manifest["recipe"]["files_read"] == {"banned.txt": manifest["recipe"]["files_read"]["banned.txt"]}


def test_run_all_fresh_starts_over(project):
    path, server = project
    result = CliRunner().invoke(app, ["--pipeline", str(path), "run-all", "--fresh"])
    assert result.exit_code == 0, result.output
    assert len(list((path.parent / "runs").glob("ask.old-*"))) == 1
    assert server.count() == 2 * N  # every answer came from the response cache


def test_whole_dataset_stage_reruns_on_its_options_not_on_the_same_content(project):
    path, server = project
    count_manifest = path.parent / "runs" / "count" / "manifest.json"
    before = json.loads(count_manifest.read_text())["run_id"]
    (path.parent / "banned.txt").write_text("forbidden\nunheard\n")  # every record re-judged, none flips
    result = run_pipeline(path)
    ask, echo, count = result.stages
    assert ask.rejudged == 2 * N and server.count() == 2 * N
    assert echo.superseded == 0 and echo.skipped_done == 2 * N  # the same content: echo's inputs did not change
    assert count.skipped_done == 2 * N and json.loads(count_manifest.read_text())["run_id"] == before
    edit(path, "stages.yaml", "min_words: 0", "min_words: 3")
    state = next(s for s in pipeline_status(load_pipeline(path)) if s.name == "count")
    assert state.stale and state.reasons == ["options changed"]
    count = run_stage("count", path)
    assert count.new_accepted + count.new_rejected == 2 * N and count.rejected > 0
    assert json.loads(count_manifest.read_text())["history"][-1]["changed"] == ["options"]
    assert not any(s.stale for s in pipeline_status(load_pipeline(path)))


def test_facets_change_only_the_stats(project):
    path, server = project
    edit(path, "stages.yaml", "vars: {tone: plain}", "vars: {tone: plain}\n    facets: [q]")
    assert stale_reasons(path) == ["facets changed (stats only: recounted on the next run)"]
    r = rerun(path, server, set(), 0)
    assert set(r.stats["facets"]["q"]) == {f"question {i}" for i in range(N)}


def test_records_from_before_fingerprints_are_regenerated_once(project):
    path, server = project
    for name in ("records.jsonl", "rejected.jsonl"):
        f = path.parent / "runs" / "ask" / name
        if f.exists():
            f.write_bytes(b"".join(json.dumps({k: v for k, v in json.loads(line).items()
                                               if k not in ("gen_fp", "judge_fp")}).encode() + b"\n"
                                   for line in f.read_bytes().splitlines()))
    assert stale_reasons(path) == [f"regenerate (made before record fingerprints): {2 * N} records"]
    run_stage("ask", path)  # the same prompts: the response cache answers
    assert server.count() == 2 * N and not stale_reasons(path)
