"""The shape of what an operation adds to the HTML run report (`registry.report_section`), as plain JSON;
the report itself lives in pocketguide/report/.

A section is `{"title", "stage", "facts": {label: value}, "blocks": [...], "notes": [...]}`; each block
has a `kind` the page knows how to draw, whatever operation made it:

* `table`: `columns` and `rows` (lists of cells);
* `bars`: `items` of `{label, value, lo?, hi?, n?}` on a scale from 0 to `max_value` (whiskers lo–hi);
* `lines`: `series` of `{name, points: [[x, y], ...]}` with axis labels;
* `pairs`: texts side by side, `labels` (one per column) and `items` of `{head, sub?, texts, marks?}`.

Every value is data: the page writes it as text, never as markup."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def section(title: str, stage: str, *, facts: dict[str, Any] | None = None, blocks: Iterable[dict[str, Any]] = (),
            notes: Iterable[str] = ()) -> dict[str, Any]:
    return {"title": title, "stage": stage, "facts": dict(facts or {}), "blocks": list(blocks), "notes": list(notes)}


def table(title: str, columns: list[str], rows: Iterable[Iterable[Any]]) -> dict[str, Any]:
    return {"kind": "table", "title": title, "columns": list(columns), "rows": [list(r) for r in rows]}


def table_of(title: str, dict_rows: list[dict[str, Any]], columns: list[str] | None = None) -> dict[str, Any]:
    """A table from a list of dicts; the columns default to every key, in first-seen order."""
    cols: list[str] = list(columns or [])
    if not cols:
        for r in dict_rows:
            cols += [k for k in r if k not in cols]
    return table(title, cols, ([r.get(c) for c in cols] for r in dict_rows))


def bars(title: str, items: list[dict[str, Any]], max_value: float | None = None, unit: str = "") -> dict[str, Any]:
    return {"kind": "bars", "title": title, "items": items, "max_value": max_value, "unit": unit}


def lines(title: str, series: list[dict[str, Any]], x_label: str, y_label: str) -> dict[str, Any]:
    return {"kind": "lines", "title": title, "series": series, "x_label": x_label, "y_label": y_label}


def pairs(title: str, labels: list[str], items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": "pairs", "title": title, "labels": labels, "items": items}
