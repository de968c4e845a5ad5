"""Real judge output (tests/data/judge_replies.yaml: 56 replies in the styles real LLM judges write, traps
included): judge_score takes the one unambiguous final score or rejects the reply with a reason, and is
never wrong. The old last-lines rules took a sub-score from the issue's reply and rescaled it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pocketguide.engine.errors import ParseError
from pocketguide.engine.registry import get_parser, load_builtins
from pocketguide.engine.runtime import ParseContext
from pocketguide.pipelines.daydreaming.parsers import ScoreBounds, ScoreRange, in_last_line, judge_score

REPLIES = yaml.safe_load((Path(__file__).parent / "data" / "judge_replies.yaml").read_text())


def _run(parser, reply: dict, options) -> tuple[float | None, str | None]:
    try:
        return parser(reply["reply"], ParseContext("evaluation", {}, None, options=options)), None
    except ParseError as exc:
        return None, exc.code


def tally(parser, options) -> dict[str, int]:
    """scored (right), rejected, wrong (a score where there is none, or another score than the right one)."""
    out = {"scored": 0, "rejected": 0, "wrong": 0}
    for reply in REPLIES:
        value, _ = _run(parser, reply, options)
        if value is None:
            out["rejected"] += 1
        elif reply["expect"] is not None and value == pytest.approx(reply["expect"]):
            out["scored"] += 1
        else:
            out["wrong"] += 1
    return out


def test_the_corpus_is_varied():
    assert len(REPLIES) >= 30 and len({r["id"] for r in REPLIES}) == len(REPLIES)
    assert sum(r["expect"] is None for r in REPLIES) >= 10  # traps that must be rejected
    assert sum("trap" in r["id"] for r in REPLIES) >= 15


@pytest.mark.parametrize("reply", REPLIES, ids=[r["id"] for r in REPLIES])
def test_judge_score_on_real_judge_replies(reply):
    value, code = _run(judge_score, reply, ScoreBounds())
    if reply["expect"] is None or reply.get("known_miss"):
        assert value is None and code == (reply.get("code") or reply["known_miss"])
    else:
        assert value == pytest.approx(reply["expect"]), code


def test_figures_scored_rejected_wrong():
    assert tally(judge_score, ScoreBounds()) == {"scored": 39, "rejected": 17, "wrong": 0}  # 15 traps + 2 misses
    # the same rules on the last three lines only: fewer scored, still never wrong
    assert tally(in_last_line, ScoreRange())["wrong"] == 0


def test_the_issues_reply_is_scored_not_its_subscore():
    reply = next(r for r in REPLIES if r["id"] == "issue_subscores_then_final_heading")["reply"]
    assert judge_score(reply, ParseContext("evaluation", {}, None)) == 7
    # what failed before: the last lines hold `Score: 2/3 pts` (rescaled to 6.67) and the final `7` below a heading
    for n in (3, 5, 10):
        value, code = _run(in_last_line, {"reply": reply}, ScoreRange(last_lines=n))
        assert value in (None, 7), (n, value, code)


def test_judge_score_is_registered_for_evaluations():
    load_builtins()
    from pocketguide.engine.plugins import load_plugin

    load_plugin("pocketguide.pipelines.daydreaming", Path.cwd())
    assert get_parser("evaluation", "judge_score") is judge_score
