"""Teacher throughput through the real runner: a 2,000-record `llm` stage (run_stage) against the
loopback OpenAI-compatible server answering every request after 250 ms, at concurrency 32.

Ideal = 32 / 0.25 s = 128 requests/s. Then the same with 5% injected 429s and 5% 500s (answered after
the same 250 ms, no Retry-After), then the requests sent by an immediate rerun and by a `--fresh`
rerun (both must be 0: the first skips finished records, the second is answered by the response cache).

    python bench/teacher_throughput.py [--records 2000] [--latency 0.25] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pocketguide.runner import run_stage  # noqa: E402
from pocketguide.session import RunOptions  # noqa: E402
from pocketguide.testing import FakeOpenAI, Reply  # noqa: E402

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


class Faults:
    """A reply function: `latency` for every answer, and a share of 429s / 500s drawn with a fixed seed."""

    def __init__(self, latency: float, p429: float = 0.0, p500: float = 0.0, seed: int = 7):
        self.latency, self.p429, self.p500 = latency, p429, p500
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.injected = {"429": 0, "500": 0}

    def __call__(self, req: dict) -> Reply:
        with self.lock:
            x = self.rng.random()
            if x < self.p429:
                self.injected["429"] += 1
                return Reply(status=429, error="rate limited (injected)", delay=self.latency)
            if x < self.p429 + self.p500:
                self.injected["500"] += 1
                return Reply(status=500, error="server error (injected)", delay=self.latency)
        return Reply(text="A short answer of a few words.", delay=self.latency)


def run_once(root: Path, faults: Faults, records: int, concurrency: int) -> dict:
    with FakeOpenAI(faults) as server:
        stages = make_project(root, server.base_url, records, concurrency)
        started = time.perf_counter()
        result = run_stage("answers", stages, options=RunOptions())
        elapsed = time.perf_counter() - started
        sent = server.count()
        before = server.count()
        rerun = run_stage("answers", stages, options=RunOptions())
        rerun_sent = server.count() - before
        before = server.count()
        fresh = run_stage("answers", stages, options=RunOptions(fresh=True))
        fresh_sent = server.count() - before
    return {"elapsed": elapsed, "accepted": result.new_accepted, "rejected": result.new_rejected, "sent": sent,
            "rerun_sent": rerun_sent, "rerun_skipped": rerun.skipped_done, "fresh_sent": fresh_sent,
            "fresh_cached": fresh.stats["teacher"]["cached"], "stopped": result.stopped,
            "reasons": result.stats.get("rejection_reasons"), "injected": dict(faults.injected)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--latency", type=float, default=0.25)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    ideal = args.concurrency / args.latency
    with tempfile.TemporaryDirectory(prefix="pg-bench-") as tmp:
        clean = run_once(Path(tmp) / "clean", Faults(args.latency), args.records, args.concurrency)
        faulty = run_once(Path(tmp) / "faulty", Faults(args.latency, 0.05, 0.05), args.records, args.concurrency)
    for name, r in (("clean", clean), ("faulty", faulty)):
        rps = r["accepted"] / r["elapsed"]
        print(f"{name}: {r['accepted']} accepted, {r['rejected']} rejected in {r['elapsed']:.2f}s; "
              f"{r['sent']} requests sent (injected {r['injected']}); {rps:.1f} records/s vs ideal {ideal:.0f}/s; "
              f"rejections {r['reasons']}; stopped={r['stopped']}")
        print(f"{name}: rerun sent {r['rerun_sent']} requests (skipped {r['rerun_skipped']} finished); "
              f"--fresh rerun sent {r['fresh_sent']} requests ({r['fresh_cached']} answers from the cache)")
    clean_ratio = clean["accepted"] / clean["elapsed"] / ideal
    faulty_ratio = faulty["accepted"] / faulty["elapsed"] / ideal
    print(f"rerun_requests={clean['rerun_sent'] + faulty['rerun_sent']}")
    print(f"fresh_rerun_requests={clean['fresh_sent'] + faulty['fresh_sent']}")
    print(f"faulty_throughput_ratio={faulty_ratio:.3f}")
    print(f"throughput_ratio={clean_ratio:.3f}")


if __name__ == "__main__":
    main()
