"""Teacher settings come in groups; each group flows where it belongs without lists of names."""

from __future__ import annotations

import json

from pocketguide import run_stage
from pocketguide.engine.teacher_spec import TEACHER_GROUPS, TeacherSettings
from pocketguide.teachers.pool import TeacherPool
from pocketguide.testing import Reply


def test_every_setting_is_in_exactly_one_group():
    seen = [f for g in TEACHER_GROUPS for f in TeacherSettings.group_fields(g)]
    assert sorted(seen) == sorted(TeacherSettings.model_fields) and len(seen) == len(set(seen))


def test_flat_and_nested_yaml_mean_the_same():
    flat = TeacherSettings(model="m", temperature=0.2, max_retries=3, prices={"*": {"input": 1, "output": 2}})
    nested = TeacherSettings(endpoint={"model": "m"}, sampling={"temperature": 0.2}, limits={"max_retries": 3},
                             cost={"prices": {"*": {"input": 1, "output": 2}}})
    assert flat == nested
    assert flat.group("sampling") == {"temperature": 0.2}


def test_one_provider_per_endpoint_whatever_the_sampling():
    pool = TeacherPool()
    a = pool.get(TeacherSettings(provider="openai", base_url="http://127.0.0.1:9/v1", model="m", temperature=0.1))
    b = pool.get(TeacherSettings(provider="openai", base_url="http://127.0.0.1:9/v1", model="m", temperature=0.9,
                                 max_retries=1, system_prompt="x"))
    c = pool.get(TeacherSettings(provider="openai", base_url="http://127.0.0.1:8/v1", model="m"))
    assert a.inner is b.inner and a.inner is not c.inner


def test_the_sampling_group_reaches_the_wire(fake_openai, pipeline_dir):
    seen = []
    server = fake_openai(lambda req: seen.append(req) or Reply(text="ok"))
    path = pipeline_dir(f"""
pipeline:
  name: t
  data_dir: runs
  teacher:
    base_url: "{server.base_url}"
    model: m1
    sampling: {{temperature: 0.25, top_p: 0.5, max_tokens: 17, seed: 3, repeat_penalty: 1.1}}
stages: [{{name: a, source: data/src.jsonl, template: q.j2, mode: llm}}]
""", {"q.j2": "{{ source.q }}"}, {"data/src.jsonl": json.dumps({"id": "r1", "q": "hi"}) + "\n"})
    run_stage("a", path)
    body = seen[0]
    assert {k: body[k] for k in ("temperature", "top_p", "max_tokens", "seed", "repeat_penalty")} == \
        {"temperature": 0.25, "top_p": 0.5, "max_tokens": 17, "seed": 3, "repeat_penalty": 1.1}
