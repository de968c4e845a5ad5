"""Rich progress bars and tables. Only the CLI uses this module; the library never prints."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

console = Console(stderr=True)
out = Console()


class RichProgress:
    """A live bar per stage: rate, ETA, accepted / rejected counts, tokens/s and cost when known."""

    def __init__(self) -> None:
        self.progress = Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>8}"), TextColumn("[green]✓{task.fields[ok]}[/] [red]✗{task.fields[bad]}[/]"),
            TextColumn("{task.fields[extra]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=console, transient=False,
        )
        self.tasks: dict[str, Any] = {}
        self.counts: dict[str, list[float]] = {}

    def __enter__(self) -> "RichProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def stage_started(self, stage: str, total: int | None, already_done: int) -> None:
        label = stage + (f" (resuming, {already_done} done)" if already_done else "")
        self.tasks[stage] = self.progress.add_task(label, total=total, rate="", ok=0, bad=0, extra="")
        self.counts[stage] = [0, 0, time.monotonic(), 0, 0.0]

    def record_done(self, stage: str, record: dict[str, Any]) -> None:
        c = self.counts.get(stage)
        if c is None:
            self.stage_started(stage, None, 0)
            c = self.counts[stage]
        c[0 if record.get("status") == "accepted" else 1] += 1
        t = record.get("teacher") or {}
        c[3] += int((t.get("usage") or {}).get("completion_tokens") or 0)
        c[4] += float(t.get("cost") or 0.0)
        n = c[0] + c[1]
        if n % 64 and n > 64:
            self.progress.advance(self.tasks[stage])
            return
        elapsed = max(1e-6, time.monotonic() - c[2])
        extra = f"{c[3] / elapsed:.0f} tok/s" if c[3] else ""
        if c[4]:
            extra += f" ${c[4]:.4f}"
        self.progress.update(self.tasks[stage], advance=1, ok=int(c[0]), bad=int(c[1]), rate=f"{n / elapsed:.1f}/s",
                             extra=extra)

    def stage_finished(self, stage: str, result: Any) -> None:
        if stage in self.tasks:
            c = self.counts[stage]
            task = self.tasks[stage]
            done = int(c[0] + c[1])
            self.progress.update(task, total=done, completed=done, ok=int(c[0]), bad=int(c[1]))

    def message(self, text: str) -> None:
        self.progress.console.print(f"[dim]{text}[/]")


def summary_table(results: list[Any]) -> Table:
    """Counts only, so it fits 80 columns; the reasons and notes are printed below it (summary_notes)."""
    t = Table(title="run summary")
    t.add_column("stage", overflow="fold")
    for col in ("new ✓", "new ✗", "skip", "✓", "✗"):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("time", justify="right", no_wrap=True)
    t.add_column("state", overflow="fold")
    for r in results:
        t.add_row(r.stage, str(r.new_accepted), str(r.new_rejected), str(r.skipped_done), str(r.accepted),
                  str(r.rejected), f"{r.elapsed_s:.1f}s", _state(r))
    return t


def _state(r: Any) -> str:
    if r.stopped:
        state = "stopped"
    elif getattr(r, "note", None):
        state = r.note.split(":", 1)[0]  # e.g. "skipped"; the whole note is printed below the table
    else:
        state = "complete" if r.complete else f"{r.pending} pending"
    return state + (" (dry)" if r.dry_run else "")


def summary_notes(results: list[Any], top: int = 3) -> list[str]:
    """Below the table, one line each, never cut: the top rejection reasons per stage, then every note."""
    lines = []
    for r in results:
        reasons = list((r.stats.get("rejection_reasons") or {}).items())
        for code, n in reasons[:top]:
            lines.append(f"  {r.stage}: {code} × {n}")
        if len(reasons) > top:
            rest = sum(n for _, n in reasons[top:])
            lines.append(f"  {r.stage}: … {len(reasons) - top} more reasons ({rest} in all); `pocketguide report` "
                         f"lists them")
    if lines:
        lines.insert(0, "top rejection reasons:")
    return lines + notes(results)


def notes(results: list[Any]) -> list[str]:
    out = []
    for r in results:
        if getattr(r, "superseded", 0):
            what = ", ".join(f"{n} {why}" for why, n in sorted(r.redo.items()))
            line = f"{r.stage}: {r.superseded} earlier records set aside to superseded.jsonl ({what})"
            if r.rejudged:
                line += f"; {r.rejudged} re-judged from their stored output (no teacher call)"
            out.append(line + (f"; changed: {', '.join(r.changed)}" if r.changed else ""))
        elif getattr(r, "changed", None) and (r.new_accepted or r.new_rejected):
            out.append(f"{r.stage}: redone, changed since its last run: {', '.join(r.changed)}")
        if getattr(r, "note", None):
            out.append(f"{r.stage}: {r.note}")
    out += [f"{r.stage}: {line}" for r in results if (line := flow_note(r.stats))]
    threads = threads_line(results)
    return out + ([threads] if threads else [])


def threads_line(results: list[Any]) -> str | None:
    """Which CPU threads each kind of work ran on, and where that number came from."""
    import os

    used: dict[str, list[str]] = {}
    for r in results:
        t = getattr(r, "teacher", None) or {}
        if t.get("threads"):
            used.setdefault(f"llama.cpp {t['threads']} ({t.get('model')})", []).append(r.stage)
        n = ((r.stats or {}).get("training") or {}).get("threads")
        if n:
            used.setdefault(f"torch {n}", []).append(r.stage)
    if not used:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return ("threads: " + "; ".join(f"{', '.join(stages)}: {what}" for what, stages in used.items())
            + f" — this process may use {cores} cores (--threads N overrides)")


_ACTIONS = {"gen": "regenerate", "judge": "re-judge from the stored output, no teacher call",
            "stats": "stats only, recounted on the next run"}
_CONTENT = ("template ", "schema ", "decoding schema ", "file ", "source ", "input ")


def _change_text(label: str, c: dict[str, Any]) -> str:
    import json

    if c["kind"] != "changed":
        return c["kind"]
    if "files" in c:
        return "content of " + (", ".join(c["files"]) or "a file they read")
    if label.startswith(_CONTENT):
        return "content changed"
    if label.endswith(" code"):
        return f"code changed ({(c.get('new') or {}).get('module')})"
    old, new = c.get("old"), c.get("new")
    if isinstance(old, dict) and isinstance(new, dict) and "hash" not in old and "hash" not in new:
        keys = [k for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)]
        return ", ".join(f"{k}: {json.dumps(old.get(k))} → {json.dumps(new.get(k))}" for k in keys)
    return f"{json.dumps(old)} → {json.dumps(new)}"


def explain_stage(s: Any) -> None:
    """`pocketguide status --explain STAGE`: what changed, what a rerun redoes, the last runs."""
    state = "stale" if s.stale else "done" if s.complete else "partial" if s.ran else "not run"
    out.print(f"[bold]{s.name}[/] ({s.kind}): {state}, {s.accepted} accepted, {s.rejected} rejected")
    if s.changes:
        out.print("changed since its last run:")
        for label, c in s.changes.items():
            n = s.records_by_change.get(label)
            count = f" — {n} record{'s' if n != 1 else ''}" if n else ""
            out.print(f"  {label}: {_change_text(label, c)}{count} → {_ACTIONS.get(c['side'], c['side'])}",
                      markup=False, highlight=False)
    for line in s.reasons:
        if not any(line.startswith(label) for label in s.changes):
            out.print(f"  {line}", markup=False, highlight=False)
    if s.redo:
        out.print("a rerun: " + ", ".join(f"{why} {n}" for why, n in s.redo.items()), markup=False)
    if s.pending:
        out.print(f"{s.pending} records not made yet (a --limit or a stop); a rerun makes them")
    if s.downstream:
        out.print("then stale downstream: " + ", ".join(s.downstream))
    if s.history:
        t = Table(title="recent runs")
        for col in ("finished", "✓", "✗", "new", "re-judged", "set aside", "changed"):
            t.add_column(col, overflow="fold")
        for h in s.history[-10:]:
            run, counts = h.get("run") or {}, h.get("counts") or {}
            t.add_row(str(h.get("finished_at") or ""), str(counts.get("accepted", "")), str(counts.get("rejected", "")),
                      str((run.get("new_accepted") or 0) + (run.get("new_rejected") or 0)), str(run.get("rejudged", "")),
                      str(run.get("superseded", "")), ", ".join(h.get("changed") or []))
        out.print(t)


def flow_note(stats: dict[str, Any]) -> str | None:
    """What rate limits did to a stage's requests (stats.teacher.flow), in one line; None if nothing."""
    f = (stats.get("teacher") or {}).get("flow") or {}
    if not (f.get("rate_limited") or f.get("paused_s") or f.get("paced_s", 0) >= 1):
        return None
    parts = []
    if f.get("paced_s", 0) >= 1:
        limits = ", ".join(f"{v:g} {k.replace('_', ' ')}/min" for k, v in (f.get("limits_per_minute") or {}).items())
        parts.append(f"paced at {limits or 'the limits'} (requests waited {f['paced_s']:.1f}s in all)")
    if f.get("rate_limited"):
        parts.append(f"{f['rate_limited']} answers were 429 ({f.get('retry_after_waits', 0)} retried after the "
                     f"server's Retry-After, {f.get('retry_after_wait_s', 0):.1f}s of waiting in all)")
    if f.get("paused_s"):
        why = "; ".join(f"{reason}: {p['pauses']}× {p['seconds']:.1f}s" for reason, p in f["pauses"].items())
        parts.append(f"traffic to the model paused {f['paused_s']:.1f}s in all ({why})")
    elif f.get("rate_limited"):
        parts.append("no pause: the limit was not shared")
    if f.get("concurrency_cuts"):
        parts.append(f"in-flight cap cut {f['concurrency_cuts']}×")
    return "rate limits: " + "; ".join(parts)
