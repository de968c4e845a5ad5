"""The before/after evaluation of a trained adapter over one or more eval suites, and the report files.

Each suite is scored on its own. The first suite with records is the headline (by default the held-out
plan prompts, which do not depend on how many drafts survived); a reference-based suite (the test split's
SFT records) follows when there is one. Constrained mode decodes like the teacher: the schema the named
stage sends its teacher, capped the same way, with the teacher's repeat penalty."""

from __future__ import annotations

import contextlib
import importlib.util
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pocketguide.engine.session import resolved_teacher
from pocketguide.engine.teacher_spec import TeacherSettings
from pocketguide.teachers.generator import SCHEMA_FIELD
from pocketguide.teachers.structured import decoding_profile as teacher_profile
from pocketguide.teachers.structured import model_schema
from pocketguide.training.config import TrainConfig
from pocketguide.training.coverage import coverage, expected_types, missing_line
from pocketguide.training.dry import Dry
from pocketguide.training.evaluate import stratified_first, suite_items
from pocketguide.training.generate import Generator, RepeatPenalty, Repetition
from pocketguide.training.lengths import distribution, generation_cap
from pocketguide.training.model import TrainingError
from pocketguide.training.report import gains, markdown, summarize
from pocketguide.training.trainer import BEST, FINAL


def _load_adapter_weights(model: Any, adapter_dir: Path) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(adapter_dir / "adapter_model.safetensors")))


def decoding_profile(pipe: Any, cfg: TrainConfig, types: list[str], overrides: TeacherSettings | None,
                     tok: Any = None) -> tuple[dict[str, dict[str, Any]], Repetition | None, str | None]:
    """(schema per payload type, repetition control, a note): exactly what the decoding stage's teacher is sent
    (the same caps, fitted to the teacher's own max_tokens), its repeat penalty and, given the tokenizer, its
    DRY sampler (teacher.extra_body dry_*)."""
    ecfg = cfg.eval
    if not ecfg.decoding_stage:
        return {}, None, None
    stage = pipe.stage(ecfg.decoding_stage)
    settings = resolved_teacher(pipe.spec.pipeline.teacher, stage, overrides)
    compact = stage.response_schema and teacher_profile(settings) == "compact"
    pattern = stage.response_schema if compact else stage.schema_  # what the teacher generator sends
    if not pattern:
        raise TrainingError(f"options.eval.decoding_stage: stage '{stage.name}' has no schema or response_schema — "
                            f"name the stage that drafts envelopes, or set decoding_stage: null")
    out = {}
    for ptype in types:
        rel = SCHEMA_FIELD.sub(lambda m, t=ptype: t if m.group(1) == "payload_type" else m.group(0), pattern)
        path = pipe.resolve(rel)
        if not path.exists():
            raise TrainingError(f"options.eval.decoding_stage: {path} not found for payload type {ptype}")
        out[ptype] = model_schema(settings, json.loads(path.read_text()))
    last_n = settings.repeat_last_n or 64  # llama.cpp's default window; -1 = the whole context
    last_n = 1 << 30 if last_n < 0 else last_n
    repeat = RepeatPenalty(settings.repeat_penalty, last_n) if settings.repeat_penalty else None
    extra = settings.extra_body or {}
    dry = Dry.from_settings(extra, tok) if tok is not None else None
    control = Repetition(repeat, dry) if repeat or dry else None
    has_dry = float(extra.get("dry_multiplier") or 0) > 0
    note = (f"constrained = the {teacher_profile(settings)} decoding profile of stage '{stage.name}' ({pattern}, "
            f"capped as its {settings.provider or 'openai'} teacher caps it for max_tokens {settings.max_tokens})"
            + (f", {control.describe()}" if control else ", no repetition control") + ", compact whitespace"
            + ("; the teacher's DRY sampler (extra_body dry_*) is not reproduced: no tokenizer given"
               if has_dry and dry is None else ""))
    return out, control, note


def unconstrained_control(teacher: Repetition | None, which: str) -> Repetition | None:
    """What unconstrained rows decode with: nothing, the teacher's DRY alone, or all of its control."""
    if teacher is None or which == "none":
        return None
    if which == "dry":
        return Repetition(None, teacher.dry) if teacher.dry is not None else None
    return teacher


@dataclass
class _Suite:
    name: str
    items: list[Any]  # the usable records, up to eval.limit
    notes: list[str]
    present: Counter  # payload types of all its usable records, for the report's coverage


def _suite(name: str, records: list[dict[str, Any]], cfg: TrainConfig) -> _Suite:
    items, bad = suite_items(records, cfg.eval.system_prompt)
    present = Counter(str(i.payload_type) for i in items)
    if cfg.eval.limit:
        items = items[:cfg.eval.limit]
    if not items:
        raise TrainingError("the eval suite has no usable records (parsed.messages with a user prompt)")
    for it in items:
        it.suite = name
    return _Suite(name, items, [f"suite record {r.get('id')} skipped: {code}" for r, code, _ in bad], present)


def _decode_suites(pipe: Any, cfg: TrainConfig, suites: list[_Suite], model: Any, gen: Generator, modes: list[str],
                   overrides: TeacherSettings | None, message: Callable[[str], None] | None
                   ) -> tuple[dict[str, list[dict[str, Any]]], Any, Repetition | None, list[str]]:
    """Every suite's prompts decoded together, one batch per (model, mode) where batch_size allows (a short
    suite no longer pays its own tail of lone decoding steps): rows per suite, the schemas, the unconstrained
    repetition control and the decoding notes."""
    from pocketguide.training.evaluate import Schemas, evaluate

    ecfg = cfg.eval
    items = [it for s in suites for it in s.items]
    types = sorted({i.payload_type for i in items if i.payload_type})
    schemas = Schemas.load(pipe.resolve(ecfg.envelope_schema), pipe.resolve(ecfg.payload_schemas), types)
    notes: list[str] = []
    penalty = None
    if "constrained" in modes or ecfg.unconstrained_repetition != "none":
        schemas.decoding, penalty, note = decoding_profile(pipe, cfg, types, overrides, gen.tok)
        if "constrained" in modes:
            notes.append(note or "constrained = xgrammar JSON-schema grammar of the full contract (envelope with the "
                                 "expected payload type's schema), compact whitespace, no repeat penalty")
    free = unconstrained_control(penalty, ecfg.unconstrained_repetition)
    contexts = {"base": model.disable_adapter, "tuned": contextlib.nullcontext}
    constrained = [it for s in suites for it in stratified_first(s.items, ecfg.constrained_limit)]
    rows = evaluate({m: contexts[m] for m in ecfg.models}, gen, items, schemas, modes, ecfg.batch_size,
                    list(ecfg.gates), on_batch=message, penalty=penalty, root=pipe.root, notes=notes,
                    unconstrained=free, constrained_items=constrained)
    per_suite: dict[str, list[dict[str, Any]]] = {s.name: [] for s in suites}
    for row in rows:
        per_suite[row.pop("suite")].append(row)
    return per_suite, schemas, free, notes


def _suite_report(suite: _Suite, cfg: TrainConfig, rows: list[dict[str, Any]], schemas: Any, modes: list[str],
                  free: Repetition | None) -> tuple[dict[str, Any], list[str]]:
    ecfg, notes = cfg.eval, list(suite.notes)
    if ecfg.unconstrained_repetition != "none" and "unconstrained" in modes:
        notes.append(f"unconstrained rows (both models) decode with stage '{ecfg.decoding_stage}''s teacher's "
                     + (free.describe() if free else f"{ecfg.unconstrained_repetition} repetition control: it has "
                        f"none, so none") + f" (options.eval.unconstrained_repetition: {ecfg.unconstrained_repetition})")
    if "constrained" in modes and ecfg.constrained_limit and ecfg.constrained_limit < len(suite.items):
        sub = Counter(str(i.payload_type) for i in stratified_first(suite.items, ecfg.constrained_limit))
        notes.append(f"constrained mode answered {sum(sub.values())} of the {len(suite.items)} prompts (options.eval."
                     f"constrained_limit {ecfg.constrained_limit}: the first of each payload type in turn — "
                     + ", ".join(f"{t} {k}" for t, k in sorted(sub.items()))
                     + "); unconstrained answered all of them and is the headline")
    types = sorted({i.payload_type for i in suite.items if i.payload_type})
    summary = summarize(rows)
    return {"n_examples": len(suite.items), "reference_based": any(i.reference is not None for i in suite.items),
            "payload_types": types, "schemas": {k: v for k, v in schemas.paths.items() if k == "envelope" or k in types},
            "summary": summary, "gain_points": gains(summary),
            "unconstrained_repetition": free.describe() if free else None,
            "examples": rows}, notes


def evaluate_model(pipe: Any, cfg: TrainConfig, suites: list[tuple[str, list[dict[str, Any]]]], model: Any, tok: Any,
                   device: Any, base: Any, stage_dir: Path, message: Callable[[str], None] | None = None,
                   teacher: dict[str, Any] | None = None, overrides: TeacherSettings | None = None,
                   fallback_targets: list[int] | None = None, train_types: dict[str, int] | None = None
                   ) -> dict[str, Any]:
    """`model` is a peft model; the base answers with the adapter disabled, the student with the chosen one.
    The generation cap (eval.max_new_tokens null) follows the suites' reference answers, else
    `fallback_targets` (the training targets); `train_types` (payload type → training records) joins the
    suites in the report's coverage of the contract's payload types."""
    ecfg = cfg.eval
    modes, notes = list(ecfg.modes), []
    if "constrained" in modes and importlib.util.find_spec("xgrammar") is None:
        modes.remove("constrained")  # report it, rather than lose the training run's evaluation
        notes.append("constrained mode skipped: xgrammar is not installed — pip install --no-deps xgrammar==0.2.8 "
                     "apache-tvm-ffi==0.1.15.post2")
    adapter_dir = stage_dir / (BEST if ecfg.adapter == "best" and (stage_dir / BEST).exists() else FINAL)
    _load_adapter_weights(model, adapter_dir)
    tok.padding_side = "left"
    model.eval()
    prepared = [_suite(name, records, cfg) for name, records in suites]
    present = {} if train_types is None else {"train": Counter(train_types)}
    present.update({s.name: s.present for s in prepared})
    cov = coverage(expected_types(pipe.resolve(ecfg.envelope_schema)), present)
    refs = [i.reference for s in prepared for i in s.items if i.reference]
    max_new, chosen, ref_tokens = generation_cap(tok, refs, fallback_targets, ecfg.max_new_tokens)
    gen = Generator(model, tok, device, max_new)
    rows, schemas, free, decode_notes = _decode_suites(pipe, cfg, prepared, model, gen, modes, overrides, message)
    reports = {}
    for suite in prepared:
        reports[suite.name], suite_notes = _suite_report(suite, cfg, rows[suite.name], schemas, modes, free)
        name = suite.name
        notes += [f"{name}: {n}" for n in suite_notes]
        stopped = sum(1 for r in reports[name]["examples"] if r.get("stopped_unparseable"))
        if stopped:
            notes.append(f"{name}: {stopped} unconstrained answers were stopped once their text could no longer be "
                         f"one JSON object (prose before the '{{', a syntax error, text after the object): decoding "
                         f"on could not make them parse; they count as unparsed and unfinished")
        capped = sum(1 for r in reports[name]["examples"] if not r["finished"] and not r.get("stopped_unparseable"))
        if capped:
            notes.append(f"{name}: {capped} of {len(reports[name]['examples'])} answers stopped at max_new_tokens "
                         f"{max_new} without finishing (finished rate beside every schema-valid rate): a cut answer "
                         f"is a length problem, not necessarily a wrong one")
    notes += [n for n in decode_notes + gen.grammar_notes if n not in notes]
    if missing_line(cov):
        notes.append(missing_line(cov))
    head = next(iter(reports))
    examples = reports[head].pop("examples")  # stored once, at the top level
    return {**{k: v for k, v in reports[head].items() if k != "examples"}, "headline_suite": head,
            "max_new_tokens": max_new, "max_new_tokens_chosen": chosen, "reference_tokens": distribution(ref_tokens),
            "coverage": cov, "batch_size": ecfg.batch_size, "constrained_limit": ecfg.constrained_limit,
            "greedy": True,
            "models": list(ecfg.models), "modes": modes, "teacher": teacher,
            "adapter": {"path": str(adapter_dir), **_adapter_meta(adapter_dir)},
            "base_model": {"path": str(base.path), "sha256": base.sha256}, "device": str(device),
            "notes": notes, "suites": reports, "examples": examples}


def _adapter_meta(adapter_dir: Path) -> dict[str, Any]:
    p = adapter_dir / "training_config.json"
    meta = json.loads(p.read_text()) if p.exists() else {}
    return {"step": meta.get("step"), "val_loss": meta.get("val_loss")}


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def headline(report: dict[str, Any]) -> str:
    """One line for the run summary: the headline suite's unconstrained schema-valid rates."""
    s = report["summary"]
    mode = "unconstrained" if "unconstrained" in report["modes"] else report["modes"][0]
    base = ((s.get("base") or {}).get(mode) or {}).get("schema_valid_rate")
    tuned = ((s.get("tuned") or {}).get(mode) or {}).get("schema_valid_rate")
    gain = (report["gain_points"].get(mode) or {}).get("schema_valid_rate")
    return (f"{mode} schema-valid on {report['n_examples']} '{report['headline_suite']}' prompts: base {_pct(base)} → "
            f"tuned {_pct(tuned)}" + (f" ({gain:+.0f} points)" if gain is not None else ""))


def write_report(write_json: Callable[[str, Any], None], write_bytes: Callable[[str, bytes], None],
                 report: dict[str, Any]) -> None:
    write_json("eval_report.json", report)
    write_bytes("eval_report.md", markdown(report).encode())
