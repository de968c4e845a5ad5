"""Built-in generators by mode: `copy` passes text through, `llm` asks the teacher.

A generator is a class registered with `@generator(mode)`: `is_async`, `uses_teacher` (the stage then
gets a teacher), and `generate(item) -> Generated`. A pipeline registers its own the same way (the
PocketGuide critic is one); the runner treats every mode alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from .errors import TeacherError
from .records import lookup
from .registry import generator
from .structured import system_prompt_for
from .teachers.base import TeacherRequest


@dataclass
class Generated:
    raw: str | None
    teacher: dict[str, Any] | None = None
    finish_reason: str | None = None
    dry_run: bool = False
    made_by: str | None = None  # what wrote `raw` (e.g. "llm:<model>", "pocketguide_critic:v1"); stored on the record


class MissingInput(Exception):
    def __init__(self, path: str):
        self.path = path
        super().__init__(path)


@generator("copy")
class CopyGenerator:
    """The rendered prompt, or the value at `copy_from`, passes through unchanged. No teacher call."""

    is_async = False
    uses_teacher = False

    def generate(self, item: "Any") -> Generated:
        # in a dry run, a copy of a dry-run record (which has no text) is a placeholder too: it is
        # counted like the llm placeholders instead of failing its parser and gates
        dry = bool(item.runtime.dry_run and (item.context.get("input") or {}).get("dry_run"))
        path = item.stage.copy_from
        if path is None:
            return Generated(raw=item.prompt, dry_run=dry)
        try:
            value = lookup(item.context, path)
        except KeyError:
            raise MissingInput(path) from None
        if isinstance(value, str):
            return Generated(raw=value, dry_run=dry)
        return Generated(raw=orjson.dumps(value).decode(), dry_run=dry)


@generator("llm")
class LLMGenerator:
    """Sends the rendered prompt (after the system prompt) to the stage's teacher."""

    is_async = True
    uses_teacher = True

    async def generate(self, item: "Any") -> Generated:
        rt = item.runtime
        s = rt.teacher_settings
        if rt.dry_run:
            return Generated(raw=None, dry_run=True)
        messages = []
        system = system_prompt_for(s, rt.response_format)  # adds the one-shot example when configured
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": item.prompt})
        request = TeacherRequest(
            messages=messages,
            model=(item.variant or {}).get("model") or s.model,
            temperature=s.temperature,
            top_p=s.top_p,
            max_tokens=s.max_tokens,
            seed=s.seed,
            response_format=item.response_format,  # per record: response_schema may name a field
            repeat_penalty=s.repeat_penalty,
            sample_index=(item.variant or {}).get("replicate"),
        )
        response = await rt.teacher.generate(request)
        return Generated(raw=response.text, teacher=response.provenance(), finish_reason=response.finish_reason,
                         made_by=f"llm:{response.selected_model or response.model}")


__all__ = ["Generated", "MissingInput", "TeacherError"]
