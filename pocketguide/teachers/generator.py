"""The `llm` generator mode: the rendered prompt (after the system prompt) goes to the stage's teacher."""

from __future__ import annotations

import json
import re
from typing import Any

from pocketguide.engine.errors import RecordRejected
from pocketguide.engine.generators import Generated, Generator, GeneratorRecipe
from pocketguide.engine.recipe import path_sha
from pocketguide.engine.records import lookup
from pocketguide.engine.registry import generator
from pocketguide.engine.schema_pins import pinned_schema
from pocketguide.teachers.base import TeacherRequest
from pocketguide.teachers.pool import TeacherPool
from pocketguide.teachers.registry import DEFAULT_PROVIDER, PROVIDERS
from pocketguide.teachers.structured import decoding_profile, response_format_for, system_prompt_for

SCHEMA_FIELD = re.compile(r"\{([A-Za-z0-9_.]+)\}")  # `{payload_type}` in a response_schema path


@generator("llm")
class LLMGenerator(Generator):
    """Asks the stage's teacher; structured output sends the stage's response_schema to a teacher whose
    decoding_profile is compact (the embedded one by default), its schema (the whole contract) otherwise."""

    calls_teacher = True
    caps_own_calls = True  # the ManagedTeacher's adaptive in-flight cap holds requests to the concurrency

    def __init__(self, rt: Any, run: Any) -> None:
        super().__init__(rt, run)
        stage, s = rt.stage, rt.teacher_settings
        self.settings = s
        # the stage's response_schema (compact) only for a teacher that needs it; else the full contract
        self.response_schema = stage.response_schema if decoding_profile(s) == "compact" else None
        fixed = self.response_schema and not SCHEMA_FIELD.search(self.response_schema)
        decoding = json.loads(rt.pipe.resolve(self.response_schema).read_text()) if fixed else rt.schema
        self.response_format = response_format_for(s, decoding, stage.name)
        self._formats: dict[str, Any] = {}  # response_schema path → response_format
        self._schemas: dict[str, Any] = {}  # response_schema path → its JSON
        self.teacher = None
        if not rt.dry_run:
            pool = run.services.get("teachers", TeacherPool)
            pool.bind(rt.pipe.data_dir, run.options, stage.name, run.concurrency, run.executor)
            self.teacher = pool.get(s)
            caps = [c for c in (s.max_concurrency, self.teacher.max_concurrency) if c]
            self.max_concurrency = min(caps) if caps else None

    @classmethod
    def recipe(cls, rt: Any) -> GeneratorRecipe:
        """Who answers, how it samples, what it is asked to write (the settings groups that decide the answer),
        and the decoding schema sent — the record's own when response_schema names a field of its data."""
        s, stage = rt.teacher_settings, rt.stage
        groups = s.answer_groups()
        pdef = PROVIDERS.get(s.provider or DEFAULT_PROVIDER)
        where = getattr(pdef.factory, "where", None) if pdef else None
        if where is not None:  # what the settings resolve to: the env's base URL, the weights file picked
            groups["endpoint"] = {**groups.get("endpoint", {}), "resolved": where(s)}
        parts: dict[str, Any] = {f"teacher {group}": values for group, values in groups.items()}
        if s.response_format != "json_schema":
            return GeneratorRecipe(parts)  # no schema is sent: a schema change only re-validates
        if stage.response_pins:
            parts["response pins"] = dict(stage.response_pins)
        # the schema sent, as __init__ picks it: response_schema for a compact decoding profile, else the schema
        decoding = (stage.response_schema if decoding_profile(s) == "compact" else None) or stage.schema_
        if decoding and not SCHEMA_FIELD.search(decoding):
            parts[f"decoding schema {decoding}"] = path_sha(rt.pipe.resolve(decoding))
            return GeneratorRecipe(parts)
        if not decoding:
            return GeneratorRecipe(parts)
        prefix = "decoding schema "

        def label_of(record: dict[str, Any]) -> str:
            data = record.get("data") or {}
            return prefix + SCHEMA_FIELD.sub(lambda m: str(lookup(data, m.group(1), "")), decoding)

        return GeneratorRecipe(parts, label_of, lambda label: path_sha(rt.pipe.resolve(label[len(prefix):])), prefix)

    def prepare(self, item: Any) -> None:
        item.response_format = self._format_for(item.record)

    def _format_for(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """The stage's response_format; a `{field}` in response_schema is filled from the record's data, so
        each record can be decoded with its own schema (e.g. one per payload type); response_pins make the
        named strings start with the record's own text."""
        rel, pins = self.response_schema, self.rt.stage.response_pins
        if not rel or not (pins or SCHEMA_FIELD.search(rel)):
            return self.response_format
        data = record.get("data") or {}
        rel = SCHEMA_FIELD.sub(lambda m: str(lookup(data, m.group(1), "")), rel)
        if rel not in self._schemas:
            try:
                self._schemas[rel] = json.loads(self.rt.pipe.resolve(rel).read_text())
            except (OSError, ValueError) as exc:
                raise RecordRejected("response_schema_missing", f"{type(exc).__name__}: {exc} — add the schema "
                                                                f"file or fix response_schema") from None
        schema = self._schemas[rel]
        if pins:
            filled = {path: SCHEMA_FIELD.sub(lambda m: str(lookup(data, m.group(1), "")), text)
                      for path, text in pins.items()}
            try:
                schema = pinned_schema(schema, filled)
            except KeyError as exc:
                raise RecordRejected("response_pin_missing", f"response_pins: {rel} has no string at {exc} — fix "
                                                             f"the path (dotted, through properties)") from None
            return response_format_for(self.settings, schema, self.rt.stage.name)
        if rel not in self._formats:
            self._formats[rel] = response_format_for(self.settings, schema, self.rt.stage.name)
        return self._formats[rel]

    async def generate(self, item: Any) -> Generated:
        if self.rt.dry_run:
            return Generated(raw=None, dry_run=True)
        s = self.settings
        messages = []
        system = system_prompt_for(s, self.response_format)  # adds the one-shot example when configured
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": item.prompt})
        request = TeacherRequest(
            messages=messages,
            model=(item.variant or {}).get("model") or s.model,
            response_format=item.response_format,  # per record: response_schema may name a field
            sample_index=(item.variant or {}).get("replicate"),
            shard_key=item.record["id"],  # a model served by several workers: this record's worker
            **s.group("sampling"),  # temperature, top_p, max_tokens, seed, repeat_penalty: as set
        )
        response = await self.teacher.generate(request)
        return Generated(raw=response.text, teacher=response.provenance(), finish_reason=response.finish_reason,
                         made_by=f"llm:{response.selected_model or response.model}")

    def describe(self) -> dict[str, Any] | None:
        if self.teacher is None:
            return None
        info = dict(self.teacher.describe())
        if self.response_format and self.response_format.get("type") == "json_schema":
            info["decoding"] = {"profile": decoding_profile(self.settings),
                                "schema": self.response_schema or self.rt.stage.schema_}
        return info

    def stats(self) -> dict[str, Any] | None:
        """This stage's 429s, Retry-After waits and whole-model pauses (the run summary shows them)."""
        return {"teacher": {"flow": self.teacher.flow_stats()}} if self.teacher is not None else None
