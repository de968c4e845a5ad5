"""The fused loop of a plain copy stage: read a line, fill the template, write one lean line.

A copy stage with one input, one template, the identity parser and nothing else to do per record (no route,
variants, membership table, joins, copy_from, schema or gates; not a dry run; nothing to re-judge) makes the
same record for every input the generic steps (engine/steps.py) would make: its text passes through
unchanged, it is accepted, and its gen_fp, judge_fp and parse_fp are the same for every record. This loop
builds that record directly in its lean form (engine/records.py: defaults left out, the text once), with the
stage's constant parts worked out once. Anything unusual — a line that is not a JSON object, a repeated id,
a template that needs Jinja's error handling — goes through the generic steps for that one record, so every
rejection reads as it does on the generic path.

What stays the same as the generic path: the records (as the store reads them back), their order, the
resume rules (finished ids with unchanged inputs are skipped; `--limit`), crash safety (whole lines, batched
like every free record: a kill loses only lines redone for free), stats.json and the manifest. What differs:
a fused record carries no per-record `timings` (timing each copy would cost more than the copy); the
stage's stats sum the loop's time as `llm_ms` over its records, the mean standing in for the largest.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Iterator

import orjson

from pocketguide.engine import registry
from pocketguide.engine.inputs import Upstream, read_stage, source_id, source_upstream
from pocketguide.engine.items import duplicate
from pocketguide.engine.records import ACCEPTED, LEAN, expand, new_record, now_iso
from pocketguide.engine.runtime import DEFAULT_MODE, StageRuntime
from pocketguide.engine.session import NullProgress
from pocketguide.engine.stats import facet_value
from pocketguide.engine.steps import Item
from pocketguide.engine.redact import active as secrets_registered
from pocketguide.engine.store import scrubbed_line

_MISSING = object()
CHUNK = 256  # lines handed to the store at once; the clock is read once per chunk
_SAME = ("prompt", "parsed")  # the identity parser's parsed text is the prompt, which is the raw output
FLUSH_EVERY_S = 0.5
STATS_EVERY_S = 5.0


def plain_copy(rt: StageRuntime, joined: list[Any], salvage: dict[Any, bytes], dry_run: bool) -> bool:
    """True when every record of this stage run is a plain copy the fused loop can make."""
    stage, choice = rt.stage, rt.default_choice
    one_input = (bool(stage.source) and not stage.inputs) or len(stage.inputs) == 1
    return bool(
        one_input and not dry_run and not joined and not salvage and rt.members is None and stage.route is None
        and stage.variants is None and stage.copy_from is None and not rt.gates and rt.validator is None
        and rt.recipe is not None and rt.modes == {DEFAULT_MODE} and choice is not None and choice.id == "default"
        and choice.renderer is not None and choice.parser_name == "identity"
        and choice.parser is registry.PARSERS.get((registry.GLOBAL, "identity")))


def source_rows(path: Any) -> Iterator[tuple]:
    """(id, input fp, None, fields, None) per source line (its record is made only when a template reads it,
    `_source_record`); an Upstream with its problem in place of the id for a line that is no JSON object."""
    blake = hashlib.blake2b
    loads = orjson.loads
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if line.isspace():  # inputs.iter_lines: blank lines are no records
                continue
            fp = blake(line + b"\x00", digest_size=10).hexdigest()  # inputs.fingerprint(line), inlined
            try:
                obj = loads(line)
            except orjson.JSONDecodeError:
                obj = None
            if type(obj) is not dict:
                yield source_upstream(n, line, fp), fp, None, None, None
                continue
            rid = obj.pop("id", None)
            yield (rid if type(rid) is str and rid else source_id(rid, n)), fp, None, obj, None


def _source_record(rid: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A source line's record as inputs.read_source makes it (the template context's `input`)."""
    return {"id": rid, "data": fields, "parsed": fields, "raw": None, "ancestors": []}


def stage_rows(store: Any) -> Iterator[tuple]:
    """(id, input fp, record, fields, parent id) per accepted record of the upstream stage."""
    for up in read_stage(store):
        rec = up.record
        rid = rec.get("id")
        yield rid, up.fp, rec, dict(rec.get("data") or {}), rid


class _Facets:
    """The stage's facet counts of accepted fused records, as StatsAccumulator.add counts them: a plain count
    per value here (`tally`, filled by the loop), added to the stage's counts with each batch."""

    def __init__(self, acc: Any):
        self.acc = acc
        self.simple = [(f, {}) for f in acc.facets if "." not in f and "+" not in f]  # (facet, value → count)
        self.other = [f for f in acc.facets if "." in f or "+" in f]

    def value(self, f: str, out: dict[str, Any], fields: dict[str, Any], text: str) -> str:
        """facet_value of the whole record, for a facet without dots (the fields first, then the record)."""
        value = fields.get(f, _MISSING)
        if value is _MISSING:
            value = text if f in _SAME else out.get(f)
        return str(None if isinstance(value, (dict, list)) else value)

    def add_other(self, out: dict[str, Any]) -> None:
        whole = expand({**out, LEAN: list(_SAME)})
        for f in self.other:
            self.acc.facet_counts[f][str(facet_value(whole, f))][ACCEPTED] += 1

    def hand_over(self) -> None:
        for f, tally in self.simple:
            counts = self.acc.facet_counts[f]
            for value, n in tally.items():
                counts[value][ACCEPTED] += n
            tally.clear()


class _Batch:
    """What the fused loop hands the store and the stats every CHUNK records (and before a generic record)."""

    def __init__(self, loop: Any, facets: _Facets):
        self.loop, self.facets, self.lines, self.made = loop, facets, [], 0
        self.t_chunk = self.last_flush = self.last_stats = time.perf_counter()

    def hand_over(self) -> None:
        loop, now, made = self.loop, time.perf_counter(), self.made
        if self.lines:
            loop.store.append_lines(b"".join(self.lines))
            self.lines.clear()
        self.facets.hand_over()
        acc = loop.acc
        acc.accepted += made
        acc.modes[DEFAULT_MODE] += made
        acc.phases.add_many("llm_ms", made, (now - self.t_chunk) * 1000)
        loop.result.new_accepted += made
        self.made, self.t_chunk = 0, now
        if now - self.last_flush > FLUSH_EVERY_S:
            self.last_flush = now
            loop.store.flush()
        if now - self.last_stats > STATS_EVERY_S:
            self.last_stats = now
            loop.store.write_json("stats.json", acc.to_dict())

    def generic(self, item: Item) -> None:
        """One record through the generic steps (a rejection, a template that needs Jinja's handling)."""
        self.hand_over()  # the lines before it first: the file keeps the input order
        p = self.loop.prepared(item, [])
        if isinstance(p, dict):
            self.loop.write(p)
        else:
            self.loop.run_sync(p)
        self.t_chunk = time.perf_counter()


def _constants(rt: StageRuntime) -> tuple[str, str, str]:
    """gen_fp, judge_fp, parse_fp: the same for every plain copy record of the stage."""
    probe = new_record(id="", stage=rt.stage.name, parent_ids=[], ancestors=[], data={})
    probe["mode"] = DEFAULT_MODE
    return rt.recipe.gen_of(probe), rt.recipe.judge_of(probe), rt.recipe.parse_of(probe)


def run_fused(loop: Any, rows: Iterator[tuple], done: dict[str, str], limit: int | None, limit_total: bool,
              pending: list[int]) -> None:
    """Make the stage's records from `rows` (source_rows, stage_rows) as the generic loop would (skipping
    finished ids, stopping at `limit`); `loop` is the runner's _Loop, which writes the generic records."""
    rt, result, facets = loop.rt, loop.result, _Facets(loop.acc)
    batch, simple, other = _Batch(loop, facets), facets.simple, facets.other
    stage, choice = rt.stage, rt.default_choice
    gen_fp, judge_fp, parse_fp = _constants(rt)
    run_id, name, same, lines = result.run_id, stage.name, list(_SAME), batch.lines
    key = stage.inputs[0] if stage.inputs else "source"
    ctx: dict[str, Any] = {"id": None, "input": None, "variant": {}, "vars": stage.vars, "stage": name,
                           "record": None, "schema": rt.schema, "teacher": rt.teacher_facts}
    fill = choice.renderer.filler()
    wants_record = fill is None or any(p[0] in ("input", "record") for p in choice.renderer.lookups)
    fill = fill or choice.renderer.render
    progress = None if isinstance(loop.progress, NullProgress) else loop.progress
    scrub, dumps, opt, clock = secrets_registered(), orjson.dumps, orjson.OPT_APPEND_NEWLINE, time.time
    seen: dict[str, int] = {}
    taken, last_ms, stamp = 0, -1, ""
    for rid, fp, rec, data, parent in rows:
        up = None
        if type(rid) is Upstream:  # a line that is no JSON object: rejected the generic way
            rid, up = rid.record["id"], rid
        n = seen[rid] = seen.get(rid, 0) + 1
        if done.get(rid if n == 1 else f"{rid}~dup{n}") == fp:
            result.skipped_done += 1
            taken += limit_total
            continue
        if limit is not None and taken >= limit:
            pending[0] += 1
            continue
        taken += 1
        if parent is None and (wants_record or up is not None or n > 1):
            rec = up.record if up is not None else _source_record(rid, data)
        if up is not None or n > 1:
            item = Item(rid, up or Upstream(rec, fp), None, choice, fp)
            batch.generic(duplicate(rt, item, n) if n > 1 else item)
            continue
        ctx["id"], ctx["input"], ctx["record"], ctx[key] = rid, rec, rec, (data if parent is None else rec)
        try:
            text = fill(ctx)
        except Exception:  # the generic steps render it again and say why it failed
            text = None
        if text is None:
            batch.generic(Item(rid, Upstream(rec or _source_record(rid, data), fp), None, choice, fp))
            continue
        ms = int(clock() * 1000)
        if ms != last_ms:
            last_ms, stamp = ms, now_iso()
        if parent is None:
            out = {"id": rid, "stage": name, "status": ACCEPTED, "data": data, "mode": DEFAULT_MODE, "raw": text,
                   LEAN: same, "created_at": stamp, "input_fp": fp, "gen_fp": gen_fp, "judge_fp": judge_fp,
                   "parse_fp": parse_fp, "run_id": run_id}
        else:
            out = {"id": rid, "stage": name, "status": ACCEPTED, "parent_ids": [parent],
                   "ancestors": [parent, *(rec.get("ancestors") or ())], "data": data, "mode": DEFAULT_MODE,
                   "raw": text, LEAN: same, "created_at": stamp, "input_fp": fp, "gen_fp": gen_fp,
                   "judge_fp": judge_fp, "parse_fp": parse_fp, "run_id": run_id}
        try:
            line = dumps(out, option=opt)
        except TypeError:  # what orjson cannot encode: the generic write decides (json fallback, unwritable)
            batch.generic(Item(rid, Upstream(rec or _source_record(rid, data), fp), None, choice, fp))
            continue
        lines.append(scrubbed_line(line, out) if scrub else line)
        for f, tally in simple:
            value = data.get(f)
            value = value if type(value) is str else facets.value(f, out, data, text)
            tally[value] = tally.get(value, 0) + 1
        if other:
            facets.add_other(out)
        if progress is not None:
            progress.record_done(name, out)
        batch.made += 1
        if batch.made >= CHUNK:
            batch.hand_over()
    batch.hand_over()
