"""llama.cpp's DRY ("don't repeat yourself") sampler as a scores processor for the evaluation's greedy loop.

The teacher drafts with DRY (teacher.extra_body dry_*): a candidate token that would extend a repeat of an
earlier token sequence of length n ≥ allowed_length loses multiplier × base^(n − allowed_length) from its
logit. Matching looks back over the last `penalty_last_n` tokens (prompt included, as llama.cpp's context
is) and stops at a sequence breaker; a token is a breaker when its text contains one of the breaker strings
(llama.cpp's defaults: newline, ':', '"', '*'), so JSON keys and punctuation never build up a match while a
sentence repeated inside a string does. With it the evaluation can decode the student with the repetition
control its training data was drafted with (options.eval.unconstrained_repetition and the constrained mode)."""

from __future__ import annotations

from typing import Any

DEFAULT_BREAKERS = ("\n", ":", '"', "*")


class Dry:
    def __init__(self, multiplier: float, base: float, allowed_length: int, last_n: int,
                 breaker_ids: frozenset[int]):
        self.multiplier, self.base, self.allowed, self.last_n = multiplier, base, max(1, allowed_length), last_n
        self.breakers = breaker_ids

    @classmethod
    def from_settings(cls, extra: dict[str, Any], tok: Any) -> Dry | None:
        """From llama.cpp's request fields (dry_multiplier, dry_base, dry_allowed_length, dry_penalty_last_n,
        dry_sequence_breakers); None when the multiplier is 0 or absent (DRY off)."""
        mult = float(extra.get("dry_multiplier") or 0)
        if mult <= 0:
            return None
        last_n = int(extra.get("dry_penalty_last_n", -1))
        strings = tuple(extra.get("dry_sequence_breakers") or DEFAULT_BREAKERS)
        return cls(mult, float(extra.get("dry_base", 1.75)), int(extra.get("dry_allowed_length", 2)),
                   1 << 30 if last_n <= 0 else last_n, breaker_tokens(tok, strings))

    def describe(self) -> str:
        window = "the whole context" if self.last_n >= 1 << 30 else f"the last {self.last_n} tokens"
        return (f"DRY multiplier {self.multiplier}, base {self.base}, allowed length {self.allowed}, over {window}")

    def match_lengths(self, seq: list[int]) -> dict[int, int]:
        """candidate token → the longest earlier sequence that it would repeat, ending at `seq`'s last token."""
        n = len(seq)
        if n < 2 or seq[-1] in self.breakers:
            return {}
        last, out = seq[-1], {}
        for i in range(n - 2, -1, -1):
            if seq[i] != last:
                continue
            k = 1
            while k <= i and seq[i - k] == seq[n - 1 - k] and seq[i - k] not in self.breakers:
                k += 1
            if k >= self.allowed:
                cand = seq[i + 1]
                out[cand] = max(out.get(cand, 0), k)
        return out

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        for row, ids in enumerate(input_ids[:, -self.last_n:].tolist()):
            for token, k in self.match_lengths(ids).items():
                scores[row, token] -= self.multiplier * self.base ** (k - self.allowed)
        return scores


def breaker_tokens(tok: Any, strings: tuple[str, ...]) -> frozenset[int]:
    """Every token whose text contains a breaker string, plus the special tokens (padding among them)."""
    ids = set(getattr(tok, "all_special_ids", []) or [])
    for token_id in range(len(tok)):
        text = tok.decode([token_id])
        if any(s in text for s in strings):
            ids.add(token_id)
    return frozenset(ids)
