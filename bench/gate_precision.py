"""Precision and recall of overconfidence_guard and verification_when_needed on labelled, real-style sentences.

Runs the registered gates with the project's keyword lists (data/keywords/) over tests/data/gate_sentences.jsonl
(absolute claims, hedges, advice, negations, neutral text and plain time-sensitive facts, written by hand) and
prints each gate's counts and the sentences it gets wrong; the last line holds both gates' figures.

    python bench/gate_precision.py [--sentences FILE] [--root PIPELINE_DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pocketguide.pipelines.pocketguide.gate_eval import load_sentences, score_gates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentences", default=str(ROOT / "tests" / "data" / "gate_sentences.jsonl"))
    ap.add_argument("--root", default=str(ROOT), help="pipeline folder holding data/keywords")
    args = ap.parse_args()
    sentences = load_sentences(args.sentences)
    scores = score_gates(sentences, args.root)
    print(f"{len(sentences)} sentences from {args.sentences}")
    for s in scores.values():
        print(s.line())
        for text in s.false_positives:
            print(f"  false positive: {text}")
        for text in s.false_negatives:
            print(f"  false negative: {text}")
    print(" | ".join(f"{s.gate} precision={s.precision:.2f} recall={s.recall:.2f}" for s in scores.values()))


if __name__ == "__main__":
    main()
