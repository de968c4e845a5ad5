"""Aggregate per-example eval rows into rates, and render them as a Markdown table.
Pure functions of the rows, so a reader (or a test) can recompute every number from the report."""

from __future__ import annotations

from typing import Any

from pocketguide.training.coverage import markdown_lines
from pocketguide.training.evaluate import RATE_KEYS


def _rates(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    out: dict[str, Any] = {"n": n}
    for k in RATE_KEYS:
        out[f"{k}_rate"] = round(sum(1 for r in rows if r.get(k)) / n, 4) if n else None
    out["mean_latency_s"] = round(sum(r["latency_s"] for r in rows) / n, 3) if n else None
    out["mean_new_tokens"] = round(sum(r["new_tokens"] for r in rows) / n, 1) if n else None
    gate_names = sorted({g for r in rows for g in r.get("gates") or {}})
    # a gate pass rate is over every example: an unparsed answer did not pass any gate
    out["gate_pass_rates"] = {g: round(sum(1 for r in rows if (r.get("gates") or {}).get(g)) / n, 4)
                              for g in gate_names} if n else {}
    return out


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """{model: {mode: {overall rates..., by_payload_type: {type: rates}}}}."""
    out: dict[str, Any] = {}
    for r in rows:
        out.setdefault(r["model"], {}).setdefault(r["mode"], None)
    for model, modes in out.items():
        for mode in modes:
            sel = [r for r in rows if r["model"] == model and r["mode"] == mode]
            types = sorted({str(r["payload_type"]) for r in sel})
            modes[mode] = {**_rates(sel),
                           "by_payload_type": {t: _rates([r for r in sel if str(r["payload_type"]) == t]) for t in types}}
    return out


def gains(summary: dict[str, Any]) -> dict[str, Any]:
    """Tuned minus base, in percentage points, per mode (the headline numbers)."""
    out = {}
    base, tuned = summary.get("base") or {}, summary.get("tuned") or {}
    for mode in sorted(set(base) & set(tuned)):
        out[mode] = {k: round(100 * ((tuned[mode][k] or 0) - (base[mode][k] or 0)), 1)
                     for k in ("schema_valid_rate", "parsed_rate", "envelope_valid_rate", "payload_valid_rate",
                           "finished_rate")}
    return out


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _valid_and_finished(rates: dict[str, Any]) -> str:
    """'40% (90%)': schema-valid, and in brackets how many answers ended before the token cap."""
    return f"{_pct(rates.get('schema_valid_rate'))} ({_pct(rates.get('finished_rate'))})"


def markdown(report: dict[str, Any]) -> str:
    s = report["summary"]
    chosen = f" ({report['max_new_tokens_chosen']})" if report.get("max_new_tokens_chosen") else ""
    title = (f"# Student evaluation ({report['n_examples']} eval-suite prompts, max_new_tokens "
             f"{report['max_new_tokens']}{chosen}, greedy)")
    header = ("| model | mode | n | parsed | envelope-valid | payload-valid | schema-valid | finished | "
              "mean latency (s) | gates |")
    lines = [title, "", header,
             "|---|---|---|---|---|---|---|---|---|---|"]
    for model, modes in s.items():
        for mode, m in modes.items():
            gates = ", ".join(f"{g} {_pct(v)}" for g, v in m["gate_pass_rates"].items()) or "–"
            lines.append(f"| {model} | {mode} | {m['n']} | {_pct(m['parsed_rate'])} | {_pct(m['envelope_valid_rate'])} | "
                         f"{_pct(m['payload_valid_rate'])} | {_pct(m['schema_valid_rate'])} | "
                         f"{_pct(m['finished_rate'])} | {m['mean_latency_s']} | {gates} |")
    lines += ["", "## Schema-valid rate by payload type (finished rate in brackets)", "", "| model | mode | " +
              " | ".join(report["payload_types"]) + " |", "|---|---|" + "---|" * len(report["payload_types"])]
    for model, modes in s.items():
        for mode, m in modes.items():
            cells = [_valid_and_finished(m["by_payload_type"].get(t) or {}) for t in report["payload_types"]]
            lines.append(f"| {model} | {mode} | " + " | ".join(cells) + " |")
    lines += markdown_lines(report.get("coverage"))
    if report.get("gain_points"):
        lines += ["", "## Tuned minus base (percentage points)", ""]
        for mode, g in report["gain_points"].items():
            lines.append(f"- {mode}: schema-valid {g['schema_valid_rate']:+.1f}, parsed {g['parsed_rate']:+.1f}, "
                         f"finished {g['finished_rate']:+.1f}")
    if report.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"
