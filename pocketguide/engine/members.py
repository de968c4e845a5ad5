"""Membership tables: a stage with `members: <stage>` makes exactly the records that table lists.

A membership table is any stage whose accepted records are rows, one per record to make:

    data.stage      the stage the row belongs to
    data.parent_id  the id of the driving input record it is made from (the stage's first input)
    data.variant    {template, model, replicate}: which catalog template, which model, which sample

and whose record id is the id to make. The runner then fans each driving input out to its rows, in the
table's order, instead of the Cartesian product of `variants`; the stage's `variants` still say which
templates exist (file, generator, parser). Nothing here knows who builds the table (DayDreaming's
`cohort_membership` operation does: pipelines/daydreaming/membership.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pocketguide.engine.inputs import read_stage
from pocketguide.engine.store import StageStore


@dataclass
class Member:
    id: str
    variant: dict[str, Any]


@dataclass
class Members:
    """One stage's rows, by parent id, in table order."""

    table: str
    by_parent: dict[str, list[Member]] = field(default_factory=dict)
    count: int = 0

    def of(self, parent_id: str) -> list[Member]:
        return self.by_parent.get(parent_id, [])


def member_index(store: StageStore, stage: str) -> Members:
    """The rows of `store` (a membership table) that belong to `stage`."""
    members = Members(store.stage)
    for up in read_stage(store):
        data = up.record.get("data") or {}
        if data.get("stage") != stage or data.get("parent_id") is None:
            continue
        members.by_parent.setdefault(str(data["parent_id"]), []).append(
            Member(str(up.record["id"]), dict(data.get("variant") or {})))
        members.count += 1
    return members
