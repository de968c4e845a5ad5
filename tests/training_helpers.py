"""Tiny schemas, records and a pipeline for the training tests (short targets keep steps fast)."""

from __future__ import annotations

import json
from pathlib import Path

SYSTEM = "Reply with one JSON object: summary, payload_type, payload."
ENVELOPE = {"type": "object", "additionalProperties": False, "required": ["summary", "payload_type", "payload"],
            "properties": {"summary": {"type": "string", "minLength": 1},
                           "payload_type": {"enum": ["note", "steps"]}, "payload": {"type": "object"}}}
PAYLOADS = {
    "note": {"type": "object", "additionalProperties": False, "required": ["text"],
             "properties": {"text": {"type": "string"}}},
    "steps": {"type": "object", "additionalProperties": False, "required": ["steps"],
              "properties": {"steps": {"type": "array", "minItems": 1, "items": {"type": "string"}}}},
}
GATE = "tiny_summary_mentions_city"


def _register_gate() -> None:
    """A test-only gate (unique name) so the report's gate pass rates have something to count."""
    from pocketguide.engine.registry import GATES, gate
    from pocketguide.engine.runtime import GateResult

    if GATE not in GATES:
        @gate(GATE)
        def _mentions_city(item, opts):
            s = item.parsed.get("summary") if isinstance(item.parsed, dict) else None
            return GateResult(isinstance(s, str) and any(c in s for c in CITIES), "no_city")


_register_gate()
CITIES = ["Lisbon", "Kyoto", "Oslo", "Lima", "Rome", "Hanoi", "Quito", "Riga"]


def target(i: int) -> tuple[str, str]:
    city = CITIES[i % len(CITIES)]
    if i % 2:
        env = {"summary": f"Tips for {city}.", "payload_type": "note", "payload": {"text": f"Walk in {city}."}}
        return "note", json.dumps(env)
    env = {"summary": f"Steps for {city}.", "payload_type": "steps", "payload": {"steps": ["Book.", "Go."]}}
    return "steps", json.dumps(env)


def line(rid: str, i: int, split: str | None, **over) -> dict:
    ptype, text = target(i)
    msgs = [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Help me with {CITIES[i % len(CITIES)]}."},
            {"role": "assistant", "content": text}]
    out = {"id": rid, "payload_type": ptype, "messages": msgs}
    if split:
        out["split"] = split
    out.update(over)
    return out


def sft_lines() -> list[dict]:
    rows = [line(f"t{i}", i, "train") for i in range(6)] + [line(f"v{i}", 10 + i, "val") for i in range(2)]
    rows.append(line("x0", 20, "test"))
    bad = line("bad_no_target", 3, "train")
    bad["messages"] = bad["messages"][:2]
    rows.append(bad)
    rows.append(line("bad_long", 5, "train", messages=[{"role": "user", "content": "word " * 400},
                                                       {"role": "assistant", "content": "{}"}]))
    rows.append(line("bad_nosplit", 7, None))
    return rows


def suite_lines() -> list[dict]:
    return [line(f"s{i}", 30 + i, "test") for i in range(4)]


PIPELINE = """\
pipeline: {{name: tiny-train, data_dir: runs}}
stages:
  - name: sft
    source: data/sft.jsonl
    template: messages.j2
    mode: copy
    parser: json
  - name: eval_suite
    source: data/suite.jsonl
    template: messages.j2
    mode: copy
    parser: json
  - name: train
    op: train
    inputs: [sft, eval_suite]
    options: {options}
"""


def options(cache: Path, **over) -> dict:
    opts = {"model_cache_dir": str(cache), "r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"],
            "lr": 5e-3, "warmup_steps": 0, "max_steps": 6, "batch_size": 2, "max_seq_length": 96,
            "length_coverage": 0.8,  # bad_long (1 of 9 records) is planted: rejected as too_long, not a failure
            "eval_every": 3, "save_every": 2,
            "eval": {"envelope_schema": "schemas/envelope.json", "payload_schemas": "schemas/payload.{type}.json",
                     "max_new_tokens": 24, "batch_size": 4, "gates": [GATE, "no_such_gate"]}}
    opts.update(over)
    return opts


def write_project(root: Path, opts: dict) -> Path:
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "templates").mkdir(exist_ok=True)
    (root / "schemas").mkdir(exist_ok=True)
    (root / "schemas/envelope.json").write_text(json.dumps(ENVELOPE))
    for t, s in PAYLOADS.items():
        (root / f"schemas/payload.{t}.json").write_text(json.dumps(s))
    (root / "data/sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sft_lines()))
    (root / "data/suite.jsonl").write_text("".join(json.dumps(r) + "\n" for r in suite_lines()))
    (root / "templates/messages.j2").write_text('{{ {"messages": source.messages} | tojson }}')
    (root / "stages.yaml").write_text(PIPELINE.format(options=json.dumps(opts)))
    return root / "stages.yaml"


def base_cache_dir(tmp_path_factory=None) -> Path:
    """One dequantized base shared by every test (and across sessions: dequantizing the GGUF costs 15–60 s
    on a busy box, reloading the safetensors cache well under a second). $POCKETGUIDE_MODEL_CACHE moves it."""
    import os

    pytest = __import__("pytest")
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    from pocketguide.training.model import offline, prepare_base

    offline()
    cache = Path(os.environ.get("POCKETGUIDE_MODEL_CACHE") or Path.home() / ".cache/pocketguide/models")
    prepare_base(None, cache)
    return cache
