"""Sizes that follow the data: the token lengths of the records decide max_seq_length, the batches, the
eval generation cap and whether gradient checkpointing is needed.

Real teacher answers are long (the original PocketGuide data: prompt + answer median 1,477 tokens, max
2,467; the answer alone 499–1,950), toy ones short (~300). One fixed setting is wrong for one of them: a
640-token cap rejected every real record, a 448-token generation cap cut every real answer.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

from pocketguide.training.model import TrainingError

LENGTH_MULTIPLE = 64  # an auto max_seq_length is rounded up to this (tidy numbers, nothing depends on it)
EVAL_MARGIN = 1.25  # an eval answer may run this much longer than the longest reference before it is capped
EVAL_MIN_NEW_TOKENS = 64
# bytes of activations kept for backward, per token and decoder layer, per unit of hidden size, in fp32:
# ~34 per hidden unit at 16 bits for a transformer layer (Korthikanti et al. 2022, attention scores
# excluded: SDPA keeps none), doubled for fp32
ACTIVATION_BYTES_PER_HIDDEN = 68
CHECKPOINT_SHARE = 0.5  # checkpointing turns on when one micro-batch's activations would take more of free memory


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def distribution(values: list[int]) -> dict[str, int]:
    v = sorted(values)
    if not v:
        return {"n": 0}
    return {"n": len(v), "min": v[0], "p50": percentile(v, 0.5), "p90": percentile(v, 0.9),
            "p95": percentile(v, 0.95), "max": v[-1]}


def round_up(n: int, multiple: int) -> int:
    return multiple * max(1, math.ceil(n / multiple))


def pick_max_seq_length(totals: list[int], coverage: float, set_value: int | None) -> tuple[int, str]:
    """(max_seq_length, how it was chosen). None: the smallest multiple of 64 that keeps `coverage` of the
    records. A set value that keeps less fails here, before any training, saying what to set."""
    if not totals:
        raise TrainingError("no records to measure: the training split is empty")
    ordered = sorted(totals)
    need = percentile(ordered, coverage)
    if set_value is None:
        return round_up(need, LENGTH_MULTIPLE), f"auto: keeps {coverage:.0%} of {len(ordered)} records"
    kept = sum(1 for t in ordered if t <= set_value)
    if kept / len(ordered) < coverage:
        d = distribution(ordered)
        raise TrainingError(
            f"max_seq_length {set_value} keeps {kept} of {len(ordered)} records ({kept / len(ordered):.0%}); "
            f"their prompt + target lengths are p50 {d['p50']}, p95 {d['p95']}, max {d['max']} tokens — set "
            f"max_seq_length: {round_up(need, LENGTH_MULTIPLE)} (keeps {coverage:.0%}), or null to pick it "
            f"from the data")
    return set_value, f"set: keeps {kept / len(ordered):.0%} of {len(ordered)} records"


def token_batches(lengths: list[int], budget: int | None, cap: int | None, seed: int) -> Iterator[list[int]]:
    """Endless micro-batches of record indices over seeded per-epoch shuffles: records join a micro-batch
    while its padded size (rows × longest) stays within `budget` tokens and its rows within `cap` (at least
    one record each; `budget` None = `cap` records). A pure function of its arguments, so a resumed run
    sees exactly the batches it would have seen."""
    if not lengths:
        raise ValueError("no records")
    if budget is None and not cap:
        raise ValueError("set a token budget or a record cap")
    n, epoch, pending = len(lengths), 0, []
    batch: list[int] = []
    width = 0
    while True:
        if not pending:
            pending = list(range(n))
            random.Random(seed * 1_000_003 + epoch).shuffle(pending)
            pending.reverse()  # pop() from the end walks the shuffle in order
            epoch += 1
        i = pending[-1]
        w = max(width, lengths[i])
        full = bool(batch) and ((cap is not None and len(batch) >= cap) or
                                (budget is not None and w * (len(batch) + 1) > budget))
        if full:
            yield batch
            batch, width = [], 0
            continue
        batch.append(pending.pop())
        width = w


def plan_steps(lengths: list[int], budget: int | None, cap: int | None, seed: int, grad_accum: int,
               max_steps: int | None, epochs: float | None) -> list[list[list[int]]]:
    """Every optimizer step's micro-batches: `max_steps` steps, else as many as `epochs` passes need."""
    stream = token_batches(lengths, budget, cap, seed)
    if max_steps is None:
        want, seen, micro = math.ceil((epochs or 1.0) * len(lengths)), 0, []
        while seen < want:
            micro.append(next(stream))
            seen += len(micro[-1])
        steps = max(1, math.ceil(len(micro) / grad_accum))
        micro += [next(stream) for _ in range(steps * grad_accum - len(micro))]
    else:
        micro = [next(stream) for _ in range(max_steps * grad_accum)]
    return [micro[k * grad_accum:(k + 1) * grad_accum] for k in range(len(micro) // grad_accum)]


def eval_max_new_tokens(reference_tokens: list[int], set_value: int | None) -> tuple[int, str]:
    """The generation cap: the set value, else the longest reference answer × 1.25 (rounded up to 64), so an
    answer as long as the data's is never cut by the cap; unfinished answers are counted and reported."""
    if set_value is not None:
        return set_value, "set"
    if not reference_tokens:
        raise TrainingError("eval.max_new_tokens is null (derive it from the data) but no reference answers or "
                            "training targets were found to measure — set options.eval.max_new_tokens")
    longest = max(reference_tokens)
    value = max(EVAL_MIN_NEW_TOKENS, round_up(math.ceil(longest * EVAL_MARGIN), LENGTH_MULTIPLE))
    return value, f"auto: longest reference or training answer {longest} tokens × {EVAL_MARGIN}"


def reference_tokens(tok: Any, references: list[str]) -> list[int]:
    """Token counts of the suite's reference answers as the model would write them (EOS included)."""
    return [len(tok(r, add_special_tokens=False)["input_ids"]) + 1 for r in references if r]


def generation_cap(tok: Any, references: list[str], fallback_targets: list[int] | None,
                   set_value: int | None) -> tuple[int, str, list[int]]:
    """(max_new_tokens, how it was chosen, the reference lengths): from the longest of the suite's reference
    answers and the training targets, unless set. (The references alone once gave a cap of 320 tokens — 3
    test answers — while the student had learned from answers up to 450: 88% of its answers were cut.)"""
    refs = reference_tokens(tok, references)
    value, how = eval_max_new_tokens(refs + list(fallback_targets or []), set_value)
    return value, how, refs


def available_memory(device: Any) -> int | None:
    """Free bytes on the device: CUDA's free memory, else the host's MemAvailable (None when unknown)."""
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def activation_bytes(model_config: Any, tokens: int, dtype_bytes: int = 4) -> int:
    """Estimated activations one forward pass keeps for backward over `tokens` tokens (all rows together)."""
    hidden = int(getattr(model_config, "hidden_size", 0) or 0)
    layers = int(getattr(model_config, "num_hidden_layers", 0) or 0)
    return int(tokens * layers * hidden * ACTIVATION_BYTES_PER_HIDDEN * dtype_bytes / 4)


def want_checkpointing(setting: bool | str, model_config: Any, micro_tokens: int, device: Any,
                       dtype_bytes: int) -> tuple[bool, str]:
    """(on, why): `auto` turns gradient checkpointing on when the largest micro-batch's activations would
    take more than half of the free memory (recomputing them costs ~30% more time per step)."""
    if setting is not True and setting is not False and setting != "auto":
        raise TrainingError(f"gradient_checkpointing: {setting!r} — use true, false or auto")
    if setting != "auto":
        return bool(setting), "set"
    need = activation_bytes(model_config, micro_tokens, dtype_bytes)
    free = available_memory(device)
    if free is None:
        return False, f"auto: free memory unknown, activations ≈ {need / 2**30:.1f} GiB"
    on = need > CHECKPOINT_SHARE * free
    return on, (f"auto: activations ≈ {need / 2**30:.1f} GiB for {micro_tokens} tokens vs "
                f"{free / 2**30:.1f} GiB free")
