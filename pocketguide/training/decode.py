"""Greedy decoding with a KV cache that drops a row from the batch the moment it ends.

`model.generate` keeps every row of a batch in every forward pass until the longest row ends: one answer
that loops to the token cap makes the whole batch decode to the cap, the finished rows computing pad
tokens. Here a row that emits EOS (or reaches the cap) leaves the batch, its cache rows with it, so each
step costs what the rows still decoding cost. The arithmetic per row is the same as `model.generate`'s
greedy search (same left padding, positions, cache, float32 scores, processors in the same order), so
the tokens are the same (tests/test_eval_decode.py checks it against `model.generate`).

A grammar constraint is applied per row (xgrammar matchers kept by row, not by batch position), so rows
can leave without disturbing the others' grammar state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pocketguide.training.model import TrainingError

#: (input_ids of the rows still decoding, their float32 scores) → scores; like a transformers LogitsProcessor
Processor = Callable[[Any, Any], Any]


class GrammarRows:
    """One xgrammar matcher per row of the original batch; masks the scores of the rows still decoding."""

    def __init__(self, grammars: list[Any], vocab_size: int):
        import xgrammar as xgr

        self.xgr = xgr
        self.matchers = [xgr.GrammarMatcher(g) for g in grammars]
        self.bitmask = xgr.allocate_token_bitmask(len(grammars), vocab_size)

    def mask(self, rows: list[int], scores: Any) -> Any:
        for i, r in enumerate(rows):
            self.matchers[r].fill_next_token_bitmask(self.bitmask, i)
        self.xgr.apply_token_bitmask_inplace(scores, self.bitmask[:len(rows)])
        return scores

    def accept(self, rows: list[int], tokens: list[int]) -> None:
        for r, t in zip(rows, tokens):
            m = self.matchers[r]
            if not m.is_terminated() and not m.accept_token(t):
                raise TrainingError(f"constrained decoding: the grammar refused token {t} it had allowed — "
                                    f"a tokenizer/grammar mismatch; set options.eval.modes: [unconstrained]")


@dataclass
class Decoded:
    tokens: list[list[int]]  # per input row: the new tokens, EOS excluded
    finished: list[bool]  # the row ended with EOS (else it stopped at the cap or was stopped)
    stopped: list[bool] | None = None  # the row was stopped early by `stop` (its answer can no longer parse)
    steps: int = 0  # forward passes after the prefill
    row_steps: int = 0  # rows summed over those passes (what the batch computed)


def greedy(model: Any, ids: Any, mask: Any, max_new: int, eos: int, processors: list[Processor] | None = None,
           grammar: GrammarRows | None = None, stop: Callable[[int, int], bool] | None = None) -> Decoded:
    """Greedy decoding of a left-padded batch (`ids`, `mask`: [rows, width]). `processors` run on the scores
    first (e.g. the repeat penalty, which sees the padded ids as model.generate's does), the grammar last.
    `stop(row, token)` → True ends that row after the token (e.g. its answer can no longer parse); the
    other rows' tokens are unchanged by it."""
    import torch

    n = ids.shape[0]
    rows = list(range(n))  # original row index of each batch position
    out: list[list[int]] = [[] for _ in range(n)]
    finished, stopped = [False] * n, [False] * n
    pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
    cache, steps, row_steps = None, 0, 0
    step_ids, step_pos = ids, pos
    with torch.no_grad():
        while rows:
            res = model(input_ids=step_ids, attention_mask=mask, position_ids=step_pos, past_key_values=cache,
                        use_cache=True, logits_to_keep=1)
            cache = res.past_key_values
            scores = res.logits[:, -1].to(copy=True, dtype=torch.float32)
            for p in processors or []:
                scores = p(ids, scores)
            if grammar is not None:
                scores = grammar.mask(rows, scores)
            nxt = torch.argmax(scores, dim=-1)
            toks = nxt.tolist()
            if grammar is not None:
                grammar.accept(rows, toks)
            keep = []
            for i, (r, t) in enumerate(zip(rows, toks)):
                if t == eos:
                    finished[r] = True
                    continue
                out[r].append(t)
                if stop is not None and stop(r, t):
                    stopped[r] = True
                elif len(out[r]) < max_new:
                    keep.append(i)
            ids = torch.cat([ids, nxt[:, None]], dim=-1)
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
            last_pos = step_pos[:, -1:] + 1
            if len(keep) < len(rows):  # rows that ended leave the batch, with their cache
                idx = torch.tensor(keep, dtype=torch.long, device=ids.device)
                ids, mask, last_pos, nxt = ids[idx], mask[idx], last_pos[idx], nxt[idx]
                if keep:
                    cache.batch_select_indices(idx)
                rows = [rows[i] for i in keep]
            step_ids, step_pos = nxt[:, None], last_pos
            if rows:
                steps += 1
                row_steps += len(rows)
    return Decoded(out, finished, stopped, steps, row_steps)
