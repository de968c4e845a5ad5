"""Every daydreaming parser on realistic model output, including the judges' many ways to say a score."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pocketguide.engine.errors import ParseError
from pocketguide.engine.registry import get_parser, load_builtins
from pocketguide.engine.runtime import ParseContext
from pocketguide.pipelines.daydreaming.parsers import (
    ScoreRange,
    essay_block,
    essay_block_lenient,
    essay_idea_last,
    in_last_line,
)


def ctx(**options):
    return ParseContext("evaluation", {}, None, options=ScoreRange(**options) if options else None)


JUDGE_OUTPUTS = [
    ("plain SCORE line", "The essay is fresh.\nSCORE: 7", 7.0, "final"),
    ("bold markdown", "Good flow.\n\n**SCORE: 8**", 8.0, "final"),
    ("bold label only", "Reasoning here.\n**Score:** 6", 6.0, "label"),
    ("heading", "## Final Score: 9", 9.0, "final"),
    ("total score", "Novelty 3, coherence 4.\nTotal score: 7.5", 7.5, "final"),
    ("fraction out of ten", "Decent.\nScore: 8/10", 8.0, "label"),
    ("final fraction out of five rescaled", "Decent.\nFinal score: 4/5", 8.0, "final"),
    ("total out of a hundred rescaled", "Total score: 85 / 100", 8.5, "final"),
    ("decimal comma", "Score: 6,5", 6.5, "label"),
    ("second-to-last line", "Analysis.\nSCORE: 5\nThanks for reading!", 5.0, "final"),
    ("third-to-last line", "SCORE: 4\nI hope this helps.\nLet me know.", 4.0, "final"),
    ("heading with the value on the next line", "Sub: Score: 2/3 pts\n### Final Score\n**7**", 7.0, "final"),
    ("perfect ten is in range", "Flawless.\nSCORE: 10", 10.0, "final"),
    ("zero is in range", "Nothing here.\nSCORE: 0", 0.0, "final"),
    ("trailing prose after number", "Final score: 7 - solid but safe", 7.0, "final"),
    ("windows newlines and blank lines", "Ok.\r\n\r\nSCORE: 6\r\n\r\n", 6.0, "final"),
]


@pytest.mark.parametrize("name,raw,score,method", JUDGE_OUTPUTS, ids=[j[0] for j in JUDGE_OUTPUTS])
def test_in_last_line_extracts(name, raw, score, method):
    c = ctx()
    assert in_last_line(raw, c) == pytest.approx(score)
    assert c.notes["parse_mode"] == method


FAILURES = [  # precision first: a guessed score is worse than none
    ("empty", "", "empty_response"),
    ("whitespace", "  \n\t\n", "empty_response"),
    ("no score at all", "This essay is interesting.\nI liked it.", "no_score_last_lines"),
    ("score too early", "SCORE: 7\nline two\nline three\nline four", "no_score_last_lines"),
    ("score without number", "Score: N/A", "no_score_last_lines"),
    ("a sub-score on another scale", "Decent.\nScore: 4/5", "no_score_last_lines"),
    ("SCORE then a different Score", "SCORE: 3\nScore: 9 would be too generous", "ambiguous_score"),
    ("two SCOREs", "SCORE: 2\nOn reflection:\nSCORE: 6", "ambiguous_score"),
    ("three numbers", "Per criterion:\nScore: 6 7 8", "ambiguous_score"),
    ("three numbers with commas", "Score: 5, 6, 10", "ambiguous_score"),
    ("eleven", "SCORE: 11", "out_of_range"),
    ("negative", "Score: -2", "out_of_range"),
    ("fifteen out of ten", "Score: 15/10", "out_of_range"),
    ("zero denominator", "Score: 5/0", "no_score_last_lines"),
]


@pytest.mark.parametrize("name,raw,code", FAILURES, ids=[f[0] for f in FAILURES])
def test_in_last_line_rejects_with_reason(name, raw, code):
    with pytest.raises(ParseError) as exc:
        in_last_line(raw, ctx())
    assert exc.value.code == code


def test_in_last_line_range_is_configurable_and_inclusive():
    assert in_last_line("SCORE: 5", ctx(min_score=1, max_score=5)) == 5.0
    assert in_last_line("Score: 3/5", ctx(min_score=1, max_score=5)) == 3.0
    with pytest.raises(ParseError) as exc:
        in_last_line("SCORE: 0", ctx(min_score=1, max_score=5))
    assert exc.value.code == "out_of_range" and "1–5 (inclusive)" in str(exc.value)
    with pytest.raises(ParseError):
        in_last_line("SCORE: 7\nmore\nmore\nmore", ctx(last_lines=3))
    assert in_last_line("SCORE: 7\nmore\nmore\nmore", ctx(last_lines=4)) == 7.0
    with pytest.raises(ValueError):
        ScoreRange(min_score=10, max_score=0)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_in_last_line_never_crashes_on_arbitrary_text(text):
    try:
        value = in_last_line(text, ctx())
    except ParseError as exc:
        assert exc.code in ("empty_response", "no_score_last_lines", "out_of_range")
    else:
        assert 0 <= value <= 10


def test_essay_block():
    c = ctx()
    assert essay_block("Intro\n<essay>\nBody one.\nBody two.\n</essay>\nOutro", c) == "Body one.\nBody two."
    assert c.notes["parse_mode"] == "closed"
    assert essay_block("<essay>First</essay> and <essay>second</essay>", ctx()) == "First"
    assert essay_block("<ESSAY>unclosed runs\nto the end", ctx()) == "unclosed runs\nto the end"
    for raw, code in (("no tags here", "no_essay_block"), ("", "empty_response"), ("<essay> </essay>", "empty_essay")):
        with pytest.raises(ParseError) as exc:
            essay_block(raw, ctx())
        assert exc.value.code == code


def test_essay_block_lenient():
    c = ctx()
    raw = "<thinking>maybe <essay>not this</essay></thinking>\n<essay>The real one.</essay>"
    assert essay_block_lenient(raw, c) == "The real one." and c.notes["parse_mode"] == "essay_block"
    c = ctx()
    assert essay_block_lenient("<thinking>plan</thinking>\nJust prose.\n", c) == "Just prose."
    assert c.notes["parse_mode"] == "whole_text"
    with pytest.raises(ParseError) as exc:
        essay_block_lenient("<thinking>only thoughts</thinking>", ctx())
    assert exc.value.code == "empty_response"


def test_essay_idea_last():
    raw = ('<essay-idea stage="1">rough</essay-idea>\n<essay-idea stage="3">best</essay-idea>\n'
           '<essay-idea stage="2">middle</essay-idea>')
    c = ctx()
    assert essay_idea_last(raw, c) == "best" and c.notes["parse_mode"] == "stage_3"
    assert essay_idea_last("<essay-idea>a</essay-idea><essay-idea>b</essay-idea>", ctx()) == "b"
    assert essay_idea_last("<essay-idea stage='1'>a</essay-idea><essay-idea stage=2>unclosed b", ctx()) == "unclosed b"
    with pytest.raises(ParseError) as exc:
        essay_idea_last("no ideas", ctx())
    assert exc.value.code == "no_essay_idea"


def test_parsers_are_stage_scoped():
    load_builtins()
    assert get_parser("draft", "essay_block") is essay_block
    assert get_parser("essay", "essay_block_lenient") is essay_block_lenient
    assert get_parser("evaluation", "in_last_line") is in_last_line
    with pytest.raises(Exception, match="unknown parser 'in_last_line' for stage 'draft'"):
        get_parser("draft", "in_last_line")



TAG_SOUP = st.lists(st.sampled_from([*"ab \n<>/=\"'12", "<essay>", "</essay>", "<thinking>", "</thinking>",
                                     '<essay-idea stage="2">', "<essay-idea>", "</essay-idea>"]),
                    max_size=40).map("".join)


@settings(max_examples=100, deadline=None)
@given(TAG_SOUP)
def test_essay_parsers_never_crash_on_tag_soup(text):
    for fn in (essay_block, essay_block_lenient, essay_idea_last):
        try:
            out = fn(text, ctx())
        except ParseError as exc:
            assert exc.code in ("empty_response", "no_essay_block", "empty_essay", "no_essay_idea")
        else:
            assert out and out == out.strip()


def test_min_lines_gate_counts_lines_or_sentences():
    from pocketguide.engine.runtime import GateInput
    from pocketguide.gates.lines import MinLinesOptions, min_lines

    def run(text, **opts):
        return min_lines(GateInput(text, text, {}, {}), MinLinesOptions(**opts))

    assert run("one\n\ntwo\nthree").passed
    res = run("one\n  \ntwo")
    assert not res.passed and res.reason == "too_few_lines" and res.details == {"lines": 2, "min_lines": 3}
    paragraph = "Boredom pushes. The mind wanders! Does it find ideas? Often."
    assert not run(paragraph).passed
    assert run(paragraph, sentences=True).details["lines"] == 4
    assert not run("Version 2.0 is out. Really", sentences=True, min_lines=3).passed
    assert run("1. One idea here.\n2. Another", sentences=True).details["lines"] == 2
