"""Aggregate per-example eval rows into rates, and render them as Markdown.
Pure functions of the rows, so a reader (or a test) can recompute every number from the report."""

from __future__ import annotations

from typing import Any

from pocketguide.training.coverage import markdown_lines
from pocketguide.training.evaluate import RATE_KEYS

#: content gates reported as "of parsed answers" rates, with the label the report uses and whether a pass is
#: the good outcome (a "placeholders" rate counts failures)
CONTENT = (("destination_named", "destination named", True), ("no_placeholders", "placeholders", False),
           ("no_repeated_items", "repeated items", False), ("critic_checks", "passes every critic check", True))


def _rate(rows: list[dict[str, Any]], pred: Any) -> float | None:
    return round(sum(1 for r in rows if pred(r)) / len(rows), 4) if rows else None


def _rates(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    out: dict[str, Any] = {"n": n}
    for k in RATE_KEYS:
        out[f"{k}_rate"] = _rate(rows, lambda r, k=k: r.get(k))
    out["mean_latency_s"] = round(sum(r["latency_s"] for r in rows) / n, 3) if n else None
    out["mean_new_tokens"] = round(sum(r["new_tokens"] for r in rows) / n, 1) if n else None
    out["mean_chars"] = round(sum(r.get("chars", len(r.get("output") or "")) for r in rows) / n, 1) if n else None
    gate_names = sorted({g for r in rows for g in r.get("gates") or {}})
    # a gate pass rate is over every example: an unparsed answer did not pass any gate
    out["gate_pass_rates"] = {g: _rate(rows, lambda r, g=g: (r.get("gates") or {}).get(g)) for g in gate_names}
    # content is judged on the answers that are JSON objects at all (else it measures the format twice)
    parsed = [r for r in rows if r.get("parsed")]
    out["n_parsed"] = len(parsed)
    out["content_of_parsed"] = {g: _rate(parsed, lambda r, g=g: (r.get("gates") or {}).get(g)) for g in gate_names}
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


def _content_cell(m: dict[str, Any], gate: str, good: bool) -> str:
    v = (m.get("content_of_parsed") or {}).get(gate)
    return _pct(v if v is None or good else 1 - v)


def _suite_tables(s: dict[str, Any], types: list[str]) -> list[str]:
    header = ("| model | mode | n | parsed | envelope-valid | payload-valid | schema-valid | finished | mean tokens | "
              "mean chars |")
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|"]
    for model, modes in s.items():
        for mode, m in modes.items():
            lines.append(f"| {model} | {mode} | {m['n']} | {_pct(m['parsed_rate'])} | {_pct(m['envelope_valid_rate'])} | "
                         f"{_pct(m['payload_valid_rate'])} | **{_pct(m['schema_valid_rate'])}** | "
                         f"{_pct(m['finished_rate'])} | {m['mean_new_tokens']} | {m['mean_chars']} |")
    content = ("Content, of the answers that parse as JSON objects (placeholders and repeated items: share of "
               "answers that have them):")
    lines += ["", content, "",
              "| model | mode | parsed | " + " | ".join(label for _, label, _ in CONTENT) + " |",
              "|---|---|---|" + "---|" * len(CONTENT)]
    for model, modes in s.items():
        for mode, m in modes.items():
            cells = [_content_cell(m, g, good) for g, _, good in CONTENT]
            lines.append(f"| {model} | {mode} | {m.get('n_parsed', '–')} | " + " | ".join(cells) + " |")
    lines += ["", "Gate pass rates, over all answers (an answer that does not parse passes no gate):", "",
              "| model | mode | gates |", "|---|---|---|"]
    for model, modes in s.items():
        for mode, m in modes.items():
            gates = ", ".join(f"{g} {_pct(v)}" for g, v in m["gate_pass_rates"].items()) or "–"
            lines.append(f"| {model} | {mode} | {gates} |")
    lines += ["", "Schema-valid by payload type (finished rate in brackets):", "", "| model | mode | " + " | ".join(types) + " |",
              "|---|---|" + "---|" * len(types)]
    for model, modes in s.items():
        for mode, m in modes.items():
            cells = [_valid_and_finished(m["by_payload_type"].get(t) or {}) for t in types]
            lines.append(f"| {model} | {mode} | " + " | ".join(cells) + " |")
    return lines


def learned(report: dict[str, Any]) -> list[str]:
    """What the numbers say the student learned (the contract) and did not (facts), in plain words."""
    s, n, suite = report["summary"], report["n_examples"], report["headline_suite"]
    mode = "unconstrained" if "unconstrained" in report["modes"] else report["modes"][0]
    base, tuned = (s.get("base") or {}).get(mode) or {}, (s.get("tuned") or {}).get(mode) or {}
    teacher = report.get("teacher") or {}
    who = f"{teacher.get('provider', '?')} teacher ({teacher.get('model') or 'its default model'})"
    c = tuned.get("content_of_parsed") or {}
    facts = [f"{label} {_pct(c.get(g) if good or c.get(g) is None else 1 - c.get(g))}" for g, label, good in CONTENT
             if g in c]
    t_rate, b_rate = tuned.get("schema_valid_rate"), base.get("schema_valid_rate")
    gained = t_rate is not None and (b_rate is None or t_rate > b_rate)
    head = "Learned: the contract." if gained and t_rate >= 0.5 else \
        "Learned some of the contract." if gained else "Not learned: the contract."
    learned_line = (f"- **{head}** Answering freely ({mode}), the fine-tuned student's answers are "
                    f"one schema-valid JSON envelope {_pct(t_rate)} of the time, the base "
                    f"model's {_pct(b_rate)}, on {n} '{suite}' prompts that were never used "
                    f"for training.")
    facts_line = (f"- **Not learned: facts.** The training answers came from the {who} and are only as true as it "
                  f"is. Of the student's parsed answers: {', '.join(facts) or 'no content gates ran'}. No check here "
                  f"can tell whether a place, price, time or rule in an answer is real: the deterministic critic "
                  f"removes placeholders, copies, repetition, invented links and missing caveats, not invented facts.")
    return [learned_line, facts_line]


def markdown(report: dict[str, Any]) -> str:
    head = report["headline_suite"]
    chosen = f" ({report['max_new_tokens_chosen']})" if report.get("max_new_tokens_chosen") else ""
    rep = report.get("unconstrained_repetition")
    decoding = "greedy" + (f"; unconstrained rows of both models with the teacher's repetition control: {rep}"
                           if rep else "")
    lines = [f"# Student evaluation: base vs fine-tuned (max_new_tokens {report['max_new_tokens']}{chosen}, {decoding})",
             "",
             "## What the student learned", "", *learned(report), ""]
    for name, sub in report["suites"].items():
        kind = "reference answers from the test split" if sub.get("reference_based") else \
            "held-out plan prompts, no reference answers"
        lines += [f"## Suite '{name}'{' (headline)' if name == head else ''}: {sub['n_examples']} prompts, {kind}", ""]
        lines += _suite_tables(sub["summary"], sub["payload_types"])
        if sub.get("gain_points"):
            lines += ["", "Tuned minus base (percentage points):", ""]
            for mode, g in sub["gain_points"].items():
                finished = f", finished {g['finished_rate']:+.1f}" if "finished_rate" in g else ""
                lines.append(f"- {mode}: schema-valid {g['schema_valid_rate']:+.1f}, parsed {g['parsed_rate']:+.1f}"
                             f"{finished}")
        lines.append("")
    lines += markdown_lines(report.get("coverage"))[1:] + ([""] if report.get("coverage") else [])
    if report.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"
