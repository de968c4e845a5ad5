"""The eval's early stop: JsonObjectPrefix never gives up on a text that could still parse as one object."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from pocketguide.training.json_prefix import JsonObjectPrefix

scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=12)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                          max_size=3), max_leaves=12)
objects = st.dictionaries(st.text(max_size=6), values, max_size=4)
CONTINUATIONS = ["", "}", '"}', "]}", "0}", '": 1}', "]]}}", "}}}", 'e"}', "1]}", '"]}', "ull}", "rue}"]


def viable(text: str, chunks: int = 3) -> bool:
    p = JsonObjectPrefix()
    step = max(1, len(text) // chunks)
    return all(p.feed(text[i:i + step]) for i in range(0, len(text), step)) if text else True


@settings(max_examples=150, deadline=None)
@given(objects, st.sampled_from([None, 2]), st.booleans(), st.integers(1, 7))
def test_every_prefix_of_an_object_is_viable(obj, indent, ascii_only, chunks):
    text = " \n" + json.dumps(obj, indent=indent, ensure_ascii=ascii_only) + "\n "
    for cut in range(0, len(text) + 1, max(1, len(text) // 25)):
        assert viable(text[:cut], chunks), text[:cut]
    assert viable(text, chunks)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='{}[]":,0123456789.-eE tfnrulasNIiy\\x\n', max_size=30))
def test_a_text_it_gives_up_on_never_parses(text):
    if viable(text, 1):
        return
    for more in CONTINUATIONS:
        try:
            value = json.loads((text + more).strip())
        except ValueError:
            continue
        assert not isinstance(value, dict), (text, more)


def test_what_it_stops():
    for junk in ('Sure! {"a": 1}', '{"a": 1} and more', '{"a" 1}', '{"a": tru e}', '{"a": [1,, 2]}', '{"a": "x\ty"}',
                 '{"a": "\\q"}', '[1, 2]', '{"a": 01}'):
        assert not viable(junk, 1), junk
    for fine in ('{"summary": "Krakow', '{"a": [1, {"b": null}], "c": -1.5e3, "d": "\\u00e9"}', '  {', '{"a": Infin'):
        assert viable(fine, 1), fine
