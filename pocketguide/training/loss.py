"""The SFT loss, and how a micro-batch's loss is computed and backpropagated.

The lean path (`lean_backward`, `lean_val_sums`): each sequence of the micro-batch goes through the model
on its own (no padding, so attention needs no mask and runs causal-only; the activations held at once are
one sequence's, not the padded batch's), and the loss is taken on target positions only, from the last
hidden states in chunks — the logits for vocabulary × sequence are never held: a chunk of target rows ×
vocabulary at a time (~128 MB in fp32), its gradient worked out in the same pass. The micro-batch's loss is
the sum over its target tokens / their number, exactly the old path's mean: same value, same gradients.

A prompt prefix every sequence of the micro-batch shares (the chat template's system message) runs once,
not once per sequence (`sequence_losses`): its keys and values become the cache each sequence's rest
attends to, and the gradients gathered on that cache go back through the prefix in one pass after the last
sequence. Same loss and gradients (LoRA dropout then draws one mask for the shared prefix, not one per
sequence); on 2 cores it saves the prefix's share of every step's forward and backward.

`full_backward` is the old path (the padded batch through the model's own `.loss`: fp32 logits for every
position, then a shifted cross-entropy); it stays for comparison — the tests check both give the same loss
and gradients, and bench/train_student.py measures both."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pocketguide.training.data import IGNORE

CHUNK_ELEMENTS = 1 << 25  # target rows × vocabulary per chunk: 32M fp32 values = 128 MB
MIN_SHARED_PREFIX = 16  # a shorter common prompt prefix is not worth its own pass


def _decoder_and_head(model: Any) -> tuple[Any, Any]:
    """(the decoder stack that returns hidden states, the lm_head) of a causal LM, peft-wrapped or not."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else getattr(base, "model", None)
    head = base.get_output_embeddings()
    if decoder is None or head is None:
        raise TypeError(f"{type(base).__name__} has no decoder/lm_head pair; use full_backward")
    return decoder, head


def _chunk_rows(vocab: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(1, vocab))


def _target_ce_forward(hidden: Any, weight: Any, bias: Any, targets: Any, want_grad: bool) -> tuple[Any, Any]:
    """Summed cross-entropy of `targets` under logits = hidden @ weight.T (+ bias), chunk by chunk, and
    (when asked) d(sum)/d(hidden). Logits are fp32 whatever the model's dtype, as the old path did."""
    import torch

    total = torch.zeros((), dtype=torch.float32, device=hidden.device)
    grad = torch.empty_like(hidden) if want_grad else None
    step = _chunk_rows(weight.shape[0])
    for i in range(0, hidden.shape[0], step):
        h, y = hidden[i:i + step], targets[i:i + step]
        logits = (h @ weight.t()).float()
        if bias is not None:
            logits += bias.float()
        lse = torch.logsumexp(logits, dim=-1)
        total += (lse - logits.gather(1, y[:, None]).squeeze(1)).sum()
        if want_grad:  # softmax − one-hot, in place in the chunk's logits, then back through the head
            probs = logits.sub_(lse[:, None]).exp_()
            probs[torch.arange(y.shape[0], device=y.device), y] -= 1.0
            grad[i:i + step] = (probs.to(weight.dtype) @ weight).to(hidden.dtype)
        del logits
    return total, grad


class _TargetCrossEntropy:
    """torch.autograd.Function built lazily (torch is an optional extra)."""

    fn: Any = None

    @classmethod
    def get(cls) -> Any:
        if cls.fn is None:
            import torch

            class TargetCrossEntropy(torch.autograd.Function):
                @staticmethod
                def forward(ctx: Any, hidden: Any, weight: Any, bias: Any, targets: Any) -> Any:
                    total, grad = _target_ce_forward(hidden, weight, bias, targets, hidden.requires_grad)
                    ctx.save_for_backward(grad if grad is not None else torch.empty(0))
                    return total

                @staticmethod
                def backward(ctx: Any, g: Any) -> Any:
                    (grad,) = ctx.saved_tensors
                    return (grad * g.to(grad.dtype) if grad.numel() else None), None, None, None

            cls.fn = TargetCrossEntropy
        return cls.fn


def _rows_loss(hidden: Any, next_labels: Any, head: Any) -> tuple[Any, int]:
    """(summed loss, target tokens) of hidden rows whose next token is `next_labels` (IGNORE rows skipped)."""
    keep = next_labels != IGNORE
    rows, targets = hidden[keep], next_labels[keep]
    n = int(targets.shape[0])
    if n == 0:
        return hidden.sum() * 0.0, 0
    return _TargetCrossEntropy.get().apply(rows, head.weight, getattr(head, "bias", None), targets), n


def _frozen_head(model: Any) -> tuple[Any, Any]:
    decoder, head = _decoder_and_head(model)
    if head.weight.requires_grad:
        raise ValueError("the lean loss does not train the lm_head; freeze it (LoRA does) or use full_backward")
    return decoder, head


def target_loss_sum(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """(summed loss over target tokens, their number) for a collated batch: the decoder runs on the whole
    sequence, the head and the cross-entropy only where a label is not IGNORE (shifted by one, as a causal
    LM predicts the next token). The lm_head must be frozen (LoRA leaves it so). A batch without padding
    passes no attention mask, so attention runs causal-only (SDPA's fused kernel, nothing T × T kept)."""
    decoder, head = _frozen_head(model)
    mask = batch["attention_mask"]
    hidden = decoder(input_ids=batch["input_ids"], attention_mask=None if bool(mask.all()) else mask,
                     use_cache=False)[0]
    return _rows_loss(hidden[:, :-1], batch["labels"][:, 1:], head)


def target_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, int]:
    """(mean loss per target token, number of target tokens) of a collated batch, the lean way."""
    total, n = target_loss_sum(model, batch)
    return (total / n if n else total), n


def _one(example: Any, pad: int, device: Any) -> dict[str, Any]:
    from pocketguide.training.data import collate

    return {k: v.to(device) for k, v in collate([example], pad).items()}


def _first_loss_row(example: Any) -> int:
    """The first position whose next token is a target (where the loss starts)."""
    return next((i - 1 for i, y in enumerate(example.labels) if y != IGNORE), len(example.labels))


def shared_prefix(examples: list[Any]) -> int:
    """Leading tokens all `examples` share that no loss row needs: the common prefix, cut before the first
    row any of them takes a loss on, and leaving each at least one token of its own (0 for one example)."""
    if len(examples) < 2:
        return 0
    limit = min(min(len(e.input_ids) - 1, _first_loss_row(e)) for e in examples)
    first, n = examples[0].input_ids, 0
    while n < limit and all(e.input_ids[n] == first[n] for e in examples[1:]):
        n += 1
    return n


def _can_share(decoder: Any) -> bool:
    """A cached prefix is exact for full causal attention without activation checkpointing (which drops the
    cache in training); sliding-window or hybrid layers keep the per-sequence pass."""
    config = getattr(decoder, "config", None)
    kinds = set(getattr(config, "layer_types", None) or ["full_attention"])
    return (not getattr(decoder, "gradient_checkpointing", False) and kinds == {"full_attention"}
            and getattr(config, "sliding_window", None) is None)


def sequence_losses(model: Any, examples: list[Any], pad: int, device: Any,
                    each: Callable[[Any, int], None]) -> None:
    """Call `each(summed loss, target tokens)` for every example in turn (it may backpropagate). A prefix
    of at least MIN_SHARED_PREFIX tokens they all share runs once: its keys and values are the cache each
    example's rest attends to, and when gradients are on, what they gathered on that cache goes back
    through the prefix in one pass after the last example."""
    import torch
    from transformers import DynamicCache

    decoder, head = _frozen_head(model)
    p = shared_prefix(examples) if _can_share(decoder) else 0
    if p < MIN_SHARED_PREFIX:
        for e in examples:
            each(*target_loss_sum(model, _one(e, pad, device)))
        return
    ids = torch.tensor([examples[0].input_ids[:p]], device=device)
    cache = decoder(input_ids=ids, use_cache=True).past_key_values
    kv = [t for layer in cache.layers for t in (layer.keys, layer.values)]
    leaves = [t.detach().requires_grad_(t.requires_grad) for t in kv]
    for e in examples:
        own = DynamicCache(ddp_cache_data=list(zip(leaves[0::2], leaves[1::2])))
        hidden = decoder(input_ids=torch.tensor([e.input_ids[p:]], device=device), past_key_values=own,
                         use_cache=True)[0]
        each(*_rows_loss(hidden[0, :-1], torch.tensor(e.labels[p + 1:], device=device), head))
    done = [(t, leaf.grad) for t, leaf in zip(kv, leaves) if leaf.grad is not None]
    if done:
        torch.autograd.backward([t for t, _ in done], [g for _, g in done])


def lean_backward(model: Any, examples: list[Any], pad: int, device: Any, scale: float) -> tuple[float, int]:
    """Backpropagate `scale` × the micro-batch's mean loss per target token, one sequence at a time (a shared
    prompt prefix once). Returns (the mean loss, tokens seen)."""
    n_total = max(1, sum(e.n_target for e in examples))
    total = 0.0

    def each(summed: Any, _n: int) -> None:
        nonlocal total
        (summed * (scale / n_total)).backward()
        total += float(summed.detach())

    sequence_losses(model, examples, pad, device, each)
    return total / n_total, sum(len(e.input_ids) for e in examples)


def full_backward(model: Any, examples: list[Any], pad: int, device: Any, scale: float) -> tuple[float, int]:
    """The old path: the padded micro-batch through the model's own loss (fp32 logits everywhere)."""
    from pocketguide.training.data import collate

    b = {k: v.to(device) for k, v in collate(examples, pad).items()}
    loss = model(**b).loss
    (loss * scale).backward()
    return float(loss.detach()), int(b["attention_mask"].sum())


def lean_val_sums(model: Any, examples: list[Any], pad: int, device: Any) -> tuple[float, int]:
    """(summed loss, target tokens) over examples, one sequence at a time; call under torch.no_grad()."""
    sums = [0.0, 0]

    def each(summed: Any, n: int) -> None:
        sums[0] += float(summed)
        sums[1] += n

    sequence_losses(model, examples, pad, device, each)
    return sums[0], int(sums[1])


def full_val_sums(model: Any, examples: list[Any], pad: int, device: Any) -> tuple[float, int]:
    """The old path's validation: the padded batch's mean loss × its target tokens."""
    from pocketguide.training.data import collate

    b = {k: v.to(device) for k, v in collate(examples, pad).items()}
    n = int((b["labels"][:, 1:] != IGNORE).sum())
    return float(model(**b).loss) * n, n


PATHS = {"lean": (lean_backward, lean_val_sums), "full": (full_backward, full_val_sums)}


def path_for(model: Any) -> tuple[str, str | None]:
    """("lean", None), or ("full", why) for a model whose logits are more than hidden @ lm_head (a final
    logit soft-cap or scale, as Gemma 2 or Cohere apply) or whose lm_head is trained."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    for name in ("final_logit_softcapping", "logit_scale", "output_multiplier_scale"):
        if getattr(config, name, None) not in (None, 1, 1.0):
            return "full", f"the model's config sets {name}: its logits are not hidden @ lm_head"
    try:
        _, head = _decoder_and_head(model)
    except TypeError as exc:
        return "full", str(exc)
    if head.weight.requires_grad:
        return "full", "the lm_head is trained"
    return "lean", None
