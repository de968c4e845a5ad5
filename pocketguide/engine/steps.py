"""One record's steps, in order: context → route → render (prepare), then parse → validate → gates
(finish). The runner's loop calls these; nothing here knows any particular stage."""

from __future__ import annotations

import errno
import time
from dataclasses import dataclass
from typing import Any

from pocketguide.engine.errors import (
    MissingExtra,
    ParseError,
    StagesConfigError,
    StageStopped,
    StoreError,
    TeacherConfigError,
    TemplateError,
)
from pocketguide.engine.generators import Generated
from pocketguide.engine.inputs import Joined, Upstream
from pocketguide.engine.records import ACCEPTED, REJECTED, lookup, new_record
from pocketguide.engine.runtime import DEFAULT_MODE, SKIP, GateInput, ParseContext, StageRuntime, TemplateChoice
from pocketguide.engine.timings import since_ms


@dataclass
class Item:
    id: str
    upstream: Upstream
    variant: dict[str, Any] | None
    choice: TemplateChoice | None
    fp: str


def _context(rt: StageRuntime, item: Item, joined: list[Joined]) -> tuple[dict[str, Any], str | None]:
    stage = rt.stage
    rec = item.upstream.record
    ctx: dict[str, Any] = {"id": item.id, "input": rec, "variant": item.variant or {}, "vars": stage.vars,
                           "stage": stage.name, "record": rec, "schema": rt.schema, "teacher": rt.teacher_facts}
    if stage.inputs:
        ctx[stage.inputs[0]] = rec
    else:
        ctx["source"] = rec.get("parsed")
    for j in joined:
        hit = j.find(rec)
        if hit is None:
            return ctx, j.stage
        ctx[j.stage] = hit.record
    return ctx, None


def newlines_normalised(text: str) -> str:
    r"""\r\n and lone \r become \n before parsing, so no parser has to think about Windows or old-Mac endings."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def _reject(record: dict[str, Any], reason: str, error: str | None = None) -> dict[str, Any]:
    record["status"] = REJECTED
    record["reasons"].append(reason)
    if error and not record.get("error"):
        record["error"] = error
    return record


# failures that concern the whole stage stop it; every other exception fails only the record at hand
_STAGE_ERRORS = (StageStopped, StagesConfigError, TeacherConfigError, MissingExtra, StoreError)
_STAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}  # a full or read-only disk fails every record
MAX_ERROR_CHARS = 500


def stops_stage(exc: BaseException) -> bool:
    """True for what no other record can get past: a config error, an open circuit or a spent budget,
    a store that cannot write, a full disk. Anything else raised while handling one record fails that record."""
    if not isinstance(exc, Exception):
        return True  # KeyboardInterrupt, SystemExit, cancellation
    return isinstance(exc, _STAGE_ERRORS) or (isinstance(exc, OSError) and exc.errno in _STAGE_ERRNOS)


def error_text(exc: BaseException) -> str:
    """`Type: message`, cut to MAX_ERROR_CHARS (a 10 MB message must not become a 10 MB record)."""
    try:
        text = f"{type(exc).__name__}: {exc}"
    except Exception:  # a plugin's exception whose __str__ raises
        text = f"{type(exc).__name__}: (message could not be shown)"
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "…"


def record_failed(record: dict[str, Any], code: str, exc: BaseException) -> dict[str, Any]:
    """Reject one record for an exception raised while handling it; re-raise what stops the stage."""
    if stops_stage(exc):
        raise exc
    return _reject(record, code, error_text(exc))


class Prepared:
    __slots__ = ("record", "choice", "mode", "context", "prompt", "stage", "runtime", "variant", "response_format",
                 "kept")

    def __init__(self, record, choice, mode, context, prompt, rt, response_format=None):
        self.record, self.choice, self.mode, self.context, self.prompt = record, choice, mode, context, prompt
        self.stage, self.runtime, self.variant = rt.stage, rt, record.get("variant")
        self.response_format = response_format
        self.kept: dict[str, Any] | None = None  # a re-judged record's stored parse, still current (restored)


def failed_record(rt: StageRuntime, item: Item) -> dict[str, Any]:
    """The bare record of an item, for when building the real one failed."""
    up = item.upstream.record
    parent = up.get("id") if isinstance(up, dict) else None
    record = new_record(id=item.id, stage=rt.stage.name, parent_ids=[parent] if rt.stage.inputs else [],
                        ancestors=[parent] if rt.stage.inputs else [], data={}, variant=item.variant)
    record["input_fp"] = item.fp
    return record


def unwritable(record: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    """What is kept of a record the store cannot encode (a value nested deeper than JSON writers go):
    who it is, why it failed and what it cost, without the payload."""
    keep = ("id", "stage", "parent_ids", "ancestors", "variant", "mode", "template", "route", "teacher", "created_at",
            "input_fp", "gen_fp", "timings")
    out = {k: record.get(k) for k in keep}
    out.update(status=REJECTED, reasons=[*record.get("reasons", []), "record_unwritable"], data={},
               error=error_text(exc))
    return out


def prepare(rt: StageRuntime, item: Item, joined: list[Joined]) -> Prepared | dict[str, Any]:
    """Build the record and render its prompt. Returns a finished (rejected) record on failure."""
    t0 = time.perf_counter()
    up = item.upstream.record
    parent = up.get("id")
    record = new_record(id=item.id, stage=rt.stage.name, parent_ids=[parent] if rt.stage.inputs else [],
                        ancestors=([parent] + list(up.get("ancestors") or [])) if rt.stage.inputs else [],
                        data=dict(up.get("data") or {}), variant=item.variant)
    record["input_fp"] = item.fp
    if item.upstream.problem:
        record["raw"] = up.get("raw")
        # the problem text starts with its reason code ("malformed_input: …", "duplicate_id: …")
        return _reject(record, item.upstream.problem.split(":", 1)[0], item.upstream.problem)
    ctx, missing = _context(rt, item, joined)
    if missing:
        return _reject(record, f"missing_input:{missing}", f"no accepted '{missing}' record for id {parent}")
    choice = item.choice
    mode = choice.mode if choice else (rt.stage.mode or DEFAULT_MODE)
    if rt.stage.route:
        route = rt.stage.route
        values = [lookup(ctx, path, None) for path in route.paths]
        key = "/".join(route.key_of(v) for v in values)
        matched, case = route.case_for(key)
        record["route"] = {"on": route.on, "value": values[0] if isinstance(route.on, str) else values,
                           "mode": case.mode}
        if case.mode == SKIP:
            return _reject(record, case.reason or f"route_skip:{key}")
        mode = case.mode
        choice = rt.route_choices.get(matched or "", choice)
    record["mode"] = mode
    if choice and choice.id != "default":
        record["template"] = choice.id
    prompt = None
    if choice and choice.renderer:
        try:
            prompt = choice.renderer.render(ctx)
        except TemplateError as exc:  # any error of this record's values, Jinja's or Python's
            return _reject(record, "template_error", str(exc)[:MAX_ERROR_CHARS])
        record["prompt"] = prompt
    record["timings"] = {"render_ms": since_ms(t0)}
    return Prepared(record, choice, mode, ctx, prompt, rt)


def restored(rt: StageRuntime, old: dict[str, Any]) -> Prepared:
    """A stored record whose inputs and generation are unchanged, ready for `finish` to judge its raw output
    again: its identity, prompt and route carried over; parsed, validation, gates and status made anew."""
    record = new_record(id=old["id"], stage=rt.stage.name, parent_ids=old.get("parent_ids") or [],
                        ancestors=old.get("ancestors") or [], data=old.get("data") or {}, variant=old.get("variant"))
    for key in ("mode", "prompt", "route", "template", "input_fp", "gen_fp"):
        if key in old:
            record[key] = old[key]
    record["rejudged_from"] = old.get("created_at")
    cid = old.get("template")
    choice = (rt.choices.get(cid) or rt.route_choices.get(cid)) if cid else None
    p = Prepared(record, choice or rt.default_choice, record["mode"], None, record["prompt"], rt)
    if old.get("parse_fp") is not None and rt.recipe is not None and old["parse_fp"] == rt.recipe.parse_of(record):
        p.kept = old  # parser, schema and what they read unchanged: its parsed value and verdict stand
    return p


def finish(rt: StageRuntime, p: Prepared, gen: Generated) -> dict[str, Any]:
    """Parse → validate → gates. Every path ends accepted or rejected with reason codes."""
    record = p.record
    record["raw"] = gen.raw
    record["teacher"] = gen.teacher
    if gen.made_by:
        record["made_by"] = gen.made_by
    if gen.dry_run:
        record["dry_run"] = True
        record["status"] = ACCEPTED
        return record
    if rt.recipe is not None:  # what judges the raw output below; a change re-judges it, with no teacher call
        record["judge_fp"] = rt.recipe.judge_of(record)
    if gen.finish_reason == "length" and not rt.stage.allow_truncated:
        return _reject(record, "truncated", "the teacher hit max_tokens; raise max_tokens or shorten the prompt")
    if p.kept is not None:
        for key in ("parsed", "parse_notes", "validation"):
            if p.kept.get(key) is not None:
                record[key] = p.kept[key]
    elif not _parse_and_validate(rt, p, gen, record):
        return record  # rejected: its reason is on the record
    if rt.recipe is not None:  # parsed and valid: a later change of gates alone keeps this part (restored)
        record["parse_fp"] = rt.recipe.parse_of(record)
    if not rt.gates:
        record["status"] = REJECTED if record["reasons"] else ACCEPTED
        return record
    t0 = time.perf_counter()
    gi = GateInput(record["parsed"], gen.raw, record, rt.settings, rt.root, rt.files_read)
    for name, fn, opts in rt.gates:
        try:
            res = fn(gi, opts)
            res_d = {"name": name, "passed": bool(res.passed), "reason": res.reason, "details": res.details}
        except Exception as exc:
            if stops_stage(exc):
                raise
            res_d = {"name": name, "passed": False, "reason": "error", "details": {"error": error_text(exc)}}
        record["gates"].append(res_d)
        if not res_d["passed"]:
            record["reasons"].append(f"gate:{name}:{res_d['reason'] or 'failed'}")
    record.setdefault("timings", {})["gate_ms"] = since_ms(t0)
    record["status"] = REJECTED if record["reasons"] else ACCEPTED
    return record


def _parse_and_validate(rt: StageRuntime, p: Prepared, gen: Generated, record: dict[str, Any]) -> bool:
    """Parse the raw output and validate it against the schema onto the record; False when it was rejected
    (the reason on the record)."""
    pctx = ParseContext(rt.stage.name, record, rt.schema, options=p.choice.parser_options if p.choice else None,
                        root=rt.root, seen=rt.files_read)
    try:
        text = gen.raw or ""
        if gen.teacher is not None:  # a model's reply: the parser reads \n only, the record's raw keeps its bytes
            text = newlines_normalised(text)
        parsed = p.choice.parser(text, pctx) if p.choice else text
    except ParseError as exc:
        record["parse_notes"] = pctx.notes or None
        _reject(record, exc.code, str(exc)[:MAX_ERROR_CHARS])
        return False
    except Exception as exc:  # a parser bug must not end the run
        record_failed(record, "parse_failed", exc)
        return False
    record["parsed"] = parsed
    if pctx.notes:
        record["parse_notes"] = pctx.notes
    if rt.validator is not None:
        try:
            err = next(iter(rt.validator.iter_errors(parsed)), None)
        except Exception as exc:  # e.g. RecursionError on a value nested thousands deep
            record_failed(record, "validation_error", exc)
            return False
        record["validation"] = {"ok": err is None}
        if err is not None:
            path = "$" + "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in err.absolute_path)
            record["validation"].update(path=path, message=err.message[:300])
            _reject(record, "schema_invalid", f"{path}: {err.message[:300]}")
            return False
    return True
