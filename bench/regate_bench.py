"""Re-gating cost: a 10,000-record `llm` stage against the loopback OpenAI-compatible server, then one
gate option changed and the stage run again.

The first run asks the teacher for every record (json parser, JSON Schema, two gates). The rerun must
make 0 requests — the stored raw answers are re-parsed, re-validated and re-gated — and take at most 5%
of the first run's wall time. The response cache is off in both runs, so the rerun cannot lean on it.
By default the server answers at once (no simulated latency): the first run is as fast as the client
can go, the hardest case for the ratio (`--latency S` makes every answer take S seconds, as a real
teacher does). The server runs in its own process, as a real endpoint would.

    python bench/regate_bench.py [--records 10000] [--concurrency 32] [--latency 0]

Last line: regate_ratio=<rerun wall / first-run wall> (aim ≤ 0.05).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pocketguide.engine.loader import load_pipeline  # noqa: E402
from pocketguide.engine.runner import run_stage  # noqa: E402
from pocketguide.engine.session import RunOptions  # noqa: E402
from pocketguide.testing import FakeOpenAI, Reply  # noqa: E402

STAGES = """
pipeline:
  name: regate
  data_dir: runs
  concurrency: {concurrency}
  teacher: {{base_url: "{base_url}", model: bench-model, max_tokens: 128, temperature: 0.7}}
stages:
  - name: answers
    source: questions.jsonl
    template: ask.j2
    mode: llm
    parser: json
    schema: answer.schema.json
    gates:
      - {{name: length, options: {{min_chars: 40}}}}
      - {{name: required_fields, options: {{fields: [answer, confidence]}}}}
    facets: [topic]
"""
SCHEMA = {"type": "object", "required": ["answer", "confidence"],
          "properties": {"answer": {"type": "string", "minLength": 1}, "confidence": {"type": "number"}}}
TOPICS = ["visa", "train", "ferry", "museum", "market", "budget", "hostel", "temple"]
WORDS = "check the current timetable before you go and keep a copy of your booking".split()


def answer(req: dict, latency: float = 0.0) -> Reply:
    """A JSON answer whose length depends on the question (so a length gate splits the records)."""
    n = int(re.search(r"number (\d+)", req["messages"][-1]["content"]).group(1))
    text = " ".join(WORDS[: 3 + n % len(WORDS)])
    return Reply(text=json.dumps({"answer": text, "confidence": round((n % 10) / 10, 1)}), delay=latency)


def serve(latency: float) -> None:
    """`--serve`: the loopback server in this process until stdin closes; first stdout line: its base URL."""
    with FakeOpenAI(lambda req: answer(req, latency)) as server:
        print(server.base_url, flush=True)
        sys.stdin.read()
        print(server.count(), flush=True)


def make_project(root: Path, base_url: str, records: int, concurrency: int) -> Path:
    (root / "templates").mkdir(parents=True)
    (root / "templates" / "ask.j2").write_text("Answer in JSON ({{ source.topic }}): {{ source.question }}\n")
    (root / "answer.schema.json").write_text(json.dumps(SCHEMA))
    with open(root / "questions.jsonl", "w") as fh:
        for i in range(records):
            fh.write(json.dumps({"id": f"q{i:05d}", "topic": TOPICS[i % len(TOPICS)],
                                 "question": f"what about item number {i}?"}) + "\n")
    path = root / "stages.yaml"
    path.write_text(STAGES.format(base_url=base_url, concurrency=concurrency))
    return path


def timed_run(path: Path) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = run_stage("answers", load_pipeline(path), options=RunOptions(cache=False))
    return time.perf_counter() - t0, result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args.latency)
    proc = subprocess.Popen([sys.executable, __file__, "--serve", "--latency", str(args.latency)], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    base_url = proc.stdout.readline().strip()
    with tempfile.TemporaryDirectory() as d:
        path = make_project(Path(d), base_url, args.records, args.concurrency)
        load_pipeline(path)  # one-off imports and load-time checks, outside both timings
        first_s, first = timed_run(path)
        assert first.complete and first.accepted + first.rejected == args.records, first
        path.write_text(path.read_text().replace("min_chars: 40", "min_chars: 60"))
        rerun_s, rerun = timed_run(path)
    proc.stdin.close()
    requests = int(proc.stdout.readline())
    proc.wait(10)
    rerun_requests = requests - args.records
    assert rerun.rejudged == args.records and rerun_requests == 0, (rerun.rejudged, rerun_requests)
    print(f"records={args.records} concurrency={args.concurrency} latency_s={args.latency} response_cache=off")
    print(f"first_run_s={first_s:.2f} requests={args.records} accepted={first.accepted} rejected={first.rejected}")
    print(f"rerun_s={rerun_s:.2f} requests={rerun_requests} rejudged={rerun.rejudged} accepted={rerun.accepted} "
          f"rejected={rerun.rejected} (gate length min_chars 40 → 60)")
    print(f"regate_ratio={rerun_s / first_s:.4f}")


if __name__ == "__main__":
    main()
