"""The generator protocol, and the engine's own `copy` generator. Generators are registered by mode with
`@generator("name")`; the `llm` one lives with the teachers (pocketguide/teachers/generator.py).

A generator class is built once per stage as cls(rt, run) and provides:
  calls_teacher   True: `generate` is a coroutine that costs a teacher call (run under the stage's
                  concurrency cap, written at once); False: `generate` is a plain, free function
  prepare(item)   per-record work before generation (raise RecordRejected to reject the record)
  generate(item)  -> Generated
  max_concurrency the most calls it wants in flight (None: no opinion)
  caps_own_calls  True: it holds its own calls in flight to the stage's concurrency (the teacher's adaptive
                  cap), so the runner keeps up to twice as many records going — a record waiting out a
                  retry's Retry-After then does not idle a slot. False (default): the runner's cap is the cap
  describe()      what made the records, for the manifest (None: nothing to say)
  stats()         what the stage's stats.json should add, merged one level deep (e.g. {"teacher":
                  {"flow": ...}} joins the counted teacher totals; None: nothing)
  recipe(rt)      (classmethod) what, besides the rendered prompt, decides its output: named parts that go
                  into every record's gen_fp (engine/recipe.py), computed without building the generator
                  (`pocketguide status` uses it too); a change to one regenerates the records it decided
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import orjson

from pocketguide.engine.errors import RecordRejected
from pocketguide.engine.records import lookup
from pocketguide.engine.registry import generator


@dataclass
class Generated:
    raw: str | None
    teacher: dict[str, Any] | None = None
    finish_reason: str | None = None
    dry_run: bool = False
    made_by: str | None = None  # what wrote `raw` ("llm:<model>", "pocketguide_critic:v1"); stored on the record


@dataclass
class GeneratorRecipe:
    """What decides a generator's output besides the prompt (see engine/recipe.py)."""

    parts: dict[str, Any] = field(default_factory=dict)  # label → value, the same for every record of the stage
    # a part each record picks (e.g. its decoding schema by payload type): record → label (or None); every
    # such label starts with `prefix`, and `value_of(label)` is its value (asked once per label)
    per_record: Callable[[dict[str, Any]], str | None] | None = None
    value_of: Callable[[str], Any] = lambda label: None
    prefix: str = ""


class Generator:
    """Defaults for the optional parts of the protocol; subclass it or provide the same names."""

    calls_teacher = False
    max_concurrency: int | None = None
    caps_own_calls = False

    def __init__(self, rt: Any, run: Any) -> None:
        self.rt, self.run = rt, run

    def prepare(self, item: Any) -> None:
        return None

    def describe(self) -> dict[str, Any] | None:
        return None

    def stats(self) -> dict[str, Any] | None:
        return None

    @classmethod
    def recipe(cls, rt: Any) -> GeneratorRecipe:
        return GeneratorRecipe()

    async def aclose(self) -> None:
        return None


@generator("copy")
class CopyGenerator(Generator):
    """The rendered prompt, or the value at `copy_from`, passes through unchanged. No teacher call."""

    calls_teacher = False

    @classmethod
    def recipe(cls, rt: Any) -> GeneratorRecipe:
        return GeneratorRecipe({"copy_from": rt.stage.copy_from} if rt.stage.copy_from else {})

    def generate(self, item: Any) -> Generated:
        # in a dry run, a copy of a dry-run record (which has no text) is a placeholder too: it is
        # counted like the llm placeholders instead of failing its parser and gates
        dry = bool(item.runtime.dry_run and (item.context.get("input") or {}).get("dry_run"))
        path = item.stage.copy_from
        if path is None:
            return Generated(raw=item.prompt, dry_run=dry)
        try:
            value = lookup(item.context, path)
        except KeyError:
            raise RecordRejected("missing_input", f"copy_from path '{path}' not found") from None
        if isinstance(value, str):
            return Generated(raw=value, dry_run=dry)
        return Generated(raw=orjson.dumps(value).decode(), dry_run=dry)
