"""The whole default pipeline (plan → … → train → eval) with a competent stand-in teacher.

The default embedded teacher (SmolLM2-135M) writes junk that its own critique rejects, so `run-all`
on it ends with an empty dataset and nothing to train on. This run answers the same requests from a
loopback OpenAI-compatible server whose drafts are valid, templated envelopes for the planned
payload type and destination (pocketguide.training.synthetic) and whose critiques say "pass". It
checks that the chain works end to end with a teacher that produces usable data, and reports the
student's before/after figures for THAT data (templated, so easy: not a claim about real data).
Last line: unconstrained_schema_valid_gain_points=<x>.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pocketguide import run_pipeline  # noqa: E402
from pocketguide.engine.loader import load_pipeline  # noqa: E402
from pocketguide.engine.session import RunOptions  # noqa: E402
from pocketguide.engine.teacher_spec import TeacherSettings  # noqa: E402
from pocketguide.testing import FakeOpenAI, Reply  # noqa: E402
from pocketguide.training import synthetic  # noqa: E402

CRITIQUE_PASS = {"verdict": "pass", "issues": [], "scores": {"actionability": 4, "clarity": 4, "schema_compliance": 5,
                                                           "safety_risk": 1},
                 "hallucination": {"risk_level": "low", "risky_claims": []},
                 "verification": {"missing_when_needed": False, "suggested_steps": []}, "rewrite_instructions": []}


def answer(req: dict) -> Reply:
    user = req["messages"][-1]["content"]
    if user.startswith("Review"):
        return Reply(text=json.dumps(CRITIQUE_PASS))
    question = user.split("Question: ", 1)[1].split("\n", 1)[0]
    ptype = user.split('payload_type must be "', 1)[1].split('"', 1)[0]
    rng = random.Random(hashlib.sha256(question.encode()).hexdigest())
    city, country, cur = rng.choice(synthetic.PLACES)
    days, who = rng.randint(1, 3), rng.choice(synthetic.WHO)
    env = synthetic._envelope(rng, ptype, city, country, cur, days, who, synthetic._payload(rng, ptype, city, days))
    return Reply(text=json.dumps(env, ensure_ascii=False))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=60, help="planned questions")
    ap.add_argument("--max-steps", type=int, default=60)
    ap.add_argument("--keep", type=Path, help="copy the run folder here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        proj = Path(d) / "proj"
        proj.mkdir()
        for name in ("stages.yaml", "templates", "data"):
            src = REPO / name
            (shutil.copytree if src.is_dir() else shutil.copy)(src, proj / name,
                                                               **({"ignore": shutil.ignore_patterns("runs")}
                                                                  if src.is_dir() else {}))
        pipe = load_pipeline(proj / "stages.yaml")
        pipe.stage("train").options["max_steps"] = args.max_steps
        started = time.monotonic()
        with FakeOpenAI(answer) as server:
            opts = RunOptions(limit=args.limit, teacher=TeacherSettings(provider="openai", model="stand-in",
                                                                        base_url=server.base_url))
            import os

            os.environ.setdefault("OPENAI_API_KEY", "sk-loopback-only")
            result = run_pipeline(pipe, options=opts)
        for r in result.stages:
            print(f"{r.stage}: accepted={r.accepted} rejected={r.rejected} {r.note or ''}")
        train_stats = json.loads((pipe.data_dir / "train" / "stats.json").read_text())
        t = train_stats.get("training", {})
        print(f"train: steps={t.get('steps')} mean_step_s={t.get('mean_step_s')} peak_rss_mb={t.get('peak_rss_mb')} loss={t.get('first_loss')}->{t.get('last_loss')} "
              f"n_train={t.get('n_train')} n_val={t.get('n_val')}")
        report = json.loads((pipe.data_dir / "train" / "eval_report.json").read_text())
        for model, modes in report["summary"].items():
            for mode, m in modes.items():
                print(f"eval {model} {mode}: n={m.get('n')} schema_valid={m.get('schema_valid_rate')} "
                      f"parsed={m.get('parsed_rate')}")
        print(f"elapsed_s={time.monotonic() - started:.0f}")
        if args.keep:
            shutil.copytree(pipe.data_dir, args.keep, dirs_exist_ok=True, ignore=shutil.ignore_patterns("_models"))
        print(f"unconstrained_schema_valid_gain_points={report['gain_points']['unconstrained']['schema_valid_rate']}")


if __name__ == "__main__":
    main()
