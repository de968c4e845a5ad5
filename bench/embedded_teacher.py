"""Embedded teacher overhead and schema-valid rate.

Runs the same schema-constrained chat requests (same sampling parameters, same capped schema, same
one-shot system prompt) through pocketguide's EmbeddedTeacher and through a bare xllamacpp Server
loaded with the same model, threads and context, interleaving the two so machine load hits both
alike. Prints tokens/s for each, the schema-valid rate (against the REAL schema) over 20
constrained generations, and last `embedded_overhead_ratio=<pocketguide tokens/s ÷ direct tokens/s>`.

    python bench/embedded_teacher.py [--n 20] [--compare 4] [--max-tokens 700] [--max-items 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jsonschema import Draft202012Validator

from pocketguide.engine.spec import TeacherSettings
from pocketguide.teachers.base import TeacherRequest
from pocketguide.teachers.embedded import EmbeddedTeacher
from pocketguide.teachers.structured import response_format_for, system_prompt_for, worst_case_tokens

# an envelope like the PocketGuide one: required fields, arrays, an enum and a typed payload
SCHEMA = {
    "type": "object",
    "required": ["summary", "assumptions", "uncertainty_notes", "next_steps", "verification_steps",
                 "payload_type", "payload"],
    "properties": {
        "summary": {"type": "string", "minLength": 10, "description": "Two relaxed days in Lisbon on foot"},
        "assumptions": {"type": "array", "items": {"type": "string", "description": "Travelling in spring"}},
        "uncertainty_notes": {"type": "string", "description": "Tram times change; check on the day"},
        "next_steps": {"type": "array", "minItems": 1, "items": {"type": "string", "description": "Book the hotel"}},
        "verification_steps": {"type": "array", "items": {"type": "string",
                                                          "description": "Check the Carris website"}},
        "payload_type": {"enum": ["checklist"]},
        "payload": {"type": "object", "required": ["title", "items"], "properties": {
            "title": {"type": "string", "minLength": 3, "description": "Packing list"},
            "items": {"type": "array", "minItems": 2, "items": {"type": "object", "required": ["text", "priority"],
                      "properties": {"text": {"type": "string", "minLength": 2, "description": "Passport"},
                                     "priority": {"enum": ["high", "medium", "low"]}}}}}},
    },
}
CITIES = ["Lisbon", "Kyoto", "Mexico City", "Nairobi", "Oslo", "Hanoi", "Lima", "Marrakesh", "Reykjavik", "Seoul"]
TOPICS = ["a first-time visitor's packing checklist", "a checklist for arriving at the airport at night"]
SYSTEM = "You are a travel assistant. Answer with one JSON object only."


def settings(args: argparse.Namespace) -> TeacherSettings:
    """The recommended embedded settings (see the README block); flags vary one at a time."""
    return TeacherSettings(provider="embedded", temperature=args.temperature, repeat_penalty=1.2, max_tokens=args.max_tokens,
                           seed=7, response_format="json_schema", system_prompt=SYSTEM,
                           schema_max_items=args.max_items, one_shot=args.one_shot, threads=args.threads)


def requests(s: TeacherSettings, n: int) -> list[TeacherRequest]:
    rf = response_format_for(s, SCHEMA, "envelope")
    system = system_prompt_for(s, rf)
    prompts = [f"Write {t} for {c}." for t in TOPICS for c in CITIES][:n]
    return [TeacherRequest(messages=[{"role": "system", "content": system}, {"role": "user", "content": p}],
                           temperature=s.temperature, max_tokens=s.max_tokens, seed=s.seed, response_format=rf,
                           repeat_penalty=s.repeat_penalty) for p in prompts]


def direct_server(teacher: EmbeddedTeacher):
    """A bare xllamacpp Server with the teacher's model, threads and context: the baseline."""
    import xllamacpp

    p = xllamacpp.CommonParams()
    p.model.path = str(teacher.model_path)
    p.n_ctx, p.n_parallel, p.verbosity, p.warmup = teacher.n_ctx, 1, -1, False
    p.cpuparams.n_threads = p.cpuparams_batch.n_threads = teacher.threads
    return xllamacpp.Server(p)


def direct_body(req: TeacherRequest) -> dict:
    return {"messages": req.messages, "temperature": req.temperature, "max_tokens": req.max_tokens,
            "seed": req.seed, "response_format": req.response_format, "repeat_penalty": req.repeat_penalty,
            "cache_prompt": True}


def valid(text: str) -> bool:
    try:
        return not list(Draft202012Validator(SCHEMA).iter_errors(json.loads(text)))
    except ValueError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20, help="constrained generations for the schema-valid rate")
    ap.add_argument("--compare", type=int, default=4, help="of those, how many also run directly (tokens/s)")
    ap.add_argument("--max-tokens", type=int, default=700)
    ap.add_argument("--max-items", type=int, default=3)
    ap.add_argument("--one-shot", default=None, help="auto | none | literal text (default: the teacher's)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--budget-s", type=float, default=150.0, help="stop starting new generations after this")
    args = ap.parse_args()
    s = settings(args)
    teacher = EmbeddedTeacher(s)
    reqs = requests(s, args.n)
    print(f"model {teacher.model_id}, threads {teacher.threads}, n_ctx {teacher.n_ctx}, max_tokens {s.max_tokens}; "
          f"capped schema worst case ~{worst_case_tokens(reqs[0].response_format['json_schema']['schema'])} tokens")
    print("note: shared 2-core machine; absolute tokens/s move with other users' load, the ratio is interleaved")
    direct = direct_server(teacher)
    _ = teacher.engine  # load both models before timing
    times = {"pocketguide": [0.0, 0], "direct": [0.0, 0]}
    results = []
    bench_started = time.perf_counter()
    for i, req in enumerate(reqs):
        if i >= max(args.compare, 1) and time.perf_counter() - bench_started > args.budget_s:
            print(f"time budget of {args.budget_s:.0f} s reached after {i} generations (machine load?)")
            break
        order = ["pocketguide", "direct"] if i % 2 == 0 else ["direct", "pocketguide"]
        for who in order if i < args.compare else ["pocketguide"]:
            t0 = time.perf_counter()
            if who == "pocketguide":
                resp = asyncio.run(teacher.generate(req))
                text, finish, tokens = resp.text, resp.finish_reason, resp.usage["completion_tokens"]
                results.append((text, finish, tokens, time.perf_counter() - t0))
            else:
                answer = direct.handle_chat_completions(direct_body(req))
                tokens = answer["usage"]["completion_tokens"]
            if i < args.compare:
                times[who][0] += time.perf_counter() - t0
                times[who][1] += tokens
    ok = sum(1 for text, finish, _, _ in results if finish == "stop" and valid(text))
    truncated = sum(1 for r in results if r[1] == "length")
    tokens = [r[2] for r in results]
    print(f"constrained generations: {len(results)}, schema-valid (real schema) {ok}/{len(results)}, "
          f"truncated {truncated}, completion tokens min/mean/max {min(tokens)}/{sum(tokens) / len(tokens):.0f}/"
          f"{max(tokens)}, all-in tokens/s {sum(tokens) / sum(r[3] for r in results):.1f}")
    for text, *_ in results[:2]:
        print("sample:", text.replace("\n", " ")[:400])
    if not args.compare:
        print(f"schema_valid_rate={ok / len(results):.3f}")
        return
    tps = {k: v[1] / v[0] for k, v in times.items()}
    print(f"tokens/s over {args.compare} interleaved requests: pocketguide {tps['pocketguide']:.1f}, "
          f"direct xllamacpp {tps['direct']:.1f} (tokens {times['pocketguide'][1]} vs {times['direct'][1]})")
    print(f"schema_valid_rate={ok / len(results):.3f}")
    print(f"embedded_overhead_ratio={tps['pocketguide'] / tps['direct']:.3f}")


if __name__ == "__main__":
    main()
