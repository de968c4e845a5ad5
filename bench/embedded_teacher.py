"""The draft stage's completion tokens/s with the embedded teacher, beside one bare xllamacpp stream.

Runs the default pipeline's `draft` stage (plan --limit N, cache off) in a temp copy of the project and
times the whole stage: model load excluded (loaded before), prefill, decoding, parsing, validation,
gates and writes included. First with the teacher's default decoding slots (`n_parallel` unset: 1), then
with `--slots K` (K sequences decoded in one batch, continuous batching, each slot reusing its cached
prompt prefix).
Then sends the very same requests (system prompt, rendered prompt, per-record decoding schema, sampling
parameters) one at a time to a bare `xllamacpp.Server` with the same model, threads and context. Prints
each figure with the share of prompt tokens served from the prompt cache, and last
`stage_vs_bare_ratio=<default stage tok/s ÷ bare stream tok/s> slots_vs_bare_ratio=<K-slot stage ÷ bare>`.

    python bench/embedded_teacher.py [--n 12] [--slots 4] [--threads T]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pocketguide import run_stage  # noqa: E402
from pocketguide.engine.loader import load_pipeline  # noqa: E402
from pocketguide.engine.session import RunOptions, resolved_teacher  # noqa: E402
from pocketguide.teachers.embedded import EmbeddedTeacher  # noqa: E402
from pocketguide.teachers.structured import response_format_for, system_prompt_for  # noqa: E402


def project(root: Path, n_parallel: int | None, threads: int | None) -> Path:
    for name in ("templates", "data"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("runs"))
    text = (REPO / "stages.yaml").read_text()
    extra = "".join(f"    {k}: {v}\n" for k, v in (("n_parallel", n_parallel), ("threads", threads)) if v)
    (root / "stages.yaml").write_text(text.replace("  teacher:\n    provider: embedded\n",
                                                   "  teacher:\n    provider: embedded\n" + extra, 1))
    return root / "stages.yaml"


def run_draft(root: Path, n: int, n_parallel: int | None, threads: int | None) -> dict:
    """Time the draft stage over n planned questions; the model is loaded before the clock starts."""
    path = project(root, n_parallel, threads)
    pipe = load_pipeline(path)
    run_stage("plan", pipe, limit=n)
    settings = resolved_teacher(pipe.spec.pipeline.teacher, pipe.stage("draft"), None)
    teacher = EmbeddedTeacher(settings)
    _ = teacher.engine  # load (once per process and settings) outside the timed part
    started = time.perf_counter()
    res = run_stage("draft", pipe, options=RunOptions(cache=False))
    wall = time.perf_counter() - started
    recs = [json.loads(x) for f in ("records", "rejected")
            for x in (pipe.data_dir / f"draft/{f}.jsonl").read_text().splitlines()]
    usage = [r["teacher"]["usage"] for r in recs if r.get("teacher")]
    return {"pipe": pipe, "settings": settings, "teacher": teacher, "wall": wall, "records": recs,
            "accepted": res.accepted, "completion": sum(u["completion_tokens"] for u in usage),
            "prompt": sum(u["prompt_tokens"] for u in usage),
            "cached": sum(u.get("cached_prompt_tokens", 0) for u in usage)}


def stage_line(label: str, run: dict) -> str:
    tps = run["completion"] / run["wall"]
    return (f"draft stage, {label}: {run['completion']} completion tokens ({run['prompt']} prompt, "
            f"{run['cached']} of them from the prompt cache) in {run['wall']:.1f} s = {tps:.1f} completion tok/s "
            f"(whole stage, prefill included); {run['accepted']}/{len(run['records'])} drafts accepted")


def bare_bodies(run: dict) -> list[dict]:
    """The requests the stage sent, rebuilt as the `llm` generator builds them: the system prompt (with the
    stage-level one-shot, if any), the rendered prompt, the record's decoding schema, the sampling parameters."""
    pipe, settings = run["pipe"], run["settings"]
    stage = pipe.stage("draft")
    stage_format = response_format_for(settings, json.loads(pipe.resolve(stage.schema_).read_text()), stage.name)
    system = system_prompt_for(settings, stage_format)
    bodies = []
    for rec in sorted(run["records"], key=lambda r: r["id"]):
        path = pipe.resolve(stage.response_schema.replace("{payload_type}", rec["data"]["payload_type"]))
        fmt = response_format_for(settings, json.loads(path.read_text()), stage.name)
        messages = [{"role": "system", "content": system}, {"role": "user", "content": rec["prompt"]}]
        # the sampling group goes into every request as is, as the llm generator sends it
        bodies.append({"messages": messages, **settings.group("sampling"), "response_format": fmt,
                       "cache_prompt": True})
    return bodies


def bare_stream(teacher: EmbeddedTeacher, bodies: list[dict]) -> tuple[float, int, int, int]:
    """(wall, completion tokens, prompt tokens, cached prompt tokens) of one bare xllamacpp stream."""
    import xllamacpp

    p = xllamacpp.CommonParams()
    p.model.path = str(teacher.model_path)
    p.n_ctx, p.n_parallel, p.verbosity, p.warmup = teacher.n_ctx, 1, -1, False
    p.cpuparams.n_threads = p.cpuparams_batch.n_threads = teacher.threads
    server = xllamacpp.Server(p)
    completion = prompt = cached = 0
    started = time.perf_counter()
    for body in bodies:
        usage = server.handle_chat_completions(body)["usage"]
        completion += usage["completion_tokens"]
        prompt += usage["prompt_tokens"]
        cached += (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return time.perf_counter() - started, completion, prompt, cached


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=12, help="planned questions drafted")
    ap.add_argument("--slots", type=int, default=4, help="parallel decoding slots of the second stage run")
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: the teacher's own)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        one = run_draft(Path(d) / "default", args.n, None, args.threads)  # the teacher's default n_parallel
        t = one["teacher"]
        print(f"model {t.model_id}, threads {t.threads}, n_ctx {t.n_ctx} per slot; {args.n} draft prompts of the "
              f"default pipeline")
        print(stage_line(f"{t.n_parallel} slot(s) (default)", one))
        slots = run_draft(Path(d) / "slots", args.n, args.slots, args.threads)
        print(stage_line(f"{args.slots} slots", slots))
        wall, completion, prompt, cached = bare_stream(t, bare_bodies(one))
        bare_tps = completion / wall
        print(f"bare xllamacpp, one stream, the default stage's requests: {completion} completion tokens in "
              f"{wall:.1f} s = {bare_tps:.1f} completion tok/s; prompt cache served {cached}/{prompt} prompt tokens")
        print(f"stage_vs_bare_ratio={one['completion'] / one['wall'] / bare_tps:.3f} "
              f"slots_vs_bare_ratio={slots['completion'] / slots['wall'] / bare_tps:.3f}")


if __name__ == "__main__":
    main()
