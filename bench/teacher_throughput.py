"""Teacher throughput through the real runner: a 2,000-record `llm` stage (run_stage) against the
loopback OpenAI-compatible server answering every request after 250 ms, at concurrency 32.

Ideal = 32 / 0.25 s = 128 requests/s. Then the same with 5% injected 429s and 5% 500s (answered after
the same 250 ms, no Retry-After), then the requests sent by an immediate rerun and by a `--fresh`
rerun (both must be 0: the first skips finished records, the second is answered by the response cache).

The server runs in its own process by default, as a real endpoint would (`--in-process` puts it on a
thread of this process, sharing the GIL with the client, for comparison).

    python bench/teacher_throughput.py [--records 2000] [--latency 0.25] [--concurrency 32] [--in-process]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pocketguide.engine.runner import run_stage  # noqa: E402
from pocketguide.engine.session import RunOptions  # noqa: E402
from pocketguide.testing import FakeOpenAI, Faults  # noqa: E402

STAGES = """
pipeline:
  name: bench
  data_dir: runs
  concurrency: {concurrency}
  teacher:
    base_url: "{base_url}"
    model: bench-model
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


def make_project(root: Path, base_url: str, records: int, concurrency: int) -> Path:
    (root / "templates").mkdir(parents=True)
    (root / "templates" / "ask.j2").write_text("Answer briefly: {{ source.question }}\n")
    with open(root / "questions.jsonl", "w") as fh:
        for i in range(records):
            fh.write(f'{{"id": "q{i:05d}", "question": "what is item number {i}?"}}\n')
    path = root / "stages.yaml"
    path.write_text(STAGES.format(base_url=base_url, concurrency=concurrency))
    return path


@contextlib.contextmanager
def server(latency: float, p429: float, p500: float, in_process: bool):
    """Yields (base_url, count()) for a loopback server in a child process (or on a thread here)."""
    if in_process:
        with FakeOpenAI(Faults(latency, p429, p500)) as s:
            yield s.base_url, s.count
        return
    proc = subprocess.Popen([sys.executable, "-m", "pocketguide.testing", "--latency", str(latency),
                             "--p429", str(p429), "--p500", str(p500)], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        base_url = proc.stdout.readline().strip()
        with httpx.Client() as client:
            yield base_url, lambda: client.get(base_url + "/_stats").json()["requests"]
    finally:
        proc.stdin.close()
        proc.wait(10)


def run_once(root: Path, records: int, concurrency: int, latency: float, p429: float, p500: float,
             in_process: bool) -> dict:
    with server(latency, p429, p500, in_process) as (base_url, count):
        stages = make_project(root, base_url, records, concurrency)
        started, cpu = time.perf_counter(), time.process_time()
        result = run_stage("answers", stages, options=RunOptions())
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        sent = count()
        manifest = json.loads((result.output_dir / "manifest.json").read_text())
        flow = manifest["teacher"]["flow"][0]
        rerun = run_stage("answers", stages, options=RunOptions())
        rerun_sent = count() - sent
        fresh = run_stage("answers", stages, options=RunOptions(fresh=True))
        fresh_sent = count() - sent - rerun_sent
    return {"elapsed": elapsed, "cpu": cpu, "accepted": result.new_accepted, "rejected": result.new_rejected,
            "sent": sent, "rerun_sent": rerun_sent, "rerun_skipped": rerun.skipped_done, "fresh_sent": fresh_sent,
            "fresh_cached": fresh.stats["teacher"]["cached"], "stopped": result.stopped,
            "reasons": result.stats.get("rejection_reasons"), "flow": flow}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--latency", type=float, default=0.25)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--in-process", action="store_true", help="serve from a thread of this process")
    args = ap.parse_args()
    ideal = args.concurrency / args.latency
    where = "a thread of this process" if args.in_process else "its own process"
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start; server in {where}")
    runs = {}
    with tempfile.TemporaryDirectory(prefix="pg-bench-") as tmp:
        for name, p429, p500 in (("clean", 0.0, 0.0), ("faulty", 0.05, 0.05)):
            runs[name] = run_once(Path(tmp) / name, args.records, args.concurrency, args.latency, p429, p500,
                                  args.in_process)
    for name, r in runs.items():
        rps = r["accepted"] / r["elapsed"]
        print(f"{name}: {r['accepted']} accepted, {r['rejected']} rejected in {r['elapsed']:.2f}s; {r['sent']} requests "
              f"sent ({r['sent'] / r['elapsed']:.1f} requests/s); {rps:.1f} records/s vs ideal {ideal:.0f}/s; "
              f"rejections {r['reasons']}; stopped={r['stopped']}")
        f = r["flow"]
        print(f"{name}: client process CPU {1000 * r['cpu'] / max(1, r['sent']):.2f} ms per request; "
              f"{f['rate_limited']} answers were 429, in-flight cap cut {f['concurrency_cuts']} times")
        print(f"{name}: rerun sent {r['rerun_sent']} requests (skipped {r['rerun_skipped']} finished); "
              f"--fresh rerun sent {r['fresh_sent']} requests ({r['fresh_cached']} answers from the cache)")
    clean, faulty = runs["clean"], runs["faulty"]
    print(f"rerun_requests={clean['rerun_sent'] + faulty['rerun_sent']}")
    print(f"fresh_rerun_requests={clean['fresh_sent'] + faulty['fresh_sent']}")
    print(f"faulty_throughput_ratio={faulty['accepted'] / faulty['elapsed'] / ideal:.3f}")
    print(f"throughput_ratio={clean['accepted'] / clean['elapsed'] / ideal:.3f}")


if __name__ == "__main__":
    main()
