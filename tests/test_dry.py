"""DRY as llama.cpp applies it: a candidate that would extend an earlier sequence of ≥ allowed_length tokens
loses multiplier × base^(n − allowed_length); matching stops at sequence breakers."""

from __future__ import annotations

import pytest

from pocketguide.training.dry import Dry, breaker_tokens

QUOTE = 9  # a breaker token, e.g. '"'


def _dry(allowed=2, last_n=1 << 30):
    return Dry(1.0, 2.0, allowed, last_n, frozenset({QUOTE}))


def test_the_token_that_would_continue_a_repeat_is_found_with_its_match_length():
    # 1 2 3 4 ... 1 2 3 → continuing with 4 would repeat "1 2 3 4": match length 3
    assert _dry().match_lengths([1, 2, 3, 4, 5, 1, 2, 3]) == {4: 3}
    # two earlier occurrences: the longer match wins for its candidate, each candidate is listed
    assert _dry().match_lengths([7, 2, 3, 8, 1, 2, 3, 6, 1, 2, 3]) == {8: 2, 6: 3}
    # shorter than allowed_length: no penalty
    assert _dry(allowed=3).match_lengths([2, 3, 8, 5, 2, 3]) == {}


def test_breakers_stop_the_match_and_a_breaker_last_token_matches_nothing():
    # '"' between: the match "1 2" cannot extend back through the breaker
    assert _dry().match_lengths([5, QUOTE, 1, 2, 4, 5, QUOTE, 1, 2]) == {4: 2}
    assert _dry().match_lengths([1, 2, QUOTE, 3, 1, 2, QUOTE]) == {}


def test_the_window_limits_how_far_back_a_repeat_counts():
    torch = pytest.importorskip("torch")
    ids = torch.tensor([[1, 2, 3, 4, 5, 1, 2, 3]])
    scores = torch.zeros(1, 6)
    out = _dry()(ids, scores.clone())
    assert out[0, 4].item() == pytest.approx(-2.0) and out[0].abs().sum().item() == pytest.approx(2.0)  # 1×2^(3−2)
    assert _dry(last_n=4)(ids, scores.clone()).abs().sum().item() == 0  # "1 2 3 4" is outside the last 4


class _Tok:
    all_special_ids = [0]
    vocab = ["<pad>", "Hello", '",', " the", ":", "\n\n", "*x"]

    def __len__(self):
        return len(self.vocab)

    def decode(self, ids):
        return "".join(self.vocab[i] for i in ids)


def test_breaker_tokens_are_those_containing_a_breaker_string_and_the_specials():
    assert breaker_tokens(_Tok(), ("\n", ":", '"', "*")) == {0, 2, 4, 5, 6}
    assert Dry.from_settings({"dry_multiplier": 0}, _Tok()) is None
    dry = Dry.from_settings({"dry_multiplier": 1.2, "dry_base": 1.75, "dry_allowed_length": 2,
                             "dry_penalty_last_n": 1024}, _Tok())
    assert (dry.multiplier, dry.base, dry.allowed, dry.last_n) == (1.2, 1.75, 2, 1024)
    assert "DRY multiplier 1.2" in dry.describe()


def test_unconstrained_rows_decode_with_nothing_dry_alone_or_the_whole_teacher_control():
    from pocketguide.training.eval_run import unconstrained_control
    from pocketguide.training.generate import RepeatPenalty, Repetition

    teacher = Repetition(RepeatPenalty(1.1, 64), _dry())
    assert unconstrained_control(teacher, "none") is None
    dry_only = unconstrained_control(teacher, "dry")
    assert dry_only.repeat is None and dry_only.dry is teacher.dry
    assert dry_only.describe().startswith("DRY multiplier") and "repeat penalty" not in dry_only.describe()
    assert unconstrained_control(teacher, "teacher") is teacher
    assert unconstrained_control(Repetition(RepeatPenalty(1.1, 64)), "dry") is None  # the teacher has no DRY
    assert unconstrained_control(None, "teacher") is None
