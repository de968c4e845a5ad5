"""`op: sft`: chat records (`messages`) per split, validated before writing, plus TRL / OpenAI files.

Files written into the stage folder: `<split>.jsonl` (one `{"messages": [...]}` per line, what
TRL's SFTTrainer and `datasets.load_dataset("json", ...)` read), `openai_ft.jsonl` (train) and
`openai_ft_val.jsonl` (val) for OpenAI fine-tuning, and `sft_format.json` (system prompt hash,
key order, the end-of-sequence policy)."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from pocketguide.engine.registry import operation
from pocketguide.ops.content import prompt_of
from pocketguide.ops.sft_format import (
    EOS_POLICY,
    SchemaCheck,
    canonical_target,
    special_tokens_in,
)
from pocketguide.ops.student_prompt import FormatHintOptions, MissingFormatHint, user_message

SPLITS = ("train", "val", "test")


class SFTOptions(FormatHintOptions):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: str = Field(alias="schema", description="JSON Schema every target (the record's parsed object) "
                                                       "must pass, relative to stages.yaml")
    payload_schemas: dict[str, str] = Field(
        default_factory=dict, description="optional payload_type → payload JSON Schema path, checked too")
    system_prompt: str = Field(description="system message of every chat record")
    key_order: list[str] = Field(default_factory=list, description="top-level key order of the target (the last "
                                 "key goes last, e.g. a long body); empty: sorted keys")
    nested_key_order: Literal["sorted", "schema"] = Field(
        "sorted", description="key order inside the payload: `sorted`, or `schema` — the payload schema's "
        "property order (payload_schemas), the order schema-constrained decoding writes, e.g. a title first")
    require_split: bool = Field(True, description="reject records without data.split (run the split stage first)")

    @model_validator(mode="after")
    def _schema_order_needs_schemas(self) -> "SFTOptions":
        if self.nested_key_order == "schema" and not self.payload_schemas:
            raise ValueError("nested_key_order: schema takes the order from payload_schemas — add payload_schemas "
                             "(payload_type → schema path) or set nested_key_order: sorted")
        return self


def _messages(system: str, prompt: str, target: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": prompt},
            {"role": "assistant", "content": target}]


def _problem(rec: dict[str, Any], opts: SFTOptions, env_check: SchemaCheck,
             payload_checks: dict[str, SchemaCheck]) -> tuple[str, str] | None:
    """(reason, detail) when the record cannot become a training example; nothing is repaired."""
    env = rec.get("parsed")
    if not isinstance(env, dict):
        return "sft:invalid_envelope", "parsed is not a JSON object"
    if not prompt_of(rec).strip():
        return "sft:missing_prompt", "data.prompt is empty or missing"
    if opts.require_split and not (rec.get("data") or {}).get("split"):
        return "sft:missing_split", "data.split is missing — put the split stage before sft"
    err = env_check.first_error(env)
    if err:
        return "sft:envelope_schema_failed", f"{err[0]}: {err[1]}"
    check = payload_checks.get(str(env.get("payload_type")))
    if check is not None:
        err = check.first_error(env.get("payload"))
        if err:
            return "sft:payload_schema_failed", f"$.payload{err[0][1:]}: {err[1]}"
    return None


def _payload_order(rec: dict[str, Any], opts: SFTOptions,
                   payload_checks: dict[str, SchemaCheck]) -> dict[str, Any] | None:
    if opts.nested_key_order != "schema":
        return None
    check = payload_checks.get(str(rec["parsed"].get("payload_type")))
    return check.schema if check is not None else None


@operation("sft", options=SFTOptions)
def sft(ctx: Any, opts: SFTOptions) -> None:
    """Turn split records into validated chat examples and write trainer-ready JSONL files."""
    env_check = SchemaCheck(ctx.pipe.resolve(opts.schema_), "envelope", opts.schema_)
    payload_checks = {t: SchemaCheck(ctx.pipe.resolve(p), f"{t} payload", p) for t, p in opts.payload_schemas.items()}
    lines: dict[str, list[bytes]] = defaultdict(list)
    chars: list[int] = []
    for rec in ctx.records():
        out = ctx.derive(rec)
        bad = _problem(rec, opts, env_check, payload_checks)
        target = "" if bad else canonical_target(rec["parsed"], opts.key_order, _payload_order(rec, opts, payload_checks))
        if not bad and json.loads(target) != rec["parsed"]:
            bad = ("sft:target_roundtrip_failed", "the canonical JSON does not load back to the envelope")
        if not bad and special_tokens_in(target + prompt_of(rec)):
            bad = ("sft:special_token_in_text", f"contains {special_tokens_in(target + prompt_of(rec))}; "
                   f"{EOS_POLICY}")
        if bad:
            out["parsed"] = None
            ctx.reject(out, bad[0], error=bad[1])
            continue
        try:
            user = user_message(prompt_of(rec), rec.get("data") or {}, opts)
        except MissingFormatHint as exc:
            out["parsed"] = None
            ctx.reject(out, "sft:no_format_hint", error=str(exc))
            continue
        messages = _messages(opts.system_prompt, user, target)
        out["parsed"] = {"messages": messages}
        ctx.accept(out)
        chars.append(len(target))
        line = json.dumps({"messages": messages}, ensure_ascii=False).encode() + b"\n"
        lines[str(out["data"].get("split") or "unsplit")].append(line)
    _write_files(ctx, lines)
    fmt = {"format": "messages", "roles": ["system", "user", "assistant"], "target": "assistant",
           "eos": EOS_POLICY, "key_order": opts.key_order,
           "nested_key_order": opts.nested_key_order,
           "system_prompt_sha256": hashlib.sha256(opts.system_prompt.encode()).hexdigest(),
           "format_hints": {"field": opts.format_hint_field, "hints": opts.format_hints} if opts.format_hints else None,
           "envelope_schema": env_check.describe(),
           "payload_schemas": {t: c.describe() for t, c in payload_checks.items()}}
    ctx.write_json("sft_format.json", fmt)
    ctx.manifest_extra["sft_format"] = fmt
    ctx.stats_extra["sft"] = {"per_split": {k: len(v) for k, v in sorted(lines.items())},
                              "target_chars": {"mean": round(sum(chars) / len(chars), 1) if chars else None,
                                               "max": max(chars, default=None)},
                              "eos": EOS_POLICY, "files": sorted(_file_names(lines))}


def _file_names(lines: dict[str, list[bytes]]) -> set[str]:
    return {f"{s}.jsonl" for s in set(SPLITS) | set(lines)} | {"openai_ft.jsonl", "openai_ft_val.jsonl"}


def _write_files(ctx: Any, lines: dict[str, list[bytes]]) -> None:
    for split in set(SPLITS) | set(lines):
        ctx.write_bytes(f"{split}.jsonl", b"".join(lines.get(split, [])))
    # OpenAI's chat fine-tuning format is the same `messages` object per line
    ctx.write_bytes("openai_ft.jsonl", b"".join(lines.get("train", [])))
    ctx.write_bytes("openai_ft_val.jsonl", b"".join(lines.get("val", [])))
