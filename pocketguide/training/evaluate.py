"""Before/after evaluation: base and base+adapter answer every eval-suite prompt (greedy, same system
prompt and token cap), free and schema-constrained; every output is parsed, validated and gated.
Constrained rows decode with the teacher's decoding profile and repeat penalty when given (Decoding)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from pocketguide.training.data import BadRecord, prompt_and_reference
from pocketguide.training.generate import Generator, GrammarCompileError, Repetition
from pocketguide.training.model import TrainingError

RATE_KEYS = ("parsed", "envelope_valid", "payload_valid", "schema_valid", "type_match", "finished")


@dataclass
class Schemas:
    """The envelope schema, one payload schema per type, and a combined schema per type for constraining."""

    envelope: dict[str, Any]
    payloads: dict[str, dict[str, Any]]
    paths: dict[str, str] = field(default_factory=dict)
    decoding: dict[str, dict[str, Any]] = field(default_factory=dict)  # payload type → schema the grammar uses

    @classmethod
    def load(cls, envelope_path: Path, payload_pattern: Path, types: list[str]) -> Schemas:
        if not envelope_path.exists():
            raise TrainingError(f"envelope schema {envelope_path} not found — set options.eval.envelope_schema")
        env = json.loads(envelope_path.read_text())
        enum = ((env.get("properties") or {}).get("payload_type") or {}).get("enum") or []
        payloads, paths = {}, {"envelope": str(envelope_path)}
        for t in sorted(set(enum) | set(types)):
            p = Path(str(payload_pattern).replace("{type}", t))
            if p.exists():
                payloads[t] = json.loads(p.read_text())
                paths[t] = str(p)
        missing = sorted(set(types) - set(payloads))
        if missing:
            raise TrainingError(f"no payload schema for {', '.join(missing)} (looked for {payload_pattern}) — "
                                f"set options.eval.payload_schemas")
        return cls(env, payloads, paths)

    def combined(self, ptype: str) -> dict[str, Any]:
        """The envelope with `payload_type` fixed and `payload` replaced by that type's schema (its $defs
        hoisted to the root so local $refs still resolve)."""
        env = json.loads(json.dumps(self.envelope))
        pay = json.loads(json.dumps(self.payloads[ptype]))
        for k in ("$schema", "$id", "title", "version", "description"):
            pay.pop(k, None)
        defs = pay.pop("$defs", None) or pay.pop("definitions", None)
        if defs:
            env.setdefault("$defs", {}).update(defs)
        env["properties"]["payload"] = pay
        env["properties"]["payload_type"] = {"type": "string", "enum": [ptype]}
        return env

    def constraint(self, ptype: str) -> dict[str, Any]:
        """The schema constrained decoding uses: the teacher's decoding profile when loaded, else the contract."""
        return self.decoding.get(ptype) or self.combined(ptype)


def first_error(validator: Draft202012Validator, obj: Any) -> str | None:
    err = next(iter(validator.iter_errors(obj)), None)
    if err is None:
        return None
    path = "$" + "".join(f"[{x}]" if isinstance(x, int) else f".{x}" for x in err.absolute_path)
    return f"{path}: {err.message[:200]}"


class Scorer:
    """Raw text → parse / envelope / payload verdicts (strict: the whole answer must be one JSON object)."""

    def __init__(self, schemas: Schemas):
        self.env = Draft202012Validator(schemas.envelope)
        self.pay = {t: Draft202012Validator(s) for t, s in schemas.payloads.items()}

    def __call__(self, raw: str, expected_type: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"parsed": False, "envelope_valid": False, "payload_valid": False,
                               "schema_valid": False, "type_match": False, "error": None, "value": None}
        try:
            value = json.loads(raw.strip())
        except ValueError as exc:
            out["error"] = f"json_parse_failed: {exc}"[:200]
            return out
        if not isinstance(value, dict):
            out["error"] = "json_parse_failed: not an object"
            return out
        out["parsed"], out["value"] = True, value
        err = first_error(self.env, value)
        out["envelope_valid"] = err is None
        ptype = value.get("payload_type")
        out["type_match"] = expected_type is None or ptype == expected_type
        v = self.pay.get(ptype) if isinstance(ptype, str) else None
        perr = first_error(v, value.get("payload")) if v is not None else f"no payload schema for {ptype!r}"
        out["payload_valid"] = perr is None
        out["schema_valid"] = out["envelope_valid"] and out["payload_valid"]
        if err or perr:
            out["error"] = f"envelope_schema_failed: {err}" if err else f"payload_schema_failed: {perr}"
        return out


@dataclass
class SuiteItem:
    id: str
    payload_type: str | None
    prompt: list[dict[str, str]]
    reference: str | None  # None for a prompt-only (held-out) suite
    data: dict[str, Any] = field(default_factory=dict)  # the record's facets (destination, prompt…) for the gates
    suite: str = ""  # which suite it came from, when several suites are decoded together


def suite_items(records: list[dict[str, Any]], system_prompt: str | None) -> tuple[list[SuiteItem], list[tuple]]:
    """Usable suite records, and (record, code, message) for the ones that are not."""
    items, bad = [], []
    for rec in records:
        try:
            prompt, ref = prompt_and_reference(rec.get("parsed"))
        except BadRecord as exc:
            bad.append((rec, exc.code, str(exc)))
            continue
        if system_prompt is not None:
            prompt = [{"role": "system", "content": system_prompt}] + [m for m in prompt if m["role"] != "system"]
        data = dict(rec.get("data") or {})
        ptype = data.get("payload_type")
        if ptype is None and ref is not None:
            try:
                ptype = json.loads(ref).get("payload_type")
            except (ValueError, AttributeError):
                ptype = None
        data.setdefault("prompt", next((m["content"] for m in reversed(prompt) if m["role"] == "user"), ""))
        items.append(SuiteItem(rec["id"], ptype, prompt, ref, data))
    return items, bad


def run_gates(parsed: Any, raw: str, item: SuiteItem, names: list[str], root: Path | None = None) -> dict[str, bool]:
    """Registered quality gates on one parsed output; a gate that is not registered is skipped. `root` is the
    pipeline's folder, which gates resolve their data files (schemas, keyword lists) against."""
    from pocketguide.engine.registry import GATES
    from pocketguide.engine.runtime import GateInput

    out = {}
    for name in names:
        gdef = GATES.get(name)
        if gdef is None:
            continue
        try:
            opts = gdef.options() if gdef.options else None
            data = {**item.data, "payload_type": item.payload_type}
            res = gdef.fn(GateInput(parsed, raw, {"id": item.id, "parsed": parsed, "data": data}, {}, root), opts)
            out[name] = bool(res.passed)
        except Exception:  # a gate that crashes on model output counts as failed, never ends the eval
            out[name] = False
    return out


def stratified_first(items: list[SuiteItem], n: int | None) -> list[SuiteItem]:
    """The first `n` items taken in turn from each payload type (types in order of first appearance),
    returned in suite order; all of them when `n` is None or not smaller."""
    if n is None or n >= len(items):
        return list(items)
    by_type: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        by_type.setdefault(str(it.payload_type), []).append(i)
    queues, picked = [list(q) for q in by_type.values()], []
    while len(picked) < n:
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop(0))
    return [items[i] for i in sorted(picked)]


def evaluate(models: dict[str, Callable[[], Any]], gen: Generator, items: list[SuiteItem], schemas: Schemas,
             modes: list[str], batch_size: int, gates: list[str], on_batch: Callable[[str], None] | None = None,
             penalty: Repetition | None = None, root: Path | None = None,
             constrained_limit: int | None = None, notes: list[str] | None = None,
             unconstrained: Repetition | None = None,
             constrained_items: list[SuiteItem] | None = None) -> list[dict[str, Any]]:
    """Per-example rows for every (model, mode). `models` maps a name to a context manager that makes
    `gen.model` answer as that model (adapter disabled for the base, enabled for the tuned one).
    Constrained mode answers `constrained_items`, else `stratified_first(items, constrained_limit)`;
    unconstrained every item; `penalty` applies to constrained rows, `unconstrained` (None: plain greedy) to
    unconstrained ones. Items of several suites may be decoded together: a row then carries its item's suite."""
    scorer = Scorer(schemas)
    rows = []
    for model_name, activate in models.items():
        with activate():
            for mode in modes:
                done = 0
                todo = items
                if mode == "constrained":
                    todo = (constrained_items if constrained_items is not None
                            else stratified_first(items, constrained_limit))
                if mode == "constrained":
                    todo = _compilable(todo, gen, schemas, model_name, notes)
                for i in range(0, len(todo), batch_size):
                    batch = todo[i:i + batch_size]
                    grammars = None
                    if mode == "constrained":
                        grammars = [gen.grammar(it.payload_type, schemas.constraint(it.payload_type)) for it in batch]
                    # unconstrained: a row whose text can no longer parse stops (no figure but "finished" changes)
                    use = penalty if mode == "constrained" else unconstrained
                    outs = gen.run([it.prompt for it in batch], grammars, use,
                                   stop_unparseable=mode == "unconstrained")
                    for it, o in zip(batch, outs):
                        s = scorer(o["text"], it.payload_type)
                        g = run_gates(s["value"], o["text"], it, gates, root) if s["parsed"] else {}
                        rows.append({"model": model_name, "mode": mode, "id": it.id, "payload_type": it.payload_type,
                                     "output": o["text"], **{k: s[k] for k in RATE_KEYS if k in s},
                                     "finished": o["finished"], "stopped_unparseable": o.get("stopped_unparseable", False),
                                     "error": s["error"], "gates": g,
                                     "latency_s": o["latency_s"], "new_tokens": o["new_tokens"],
                                     "chars": len(o["text"]), **({"suite": it.suite} if it.suite else {})})
                    done += len(batch)
                    if on_batch:
                        on_batch(f"eval {model_name}/{mode}: {done}/{len(todo)}")
    return rows


def _compilable(todo: list[SuiteItem], gen: Generator, schemas: Schemas, model_name: str,
                notes: list[str] | None) -> list[SuiteItem]:
    """The items whose payload type's decoding schema compiles; the others are skipped, with a note."""
    failed: dict[str, str] = {}
    for ptype in sorted({str(it.payload_type) for it in todo}):
        try:
            gen.grammar(ptype, schemas.constraint(ptype))
        except GrammarCompileError as exc:
            failed[ptype] = str(exc)
    for ptype, why in failed.items():
        k = sum(1 for it in todo if str(it.payload_type) == ptype)
        if notes is not None:
            notes.append(f"{model_name}/constrained: {k} {ptype} prompt(s) skipped — {why}")
    return [it for it in todo if str(it.payload_type) not in failed]
