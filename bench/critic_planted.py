"""The deterministic critic on the planted-defect set: a confusion matrix of planted defect × verdict, and
whether the intended check fired. No model; milliseconds. Last line:
`planted_caught=<share of defective drafts flagged> good_passed=<share of good drafts passed>`.

    python bench/critic_planted.py [--set tests/data/planted_drafts.yaml]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pocketguide.engine.loader import load_pipeline  # noqa: E402
from pocketguide.pipelines.pocketguide.planted import markdown, rates, score  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", type=Path, default=REPO / "tests/data/planted_drafts.yaml")
    args = ap.parse_args()
    pipe = load_pipeline(REPO / "stages.yaml")
    rows = score(args.set, pipe.templates_dir, pipe.stage("draft").vars["payload_hints"])
    print(f"{len(rows)} planted drafts ({sum(r.defect == 'good' for r in rows)} good)")
    print(markdown(rows))
    for r in rows:
        if (r.defect == "good") == r.flagged:
            print(f"miss: {r.id} ({r.defect}) → {r.verdict} {r.checks}")
    caught, passed = rates(rows)
    print(f"planted_caught={caught:.3f} good_passed={passed:.3f}")


if __name__ == "__main__":
    main()
