"""A template that only prints text and dotted lookups is filled in without Jinja: the output (and the
error for a missing key) must be exactly what Jinja gives, for every shape the fast path sees or declines."""

from __future__ import annotations

import pytest

from pocketguide.engine.errors import TemplateError
from pocketguide.engine.templates import Renderer

CONTEXT = {"source": {"text": "hé", "q": "why?", "n": 3, "none": None, "items": "x", "nested": {"k": "v"}},
           "a": {"b": {"c": "deep"}}}
TEMPLATES = {
    "plain_lookup": ("{{ source.text }}", True),
    "text_around": ("Q: {{ source.q }} — {{ source['text'] }}!\n", True),
    "nested": ("{{ a.b.c }}/{{ source.nested.k }}", True),
    "literal_only": ("no fields at all", True),
    "empty": ("", True),
    "not_a_string": ("{{ source.n }} {{ source.none }}", True),  # declined at render time: Jinja's str()
    "dict_method": ("{{ source.items }}", False),  # the method, as Jinja has it
    "filter": ("{{ source.text | upper }}", False),
    "tag": ("{% if source.q %}{{ source.q }}{% endif %}", False),
}


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_fast_path_renders_exactly_what_jinja_renders(tmp_path, name):
    source, simple = TEMPLATES[name]
    (tmp_path / "t.j2").write_text(source)
    fast = Renderer(tmp_path, "t.j2")
    assert (fast._parts is not None) == simple
    slow = Renderer(tmp_path, "t.j2")
    slow._parts = None  # Jinja only
    assert fast.render(CONTEXT) == slow.render(CONTEXT)


def test_a_missing_key_raises_jinjas_error(tmp_path):
    (tmp_path / "t.j2").write_text("Q: {{ source.missing }}")
    fast, slow = Renderer(tmp_path, "t.j2"), Renderer(tmp_path, "t.j2")
    slow._parts = None
    errors = []
    for r in (fast, slow):
        with pytest.raises(TemplateError) as info:
            r.render(CONTEXT)
        errors.append(str(info.value))
    assert errors[0] == errors[1] and "missing" in errors[0]
