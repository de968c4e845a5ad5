"""The user message a student sees: the record's prompt, plus an optional per-record format line.

A small student answers a question in one of several shapes (payload types). Without being told which,
it must guess the shape from the question and recall its keys; the format line says both. The sft stage
and the held-out suite build the user message with the same function and the same options (a YAML
anchor keeps them equal), so the student is evaluated on exactly the prompt form it trained on."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class FormatHintOptions(BaseModel):
    format_hints: dict[str, str] = Field(
        default_factory=dict, description="value of `format_hint_field` → a line appended to the user message "
        "(e.g. which payload type to answer with and its keys); empty: the prompt alone")
    format_hint_field: str = Field("payload_type", description="the record data field that picks the hint")


class MissingFormatHint(ValueError):
    """The record's field value has no hint while hints are configured."""


def user_message(prompt: str, data: dict[str, Any], opts: FormatHintOptions) -> str:
    """`prompt`, then a blank line and the hint for data[format_hint_field] when hints are configured."""
    if not opts.format_hints:
        return prompt
    key = data.get(opts.format_hint_field)
    hint = opts.format_hints.get(str(key)) if key is not None else None
    if hint is None:
        raise MissingFormatHint(f"no format hint for {opts.format_hint_field}={key!r} (hints exist for "
                                f"{sorted(opts.format_hints)}) — add one to options.format_hints")
    return f"{prompt}\n\n{hint.strip()}"
