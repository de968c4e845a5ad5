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
stage's stats sum the loop's time as `llm_ms` over its records, the mean standing in for the largest; its
`created_at` is when its chunk (CHUNK records, a few ms) began, read once per chunk, not once per record.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

from pocketguide.engine import registry
from pocketguide.engine.inputs import FINGERPRINT, Upstream, read_stage, source_id, source_upstream
from pocketguide.engine.items import duplicate
from pocketguide.engine.records import ACCEPTED, LEAN, RAW_FROM, expand, new_record, now_iso
from pocketguide.engine.redact import active as secrets_registered
from pocketguide.engine.runtime import DEFAULT_MODE, StageRuntime
from pocketguide.engine.session import NullProgress
from pocketguide.engine.stats import facet_value
from pocketguide.engine.steps import Item
from pocketguide.engine.store import scrubbed_line

_MISSING = object()
CHUNK = 256  # lines handed to the store (and counted in the stats) at once
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


def _source_record(rid: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A source line's record as inputs.read_source makes it (the template context's `input`)."""
    return {"id": rid, "data": fields, "parsed": fields, "raw": None, "ancestors": []}


class _Facets:
    """The stage's facet counts of accepted fused records, as StatsAccumulator.add counts them: a plain count
    per value here (`tally`, filled by the loop), added to the stage's counts with each batch."""

    def __init__(self, acc: Any):
        self.acc = acc
        self.simple = [(f, {}) for f in acc.facets if "." not in f and "+" not in f]  # (facet, value → count)
        self.other = [f for f in acc.facets if "." in f or "+" in f]

    def value(self, f: str, out: dict[str, Any]) -> str:
        """facet_value of the whole record, for a facet without dots (the fields first, then the record)."""
        value = out["data"].get(f, _MISSING)
        if value is _MISSING:
            value = out["raw"] if f in _SAME else out.get(f)
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
        self.loop, self.facets, self.lines = loop, facets, []
        self.t_chunk = self.last_flush = self.last_stats = time.perf_counter()

    def hand_over(self) -> None:
        loop, now, made = self.loop, time.perf_counter(), len(self.lines)  # one line per record made
        if self.lines:
            loop.store.append_lines(b"".join(self.lines))
            self.lines.clear()
        self.facets.hand_over()
        acc = loop.acc
        acc.accepted += made
        acc.modes[DEFAULT_MODE] += made
        acc.phases.add_many("llm_ms", made, (now - self.t_chunk) * 1000)
        loop.result.new_accepted += made
        self.t_chunk = now
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


class _Fused:
    """One fused run of a plain copy stage: its constant parts, worked out once, and the rules every input
    passes before its record is made (a repeated id, a finished id, the limit)."""

    def __init__(self, loop: Any, done: dict[str, str], limit: int | None, limit_total: bool, pending: list[int]):
        self.loop, self.rt, self.result = loop, loop.rt, loop.result
        self.choice = loop.rt.default_choice
        self.facets = _Facets(loop.acc)
        self.batch = _Batch(loop, self.facets)
        self.done, self.limit, self.limit_total, self.pending = done, limit, limit_total, pending
        self.seen: dict[str, int] = {}
        self.taken = 0
        self.gen_fp, self.judge_fp, self.parse_fp = _constants(self.rt)
        stage = self.rt.stage
        self.key = stage.inputs[0] if stage.inputs else "source"
        self.ctx: dict[str, Any] = {"id": None, "input": None, "variant": {}, "vars": stage.vars, "stage": stage.name,
                                    "record": None, "schema": self.rt.schema, "teacher": self.rt.teacher_facts}
        renderer = self.choice.renderer
        fill = renderer.filler()
        self.wants_record = fill is None or any(p[0] in ("input", "record") for p in renderer.lookups)
        self.fill = fill or renderer.render
        # `{{ source.x }}` alone: the field itself, without a context (the one_lookup filler's rule)
        one = renderer.single_lookup
        self.direct = one[1] if one and len(one) == 2 and one[0] == self.key and not stage.inputs else None
        self.progress = None if isinstance(loop.progress, NullProgress) else loop.progress
        self.last_ms, self.stamp = -1, ""

    def admit(self, rid: str, fp: str) -> int:
        """Which occurrence of `rid` this input is (1: the first), or 0 when it is skipped (finished, or past
        the limit); the same rules as the runner's stage_items and _take."""
        k = self.seen[rid] = self.seen.get(rid, 0) + 1
        if self.done and self.done.get(rid if k == 1 else f"{rid}~dup{k}") == fp:
            self.result.skipped_done += 1
            self.taken += self.limit_total
            return 0
        if self.limit is not None and self.taken >= self.limit:
            self.pending[0] += 1
            return 0
        self.taken += 1
        return k

    def generic(self, rid: str, up: Upstream, k: int) -> None:
        """This input through the generic steps: a rejection (a bad line, a repeated id) or what the fast
        path cannot fill."""
        item = Item(rid, up, None, self.choice, up.fp)
        self.batch.generic(duplicate(self.rt, item, k) if k > 1 else item)

    def render(self, rid: str, rec: dict[str, Any] | None, data: dict[str, Any], parent: str | None) -> str | None:
        ctx = self.ctx
        ctx["id"], ctx["input"], ctx["record"], ctx[self.key] = rid, rec, rec, (data if parent is None else rec)
        try:
            return self.fill(ctx)
        except Exception:  # the generic steps render it again and say why it failed
            return None

    def created_at(self) -> str:
        ms = int(time.time() * 1000)
        if ms != self.last_ms:
            self.last_ms, self.stamp = ms, now_iso()
        return self.stamp

    def record(self, rid: str, fp: str, data: dict[str, Any], text: str, parent: str | None,
               rec: dict[str, Any] | None) -> dict[str, Any]:
        """The lean record (engine/records.py) the generic steps' record reads back as."""
        out: dict[str, Any] = {"id": rid, "stage": self.rt.stage.name, "status": ACCEPTED}
        if parent is not None:
            out["parent_ids"] = [parent]
            out["ancestors"] = [parent, *((rec or {}).get("ancestors") or ())]
        out.update(data=data, mode=DEFAULT_MODE, raw=text)
        out[LEAN] = list(_SAME)
        out.update(created_at=self.stamp, input_fp=fp, gen_fp=self.gen_fp, judge_fp=self.judge_fp,
                   parse_fp=self.parse_fp, run_id=self.result.run_id)
        return out

    def count(self, out: dict[str, Any]) -> None:
        """Facets and progress of one record written as a line."""
        for f, tally in self.facets.simple:
            value = out["data"].get(f)
            value = value if type(value) is str else self.facets.value(f, out)
            tally[value] = tally.get(value, 0) + 1
        if self.facets.other:
            self.facets.add_other(out)
        if self.progress is not None:
            self.progress.record_done(self.rt.stage.name, out)
        if len(self.batch.lines) >= CHUNK:
            self.batch.hand_over()

    def write(self, out: dict[str, Any], up: Upstream) -> None:
        try:
            line = orjson.dumps(out, option=orjson.OPT_APPEND_NEWLINE)
        except TypeError:  # what orjson cannot encode: the generic write decides (json fallback, unwritable)
            self.generic(out["id"], up, 1)
            return
        self.batch.lines.append(scrubbed_line(line, out) if secrets_registered() else line)
        self.count(out)


def run_fused(loop: Any, source: Path | None, upstream: Any, done: dict[str, str], limit: int | None,
              limit_total: bool, pending: list[int]) -> None:
    """Make the stage's records from its source file or its upstream store as the generic loop would (skipping
    finished ids, stopping at `limit`); `loop` is the runner's _Loop, which writes the generic records."""
    run = _Fused(loop, done, limit, limit_total, pending)
    if source is not None:
        _copy_source(run, source)
    else:
        _copy_stage(run, upstream)
    run.batch.hand_over()


def _copy_stage(run: _Fused, store: Any) -> None:
    """Each accepted record of the upstream stage, copied."""
    for up in read_stage(store):
        rec = up.record
        rid = rec["id"]
        k = run.admit(rid, up.fp)
        if not k:
            continue
        if k > 1:
            run.generic(rid, up, k)
            continue
        data = dict(rec.get("data") or {})
        text = run.render(rid, rec, data, rid)
        if text is None:
            run.generic(rid, up, 1)
            continue
        if not run.batch.lines:  # one timestamp per chunk, as in _copy_source
            run.created_at()
        run.write(run.record(rid, up.fp, data, text, rid, rec), up)


def _copy_source(run: _Fused, path: Path) -> None:
    """Each line of the source file, copied: the hot loop (bench/runner_overhead.py). The lean line is put
    together from pieces encoded once per stage and the few values encoded per record."""
    blake, loads, dumps = FINGERPRINT.copy, orjson.loads, orjson.dumps
    lines, batch, direct, scrub = run.batch.lines, run.batch, run.direct, secrets_registered()
    simple, seen, done, limit = run.facets.simple, run.seen, run.done, run.limit
    seen_get = seen.get
    head = b',"stage":' + dumps(run.rt.stage.name) + b',"status":"accepted","data":'
    mid = b',"mode":' + dumps(DEFAULT_MODE) + b',"raw":'
    # `{{ source.x }}` alone: the text is the field itself, written once (records.RAW_FROM)
    raw_from = b',"mode":' + dumps(DEFAULT_MODE) + b',"' + RAW_FROM.encode() + b'":' + dumps(direct) if direct else b""
    lean = b',"' + LEAN.encode() + b'":' + dumps(list(_SAME)) + b',"created_at":'
    tail = dumps({"gen_fp": run.gen_fp, "judge_fp": run.judge_fp, "parse_fp": run.parse_fp,
                  "run_id": run.result.run_id})[1:] + b"\n"
    stamp = b""
    slow = bool(scrub or run.facets.other or run.progress is not None)
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if line.isspace():  # inputs.iter_lines: blank lines are no records
                continue
            h = blake()  # inputs.fingerprint(line), inlined
            h.update(line + b"\x00")
            fp = h.hexdigest()
            try:
                data = loads(line)
            except orjson.JSONDecodeError:
                data = None
            if type(data) is dict:
                rid = data.pop("id", None)
                if type(rid) is not str or not rid:
                    rid = source_id(rid, n)
                k = seen[rid] = seen_get(rid, 0) + 1  # run.admit, inlined for the common case
                if k != 1 or done or limit is not None:
                    seen[rid] = k - 1
                    k = run.admit(rid, fp)
                    if k != 1:
                        if k:
                            run.generic(rid, Upstream(_source_record(rid, data), fp), k)
                        continue
            else:  # no JSON object: a rejection, the generic way (inputs.source_upstream says why)
                up = source_upstream(n, line, fp)
                k = run.admit(up.record["id"], fp)
                if k:
                    run.generic(up.record["id"], up, k)
                continue
            if direct is not None:
                text = data.get(direct)
                text = text if type(text) is str else None
            else:
                text = run.render(rid, _source_record(rid, data) if run.wants_record else None, data, None)
            if text is None:
                run.generic(rid, Upstream(_source_record(rid, data), fp), 1)
                continue
            if not lines:  # one timestamp per chunk (CHUNK records, a few ms): when its first record was made
                stamp = dumps(run.created_at())
            try:
                out = b"".join((b'{"id":', dumps(rid), head, dumps(data), raw_from or mid + dumps(text), lean, stamp,
                                b',"input_fp":"', fp.encode(), b'",', tail))
            except TypeError:  # what orjson cannot encode: the generic write decides (json fallback, unwritable)
                run.generic(rid, Upstream(_source_record(rid, data), fp), 1)
                continue
            if slow:  # what needs the record as a dict: secrets to scrub, facets past the fields, a progress bar
                rec = run.record(rid, fp, data, text, None, None)
                lines.append(scrubbed_line(out, rec) if scrub else out)
                run.count(rec)
                continue
            lines.append(out)
            for f, tally in simple:
                value = data.get(f)
                if type(value) is not str:
                    value = run.facets.value(f, run.record(rid, fp, data, text, None, None))
                tally[value] = tally.get(value, 0) + 1
            if len(lines) >= CHUNK:
                batch.hand_over()
                if not scrub and secrets_registered():  # a secret registered since (the generic path checks each line)
                    scrub = slow = True
