"""Gate precision on hedged text: labelled real-style sentences (absolute claims, hedges, advice, negations, neutral
text, plain time-sensitive facts) through the real overconfidence_guard and verification_when_needed gates."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pocketguide.pipelines.pocketguide.gate_eval import load_sentences, score_gates

REPO = Path(__file__).resolve().parents[1]
DEV = load_sentences(REPO / "tests" / "data" / "gate_sentences.jsonl")  # written first, the lists were fixed on it
HELDOUT = load_sentences(REPO / "tests" / "data" / "gate_sentences_heldout.jsonl")  # written after, looked at once


def test_the_sentence_sets_cover_every_kind():
    kinds = Counter(s["kind"] for s in DEV + HELDOUT)
    assert len(DEV) >= 60 and set(kinds) == {"claim", "hedge", "advice", "negation", "neutral", "fact"}
    assert min(kinds.values()) >= 8
    assert sum(s["absolute"] for s in DEV) >= 20 and sum(not s["absolute"] for s in DEV) >= 40


@pytest.mark.parametrize("sentences", [DEV, HELDOUT], ids=["dev", "heldout"])
def test_precision_and_recall_floors(sentences):
    # measured: overconfidence_guard 1.00/1.00 on both sets (before the fix: precision 0.53 on both);
    # verification_when_needed precision 1.00, recall 0.94 (dev) and 0.95 (held out)
    scores = score_gates(sentences, REPO)
    over, verify = scores["overconfidence_guard"], scores["verification_when_needed"]
    assert over.precision >= 0.95 and over.recall >= 0.95, (over.false_positives, over.false_negatives)
    assert verify.precision >= 0.95 and verify.recall >= 0.9, (verify.false_positives, verify.false_negatives)


def test_the_issues_three_hedges_pass():
    scores = score_gates([{"text": t, "absolute": False, "time_sensitive": False, "kind": "advice"} for t in (
        "Not always checked but recommended", "always observe locals", "always prioritize primary sources")], REPO)
    assert scores["overconfidence_guard"].fp == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(list("ab ,.;:!?-'’\n") + ["always ", "never ", "not ", "n't ", "should ", "carry ",
                                                              "open ", "guaranteed ", "to ", "100%", "for sure"]),
                max_size=30).map("".join))
def test_any_text_sorts_into_claims_hedges_and_advice_without_crashing(text):
    from pocketguide.pipelines.pocketguide.claims import ClaimLists, scan_claims
    from pocketguide.pipelines.pocketguide.keywords import find_phrases

    words = REPO / "data" / "keywords"
    lists = ClaimLists(words / "absolute_phrases.txt", words / "safe_phrases.txt", words / "negators.txt",
                       words / "advice_verbs.txt")
    scan = scan_claims(text, lists)
    found = set(find_phrases(text.replace("\u2019", "'"), lists.absolute))
    assert set(scan.claims) | set(scan.hedged) | set(scan.advice) <= found
