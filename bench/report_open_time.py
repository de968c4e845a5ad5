"""How long the HTML report of a 10,000-record run takes to open in a browser (target: under 3 s).

Runs the default pipeline's plan → draft → critique → refine → dataset on --plan N planned questions
(about 4.67 records each: 2,150 → ~10,000 records) against a loopback teacher that answers with valid envelopes,
except that one draft in eight is not JSON and one critique in ten says reject; writes the report and
opens it in headless Chromium (Debian's package). The page stamps `data-ready-ms` on <body> when its
script has parsed the data, drawn every section and laid the page out: milliseconds since navigation
started, so it includes reading and parsing the file. Baseline, same browser and command: the report of
the same pipeline with no records. Also timed: a whole browser process that starts, loads the page and
paints a screenshot. Last line: report_open_ms=<data-ready-ms of the full run, median of --repeat>.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from pipeline_stand_in_teacher import CRITIQUE_PASS, answer  # noqa: E402

from pocketguide import run_pipeline  # noqa: E402
from pocketguide.engine.loader import load_pipeline  # noqa: E402
from pocketguide.engine.session import RunOptions  # noqa: E402
from pocketguide.engine.teacher_spec import TeacherSettings  # noqa: E402
from pocketguide.report.collect import build_report_data  # noqa: E402
from pocketguide.report.html import write_page  # noqa: E402
from pocketguide.testing import FakeOpenAI, Reply  # noqa: E402

STAGES = ["plan", "draft", "critique", "refine", "dataset"]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def mixed(req: dict) -> Reply:
    """The stand-in teacher, with some failures so the report has rejections to show."""
    user = req["messages"][-1]["content"]
    question = user.split("Question: ", 1)[1].split("\n", 1)[0]
    roll = int(hashlib.sha256(question.encode()).hexdigest()[:8], 16)
    if user.startswith("Review"):
        if roll % 10 == 0:
            return Reply(text=json.dumps({**CRITIQUE_PASS, "verdict": "reject",
                                          "issues": [{"type": "accuracy", "severity": "high", "message": "invented"}],
                                          "rewrite_instructions": ["Start over"]}))
        return Reply(text=json.dumps(CRITIQUE_PASS))
    if roll % 8 == 1:
        return Reply(text="Sure! Here is a lovely trip for you, enjoy the sights and the food.")
    return answer(req)


def project(root: Path) -> Path:
    root.mkdir(parents=True)
    for name in ("stages.yaml", "templates", "data"):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("runs"))
        else:
            shutil.copy(src, root / name)
    return root / "stages.yaml"


def browser(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="chromium-", dir=workdir)
    return subprocess.run([shutil.which("chromium") or "chromium", *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=300, check=False)


def open_ms(page: Path, workdir: Path) -> tuple[int, float]:
    """One cold open: (data-ready-ms stamped by the page, wall seconds of a browser process that loads
    the page and paints a screenshot of it, start-up included)."""
    done = browser(workdir, "--dump-dom", page.as_uri())
    found = re.search(r'<body[^>]*data-ready-ms="(\d+)"', done.stdout)
    if not found:
        raise SystemExit(f"the page did not finish rendering: {done.stderr[-2000:]}")
    started = time.perf_counter()
    browser(workdir, f"--screenshot={workdir / 'shot.png'}", "--window-size=1280,1000", page.as_uri())
    return int(found.group(1)), time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plan", type=int, default=2150, help="planned questions (about 4.67 records each: 2,150 → ~10,000)")
    ap.add_argument("--max-records", type=int, default=None, help="the report's browser cap (default: its own)")
    ap.add_argument("--repeat", type=int, default=3, help="cold opens per page; the median is reported")
    args = ap.parse_args()
    if not shutil.which("chromium"):
        raise SystemExit("needs Debian's chromium: apt-get install chromium")
    os.environ.setdefault("OPENAI_API_KEY", "sk-loopback-only")
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        pipe = load_pipeline(project(work / "proj"))
        empty = write_page(build_report_data(pipe), work / "empty")
        pipe.stage("plan").options["count"] = args.plan
        t0 = time.monotonic()
        with FakeOpenAI(mixed) as server:
            teacher = TeacherSettings(provider="openai", model="stand-in", base_url=server.base_url)
            run_pipeline(pipe, options=RunOptions(limit=args.plan, cache=False, teacher=teacher), only=STAGES)
        print(f"run: {time.monotonic() - t0:.0f}s")
        t0 = time.perf_counter()
        kw = {"max_records": args.max_records} if args.max_records else {}
        data = build_report_data(pipe, **kw)
        page = write_page(data, work / "full")
        build_s = time.perf_counter() - t0
        b = data["browser"]
        print(f"records: {b['total']} in the run, {b['shown']} in the browser (sampled: {b['sampled']}); "
              f"rejected: {sum(s['rejected'] for s in data['stages'])}")
        print(f"build + write: {build_s:.2f}s; page size {page.stat().st_size / 1e6:.1f} MB")
        base = sorted(open_ms(empty, work) for _ in range(args.repeat))[args.repeat // 2]
        full = sorted(open_ms(page, work) for _ in range(args.repeat))[args.repeat // 2]
        print(f"baseline (no records): ready {base[0]} ms; browser start + load + screenshot {base[1]:.2f}s")
        print(f"this run: ready {full[0]} ms; browser start + load + screenshot {full[1]:.2f}s "
              f"(+{full[1] - base[1]:.2f}s over the baseline); ready ratio to baseline {full[0] / max(1, base[0]):.1f}x")
        print(f"report_open_ms={full[0]}")


if __name__ == "__main__":
    main()
