"""What a train stage shows in `pocketguide report`: the loss curve, base vs fine-tuned, a few generations
side by side. Read from the stage folder (metrics.jsonl, eval_report.json, stats.json); no torch."""

from __future__ import annotations

from typing import Any

from pocketguide.engine.sections import lines, pairs, section, table
from pocketguide.engine.store import iter_jsonl, read_json
from pocketguide.training.coverage import missing_line
from pocketguide.training.evaluate import RATE_KEYS
from pocketguide.training.trainer import METRICS

SIDE_BY_SIDE = 4


def training_section(pipe: Any, spec: Any, store_of: Any) -> dict[str, Any] | None:
    store = store_of(spec.name)
    history = list(iter_jsonl(store.dir / METRICS))
    stats = store.stats() or {}
    training = stats.get("training") or {}
    report = read_json(store.dir / "eval_report.json")
    if not (history or report or training):
        return None
    blocks, notes = [], []
    if training.get("skipped"):
        notes.append(f"training skipped: {training['skipped']}")
    if history:
        train = [[r["step"], r["loss"]] for r in history if r.get("loss") is not None]
        val = [[r["step"], r["val_loss"]] for r in history if r.get("val_loss") is not None]
        blocks.append(lines("loss per optimizer step", [{"name": "train loss", "points": train},
                                                        {"name": "val loss", "points": val}], "step", "loss"))
    if report:
        blocks += _eval_blocks(report, _prompts(spec, store_of, report))
        notes += list(report.get("notes") or [])
    missing = missing_line(stats.get("coverage") or {})  # payload types absent from the training data / suite
    if missing and missing not in notes:
        notes.append(missing)
    facts = {k: training.get(k) for k in ("steps", "total_steps", "best_step", "first_loss", "last_loss",
                                          "best_val_loss", "n_train", "n_val", "device", "mean_step_s",
                                          "peak_rss_mb") if training.get(k) is not None}
    return section(f"Training: {spec.name}", spec.name, facts=facts, blocks=blocks, notes=notes)


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def _eval_blocks(report: dict[str, Any], prompts: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for model, modes in (report.get("summary") or {}).items():
        for mode, m in modes.items():
            gates = ", ".join(f"{g} {_pct(v)}" for g, v in (m.get("gate_pass_rates") or {}).items()) or "–"
            rows.append([model, mode, m.get("n"), *(_pct(m.get(f"{k}_rate")) for k in RATE_KEYS),
                         m.get("mean_latency_s"), gates])
    title = (f"base vs fine-tuned on {report.get('n_examples')} eval-suite prompts "
             f"(greedy, max_new_tokens {report.get('max_new_tokens')})")
    blocks = [table(title, ["model", "mode", "n", *(k.replace("_", "-") for k in RATE_KEYS), "mean latency s", "gates"],
                    rows)]
    gains = report.get("gain_points") or {}
    if gains:
        keys = sorted({k for g in gains.values() for k in g})
        blocks.append(table("tuned minus base (percentage points)", ["mode", *keys],
                            [[mode, *(g.get(k) for k in keys)] for mode, g in gains.items()]))
    side = _side_by_side(report, prompts)
    if side:
        blocks.append(side)
    return blocks


def _side_by_side(report: dict[str, Any], prompts: dict[str, str]) -> dict[str, Any] | None:
    """A few prompts answered by the base and the tuned model in the same mode; disagreements first."""
    modes = report.get("modes") or []
    if not modes:
        return None
    mode = modes[0]
    by: dict[tuple[str, str], dict[str, Any]] = {}
    for r in report.get("examples") or []:
        if r.get("mode") == mode:
            by[(str(r.get("id")), str(r.get("model")))] = r
    ids = sorted({i for i, m in by if m == "base" and (i, "tuned") in by})
    ids.sort(key=lambda i: by[(i, "base")].get("schema_valid") == by[(i, "tuned")].get("schema_valid"))
    items = []
    for i in ids[:SIDE_BY_SIDE]:
        base, tuned = by[(i, "base")], by[(i, "tuned")]
        items.append({"head": f"{i} · {base.get('payload_type')}", "sub": prompts.get(i, ""),
                      "texts": [str(base.get("output") or ""), str(tuned.get("output") or "")],
                      "marks": [_mark(base), _mark(tuned)]})
    return pairs(f"side by side ({mode} decoding)", ["base", "fine-tuned"], items) if items else None


def _mark(row: dict[str, Any]) -> str:
    return "schema-valid" if row.get("schema_valid") else (row.get("error") or "not schema-valid")


def _prompts(spec: Any, store_of: Any, report: dict[str, Any]) -> dict[str, str]:
    """The user prompt of each evaluated suite record, from the eval suite stage (when it is an input)."""
    suite = ((spec.options or {}).get("eval") or {}).get("suite")
    if not suite or suite not in spec.inputs:
        return {}
    out = {}
    for rec in store_of(suite).accepted():
        messages = (rec.get("parsed") or {}).get("messages") if isinstance(rec.get("parsed"), dict) else None
        users = [m.get("content") for m in messages or [] if isinstance(m, dict) and m.get("role") == "user"]
        if users:
            out[str(rec.get("id"))] = str(users[-1])
    return out
