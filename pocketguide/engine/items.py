"""Inputs → items: which records a per-record stage makes from its inputs, with their ids, variants,
template choices and input fingerprints (the fan-out of `variants`, or the rows of a membership table),
shared by the runner and `status`. Nothing in here knows any particular stage."""

from __future__ import annotations

import itertools
from typing import Any, Iterator

from pocketguide.engine import registry
from pocketguide.engine.inputs import (
    Joined,
    Upstream,
    fingerprint,
    input_store,
    join_index,
    read_source,
    read_stage,
    require_upstream,
)
from pocketguide.engine.loader import Pipeline
from pocketguide.engine.members import member_index
from pocketguide.engine.records import child_id
from pocketguide.engine.runtime import StageRuntime
from pocketguide.engine.spec import StageSpec
from pocketguide.engine.steps import Item


def driving_inputs(pipe: Pipeline, stage: StageSpec, dry_run: bool) -> Iterator[Upstream]:
    if stage.source and not stage.inputs:
        return read_source(pipe.resolve(stage.source))
    store = input_store(pipe, stage.inputs[0], dry_run)
    require_upstream(store, stage.name, stage.inputs[0], dry_run)
    return read_stage(store)


def _variants(rt: StageRuntime, up: Upstream, fp: str) -> Iterator[Item]:
    """The fan-out of one input. A `copy` template makes no teacher call, so the model and replicate
    axes do not apply to it: it yields one child, not one identical copy per model and replicate."""
    stage = rt.stage
    if rt.members is not None:
        yield from _member_items(rt, up, fp)
        return
    v = stage.variants
    if v is None:
        yield Item(up.record["id"], up, None, rt.default_choice, fp)
        return
    for choice in list(rt.choices.values()) or [rt.default_choice]:
        copy = choice is not None and not registry.calls_teacher(choice.mode) and not stage.route
        models = [None] if copy or not v.models else v.models
        for model, rep in itertools.product(models, range(1 if copy else v.replicates)):
            variant: dict[str, Any] = {}
            if rt.choices:
                variant["template"] = choice.id
            if model is not None:
                variant["model"] = model
            if v.replicates > 1 and not copy:
                variant["replicate"] = rep
            rid = child_id(up.record["id"], variant, stage.id_prefix or stage.name)
            yield Item(rid, up, variant, choice, fp)


def _member_items(rt: StageRuntime, up: Upstream, fp: str) -> Iterator[Item]:
    """The rows the membership table lists for this input: their ids, templates, models and replicates."""
    for row in rt.members.of(up.record["id"]):  # type: ignore[union-attr]
        tid = row.variant.get("template")
        choice = rt.choices.get(tid) if tid is not None else rt.default_choice
        if choice is None:
            bad = Upstream(up.record, up.fp, problem=f"unknown_template: the membership table "
                                                     f"'{rt.members.table}' names template '{tid}', which stage "  # type: ignore[union-attr]
                                                     f"'{rt.stage.name}' does not have — rebuild the table")
            yield Item(row.id, bad, row.variant, None, fp)
            continue
        yield Item(row.id, up, row.variant, choice, fp)


def stage_items(rt: StageRuntime, driving: Iterator[Upstream], joined: list[Joined]) -> Iterator[Item]:
    seen: dict[str, int] = {}
    for up in driving:
        extra = []
        for j in joined:
            hit = j.find(up.record)
            extra.append(hit.fp.encode() if hit else b"-")
        fp = fingerprint(up.fp.encode(), *extra) if joined else up.fp
        plain = rt.stage.variants is None  # one item per input: no fan-out generator per record
        for item in ((Item(up.record["id"], up, None, rt.default_choice, fp),) if plain else _variants(rt, up, fp)):
            n = seen[item.id] = seen.get(item.id, 0) + 1
            if n == 1:
                yield item
                continue
            yield duplicate(rt, item, n)


def duplicate(rt: StageRuntime, item: Item, n: int) -> Item:
    """The `n`th item with one id. Two inputs with one id (or two identical variants) would write one id twice
    and break joins and resume: the first keeps the id, each later one becomes a visible rejection."""
    up = item.upstream
    dup = Upstream(up.record, up.fp, problem=f"duplicate_id: id '{item.id}' was already produced by an "
                                             f"earlier input of stage '{rt.stage.name}' — give each input "
                                             f"a unique id (or list each variant once)")
    return Item(f"{item.id}~dup{n}", dup, item.variant, item.choice, item.fp)


def joined_inputs(pipe: Pipeline, rt: StageRuntime, dry_run: bool) -> list[Joined]:
    """The inputs after the first, indexed for joins by id; a membership table (`members:`) is read into
    rt.members instead (its rows say which records the stage makes, engine/members.py)."""
    stage = rt.stage
    stores = [input_store(pipe, name, dry_run) for name in stage.inputs[1:] if name != stage.members]
    for js in stores:
        require_upstream(js, stage.name, js.stage, dry_run)
    if stage.members:
        table = input_store(pipe, stage.members, dry_run)
        require_upstream(table, stage.name, stage.members, dry_run)
        rt.members = member_index(table, stage.name)
    return [join_index(js) for js in stores]
