"""Teacher throughput through the real runner with each HTTP client (transport), beside a bare AsyncOpenAI loop.

Three servers (each `python -m pocketguide.testing` in its own process, as a real endpoint would be;
`--in-process` puts it on a thread here), every answer after 250 ms, concurrency 32:
  clean    no faults. Ideal = 32 / 0.25 s = 128 requests/s.
  faulty   5% 429 (Retry-After: 1) + 5% 500. Same ideal.
  limited  the server enforces 600 requests/min (a token bucket holding 6 s' worth, 429 + Retry-After +
           x-ratelimit-* headers beyond it); no limit is configured in stages.yaml. Ideal = what the
           server allowed over the run: its burst + 10 requests/s × elapsed.
For each: a 2,000-record (600 for `limited`) `llm` stage via run_stage with the default transport (sdk:
the openai SDK's own client), then (clean, faulty) an immediate rerun and a `--fresh` rerun (both must send
0 requests), then (clean, faulty) the same stage with `transport: lean` (teachers/wire.py), then the bare
loop: `AsyncOpenAI(max_retries=6)`, a semaphore of 32, `chat.completions.create` per record — the SDK
alone, what a 20-line script gets. `--ceiling` adds a raw-socket client in clean mode (prebuilt request, no JSON work): the server's and the
machine's own ceiling. The faulty mode also prints what a perfect client would get with the run's request
count (the ideal assumes no faults). Each line gives the client's and the server's CPU per request.

    python bench/teacher_throughput.py [--modes clean,faulty,limited] [--records 2000] [--no-bare] [--no-lean]
                                       [--ceiling]

Last line: lean_throughput_ratio=… lean_faulty_throughput_ratio=… (transport: lean) then
throughput_ratio=… faulty_throughput_ratio=… rate_limited_ratio=… (the default transport, sdk) rows_lost=…
(one figure per mode run; rows_lost counts records not accepted by pocketguide across all its runs, both
transports, which must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from openai import AsyncOpenAI  # the bare loop's SDK (~1 s to import): before any timing

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pocketguide.teachers.openai_compat  # noqa: E402,F401  # imported before any timing, as the SDK is
from pocketguide.engine.runner import run_stage  # noqa: E402
from pocketguide.engine.session import RunOptions  # noqa: E402
from pocketguide.testing import FakeOpenAI, Faults, RateLimit  # noqa: E402

STAGES = """
pipeline:
  name: bench
  data_dir: runs
  concurrency: {concurrency}
  teacher:
    base_url: "{base_url}"
    model: bench-model
    transport: {transport}
    max_tokens: 64
    retry_initial_s: 0.25
    retry_max_s: 2
    prices: {{bench-model: {{input: 0.5, output: 1.5}}}}
stages:
  - name: answers
    source: questions.jsonl
    template: ask.j2
    mode: llm
    parser: stripped
"""
MODES = {  # name: server flags
    "clean": {},
    "faulty": {"p429": 0.05, "p500": 0.05, "retry_after": 1.0},
    "limited": {"rpm": 600.0},
}
BURST_S = 6.0  # the limited server's buckets hold this many seconds' worth


def make_project(root: Path, base_url: str, records: int, concurrency: int, transport: str) -> Path:
    (root / "templates").mkdir(parents=True)
    (root / "templates" / "ask.j2").write_text("Answer briefly: {{ source.question }}\n")
    with open(root / "questions.jsonl", "w") as fh:
        for i in range(records):
            fh.write(f'{{"id": "q{i:05d}", "question": "what is item number {i}?"}}\n')
    path = root / "stages.yaml"
    path.write_text(STAGES.format(base_url=base_url, concurrency=concurrency, transport=transport))
    return path


@contextlib.contextmanager
def server(latency: float, flags: dict, in_process: bool):
    """Yields (base_url, stats()) for a loopback server in a child process (or on a thread here)."""
    if in_process:
        limit = RateLimit(flags["rpm"], None, BURST_S) if flags.get("rpm") else None
        faults = Faults(latency, flags.get("p429", 0.0), flags.get("p500", 0.0), retry_after=flags.get("retry_after"))
        with FakeOpenAI(faults, limit=limit) as s:
            yield s.base_url, lambda: {"requests": s.count(), **(limit.stats() if limit else {})}
        return
    cmd = [sys.executable, "-m", "pocketguide.testing", "--latency", str(latency), "--burst-s", str(BURST_S)]
    for name, value in flags.items():
        cmd += [f"--{name.replace('_', '-')}", str(value)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        base_url = proc.stdout.readline().strip()
        with httpx.Client() as client:
            yield base_url, lambda: client.get(base_url + "/_stats").json()
    finally:
        proc.stdin.close()
        proc.wait(10)


def run_pocketguide(root: Path, records: int, concurrency: int, latency: float, flags: dict, in_process: bool,
                    reruns: bool, transport: str = "sdk") -> dict:
    with server(latency, flags, in_process) as (base_url, stats):
        stages = make_project(root, base_url, records, concurrency, transport)
        server_cpu = stats().get("process_cpu_s")
        started, cpu = time.perf_counter(), time.process_time()
        result = run_stage("answers", stages, options=RunOptions())
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        seen = stats()
        seen["cpu_s"] = seen.get("process_cpu_s", 0) - (server_cpu or 0) if not in_process else None
        sent = seen["requests"]
        out = {"elapsed": elapsed, "cpu": cpu, "accepted": result.new_accepted, "rejected": result.new_rejected,
               "sent": sent, "server": seen, "stopped": result.stopped,
               "reasons": result.stats.get("rejection_reasons"), "flow": result.stats["teacher"].get("flow")}
        if reruns:
            rerun = run_stage("answers", stages, options=RunOptions())
            out["rerun_sent"] = stats()["requests"] - sent
            out["rerun_skipped"] = rerun.skipped_done
            fresh = run_stage("answers", stages, options=RunOptions(fresh=True))
            out["fresh_sent"] = stats()["requests"] - sent - out["rerun_sent"]
            out["fresh_cached"] = fresh.stats["teacher"]["cached"]
    return out


async def _bare(base_url: str, records: int, concurrency: int) -> tuple[int, int]:
    client = AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=6)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> str:
        async with sem:
            r = await client.chat.completions.create(
                model="bench-model", max_tokens=64,
                messages=[{"role": "user", "content": f"Answer briefly: what is item number {i}?"}])
        return r.choices[0].message.content

    results = await asyncio.gather(*(one(i) for i in range(records)), return_exceptions=True)
    await client.close()
    failed = sum(1 for r in results if isinstance(r, BaseException))
    return records - failed, failed


def run_bare(records: int, concurrency: int, latency: float, flags: dict, in_process: bool) -> dict:
    with server(latency, flags, in_process) as (base_url, stats):
        server_cpu = stats().get("process_cpu_s")
        started, cpu = time.perf_counter(), time.process_time()
        ok, failed = asyncio.run(_bare(base_url, records, concurrency))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        seen = stats()
        seen["cpu_s"] = seen.get("process_cpu_s", 0) - (server_cpu or 0) if not in_process else None
    return {"elapsed": elapsed, "cpu": cpu, "accepted": ok, "failed": failed, "sent": seen["requests"],
            "server": seen}


async def _raw(base_url: str, records: int, concurrency: int) -> int:
    """The server's own ceiling: `concurrency` kept-alive sockets, each sending a prebuilt request and reading
    its answer (no JSON work, no retries), so what is left between it and the ideal is the server's and the
    machine's, not a client's."""
    host, port = base_url.split("//")[1].split("/")[0].rsplit(":", 1)
    body = json.dumps({"model": "bench-model", "max_tokens": 64,
                       "messages": [{"role": "user", "content": "Answer briefly: what is item number 1?"}]}).encode()
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
               f"content-length: {len(body)}\r\n\r\n").encode() + body
    left, ok = [records], [0]

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        while left[0] > 0:
            left[0] -= 1
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length"))
            await reader.readexactly(length)
            ok[0] += head.startswith(b"HTTP/1.1 200")
        writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok[0]


def run_raw(records: int, concurrency: int, latency: float, in_process: bool) -> dict:
    with server(latency, {}, in_process) as (base_url, stats):
        server_cpu = stats().get("process_cpu_s")
        started, cpu = time.perf_counter(), time.process_time()
        ok = asyncio.run(_raw(base_url, records, concurrency))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        seen = stats()
        seen["cpu_s"] = seen.get("process_cpu_s", 0) - (server_cpu or 0) if not in_process else None
    return {"elapsed": elapsed, "cpu": cpu, "accepted": ok, "failed": records - ok, "sent": seen["requests"],
            "server": seen}


def ratio(mode: str, r: dict, ideal_rps: float) -> float:
    if mode != "limited":
        return r["accepted"] / r["elapsed"] / ideal_rps
    per_s = MODES["limited"]["rpm"] / 60.0
    return r["accepted"] / (per_s * BURST_S + per_s * r["elapsed"])  # of what the server allowed meanwhile


def report(mode: str, who: str, r: dict, ideal_rps: float, how: str = "") -> None:
    s = r["server"]
    limited = f"; the limit answered {s['limited']} of {s['requests']} requests 429 " \
              f"({s['limited'] / max(1, s['requests']):.1%})" if "limited" in s else ""
    lost = f", {r['rejected']} rejected {r['reasons']}" if who == "pocketguide" else f", {r['failed']} failed"
    label = f"{who} ({how})" if how else who
    print(f"{mode} {label}: {r['accepted']} accepted{lost} in {r['elapsed']:.2f}s; {r['sent']} requests "
          f"({r['sent'] / r['elapsed']:.1f}/s){limited}; ratio {ratio(mode, r, ideal_rps):.3f}; client CPU "
          f"{1000 * r['cpu'] / max(1, r['sent']):.2f} ms per request" + (
              f", server CPU {1000 * s['cpu_s'] / max(1, r['sent']):.2f} ms" if s.get("cpu_s") is not None else ""))
    if who == "pocketguide":
        print(f"{mode} {label}: flow {json.dumps(r['flow'])}")
        if "rerun_sent" in r:
            print(f"{mode} pocketguide: rerun sent {r['rerun_sent']} requests (skipped {r['rerun_skipped']} "
                  f"finished); --fresh rerun sent {r['fresh_sent']} ({r['fresh_cached']} answers from the cache)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="clean,faulty,limited")
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--limited-records", type=int, default=600)
    ap.add_argument("--latency", type=float, default=0.25)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--no-bare", action="store_true", help="skip the bare AsyncOpenAI loop")
    ap.add_argument("--no-lean", action="store_true", help="skip the runs with transport: lean")
    ap.add_argument("--in-process", action="store_true", help="serve from a thread of this process")
    ap.add_argument("--ceiling", action="store_true",
                    help="clean mode: also a raw-socket client (no JSON, no retries): the server's and machine's "
                         "ceiling")
    args = ap.parse_args()
    ideal = args.concurrency / args.latency
    where = "a thread of this process" if args.in_process else "its own process"
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start; server in {where}")
    figures, lean, lost = {}, {}, 0
    names = {"clean": "throughput_ratio", "faulty": "faulty_throughput_ratio", "limited": "rate_limited_ratio"}
    with tempfile.TemporaryDirectory(prefix="pg-bench-") as tmp:
        for mode in args.modes.split(","):
            n = args.limited_records if mode == "limited" else args.records
            r = run_pocketguide(Path(tmp) / mode, n, args.concurrency, args.latency, MODES[mode], args.in_process,
                                reruns=mode != "limited")
            report(mode, "pocketguide", r, ideal)
            if not args.no_lean and mode != "limited":
                r_lean = run_pocketguide(Path(tmp) / f"{mode}-lean", n, args.concurrency, args.latency, MODES[mode],
                                         args.in_process, reruns=False, transport="lean")
                report(mode, "pocketguide", r_lean, ideal, "transport lean")
                lean[f"lean_{names[mode]}"] = ratio(mode, r_lean, ideal)
                lost += n - r_lean["accepted"]
            if mode == "faulty":  # the ideal assumes no faults; a perfect client still sends every retry and waits
                wait = MODES["faulty"]["retry_after"]  # out the last 429's Retry-After, then one more answer
                best = r["accepted"] / (r["sent"] / ideal + wait + args.latency) / ideal
                print(f"faulty: a perfect client sending these {r['sent']} requests at the ideal rate, then waiting "
                      f"out the last 429's {wait:g} s and one more answer, would get about {best:.3f}")
            figures[names[mode]] = ratio(mode, r, ideal)
            lost += n - r["accepted"]
            if not args.no_bare:
                report(mode, "bare AsyncOpenAI", run_bare(n, args.concurrency, args.latency, MODES[mode],
                                                          args.in_process), ideal)
            if args.ceiling and mode == "clean":
                report(mode, "raw sockets", run_raw(n, args.concurrency, args.latency, args.in_process), ideal)
    print(" ".join(f"{k}={v:.3f}" for k, v in {**lean, **figures}.items()) + f" rows_lost={lost}")


if __name__ == "__main__":
    main()
