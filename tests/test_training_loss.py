"""The lean loss (a sequence at a time, target positions only, chunked over the vocabulary, no full logits)
against the old path (the padded batch through the model's own loss over every position's fp32 logits), on
a tiny random Llama with LoRA."""

from __future__ import annotations

import copy
import random

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from pocketguide.training import loss as loss_module
from pocketguide.training.config import TrainConfig
from pocketguide.training.data import IGNORE, Example, collate
from pocketguide.training.loss import full_backward, full_val_sums, lean_backward, path_for, target_loss
from pocketguide.training.trainer import _optimizer_step, add_lora, val_loss

VOCAB = 300


def tiny_lora_model(cfg: TrainConfig):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=True, pad_token_id=0)
    return add_lora(LlamaForCausalLM(config), cfg)


def examples(n: int, seed: int = 1) -> list[Example]:
    """Prompts masked out, targets of varying length, so batches are right-padded and ragged."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        prompt = [rng.randrange(1, VOCAB) for _ in range(rng.randint(3, 12))]
        target = [rng.randrange(1, VOCAB) for _ in range(rng.randint(2, 10))]
        out.append(Example(f"e{i}", prompt + target, [IGNORE] * len(prompt) + target))
    return out


def config(**over) -> TrainConfig:
    base = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"], "lr": 3e-2,
            "warmup_steps": 0, "max_steps": 5, "batch_size": 3, "seed": 0}
    base.update(over)
    return TrainConfig(**base)


def test_same_loss_and_gradients_as_the_full_logits_path(monkeypatch):
    cfg = config()
    model = tiny_lora_model(cfg)
    batch = examples(3)  # ragged: the old path pads, the lean one runs each sequence alone
    old, tokens_old = full_backward(model, batch, 0, torch.device("cpu"), 0.5)
    grads_old = {k: p.grad.clone() for k, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    monkeypatch.setattr(loss_module, "CHUNK_ELEMENTS", VOCAB * 5)  # 5 target rows per chunk: several chunks
    new, tokens_new = lean_backward(model, batch, 0, torch.device("cpu"), 0.5)
    assert tokens_new == tokens_old == sum(len(e.input_ids) for e in batch)
    assert sum(e.n_target for e in batch) > 5
    assert new == pytest.approx(old, rel=1e-5)
    for k, p in model.named_parameters():
        if p.requires_grad:
            assert torch.allclose(p.grad, grads_old[k], rtol=1e-4, atol=1e-7), k


def test_first_steps_match_the_old_path():
    cfg = config()
    first = tiny_lora_model(cfg)
    second = copy.deepcopy(first)
    data = examples(3)  # one batch's worth: every step sees the same examples, so the loss must fall
    curves = []
    for model, fn in ((first, full_backward), (second, lean_backward)):
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr)
        model.train()
        curves.append([_optimizer_step(model, opt, params, cfg, [data], 0, torch.device("cpu"), step, cfg.lr,
                                       backward=fn)[0] for step in range(cfg.max_steps)])
    old, new = curves
    assert old[-1] < old[0]  # the tiny model learns, so the comparison covers changing weights
    assert new == pytest.approx(old, rel=1e-4)
    two = config(batch_size=2)
    assert val_loss(second, examples(5, seed=2), two, 0, torch.device("cpu")) == pytest.approx(
        val_loss(second, examples(5, seed=2), two, 0, torch.device("cpu"), sums=full_val_sums), rel=1e-5)


def test_a_batch_without_targets_has_zero_loss_and_no_nan():
    model = tiny_lora_model(config())
    ex = Example("p", [5, 6, 7], [IGNORE] * 3)
    loss, n = target_loss(model, collate([ex], pad_id=0))
    assert n == 0 and float(loss.detach()) == 0.0
    loss.backward()  # still differentiable: grad_accum sums it with the others


def test_models_whose_logits_are_not_hidden_at_lm_head_keep_the_full_path():
    model = tiny_lora_model(config())
    assert path_for(model) == ("lean", None)
    model.get_base_model().config.final_logit_softcapping = 30.0  # as Gemma 2 sets it
    path, why = path_for(model)
    assert path == "full" and "final_logit_softcapping" in why


@pytest.mark.parametrize("backward", [full_backward, lean_backward], ids=["full", "lean"])
def test_a_step_split_into_uneven_micro_batches_weighs_every_target_token_the_same(backward):
    """Token-budget micro-batches hold different numbers of target tokens: the step's loss and update must be
    the mean over all of the step's target tokens, as if the step were one batch (not a mean of batch means)."""
    cfg = config()
    one = tiny_lora_model(cfg)
    split = copy.deepcopy(one)
    data = examples(5)
    results = []
    for model, batches in ((one, [data]), (split, [data[:1], data[1:4], data[4:]])):
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=0.5)
        model.train()
        results.append(_optimizer_step(model, opt, params, cfg, batches, 0, torch.device("cpu"), 0, 0.5,
                                       backward=backward))
    (loss_one, tokens_one), (loss_split, tokens_split) = results
    assert tokens_one == tokens_split == sum(len(e.input_ids) for e in data)
    assert loss_split == pytest.approx(loss_one, rel=1e-5)
    after = dict(split.named_parameters())
    for k, p in one.named_parameters():
        if p.requires_grad:
            assert torch.allclose(p, after[k], rtol=1e-4, atol=1e-6), k


def shared_prompt_examples(n: int, prefix: int = 20, seed: int = 3) -> list[Example]:
    """A system message every record shares, then each record's own prompt and target (as SFT records are)."""
    rng = random.Random(seed)
    system = [rng.randrange(1, VOCAB) for _ in range(prefix)]
    out = []
    for i in range(n):
        prompt = system + [rng.randrange(1, VOCAB) for _ in range(rng.randint(3, 12))]
        target = [rng.randrange(1, VOCAB) for _ in range(rng.randint(2, 10))]
        out.append(Example(f"s{i}", prompt + target, [IGNORE] * len(prompt) + target))
    return out


def test_a_shared_prompt_prefix_runs_once_with_the_same_loss_and_gradients(monkeypatch):
    cfg = config()
    model = tiny_lora_model(cfg)
    batch = shared_prompt_examples(4)
    assert loss_module.shared_prefix(batch) >= 20 >= loss_module.MIN_SHARED_PREFIX
    old, _ = full_backward(model, batch, 0, torch.device("cpu"), 0.5)
    grads_old = {k: p.grad.clone() for k, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    lengths = []  # tokens per decoder call: the prefix once, then each record's own part
    decoder = model.get_base_model().get_decoder()
    hook = decoder.register_forward_hook(lambda _m, _a, kw, _o: lengths.append(kw["input_ids"].shape[1]),
                                         with_kwargs=True)
    new, tokens = lean_backward(model, batch, 0, torch.device("cpu"), 0.5)
    hook.remove()
    p = loss_module.shared_prefix(batch)
    assert lengths == [p] + [len(e.input_ids) - p for e in batch]
    assert tokens == sum(len(e.input_ids) for e in batch)
    assert new == pytest.approx(old, rel=1e-5)
    for k, param in model.named_parameters():
        if param.requires_grad:
            assert torch.allclose(param.grad, grads_old[k], rtol=1e-4, atol=1e-7), k
    model.zero_grad(set_to_none=True)
    monkeypatch.setattr(loss_module, "MIN_SHARED_PREFIX", 10_000)  # the per-sequence pass agrees too
    alone, _ = lean_backward(model, batch, 0, torch.device("cpu"), 0.5)
    assert alone == pytest.approx(new, rel=1e-5)
    with torch.no_grad():
        shared_sums = loss_module.lean_val_sums(model, batch, 0, torch.device("cpu"))
        full_sums = full_val_sums(model, batch, 0, torch.device("cpu"))
    assert shared_sums[1] == full_sums[1] == sum(e.n_target for e in batch)
    assert shared_sums[0] == pytest.approx(full_sums[0], rel=1e-5)


def test_the_shared_prefix_stops_before_the_first_loss_row():
    same_prompt = [Example("a", [1, 2, 3, 4, 5, 6], [IGNORE] * 4 + [5, 6]),
                   Example("b", [1, 2, 3, 4, 7, 8], [IGNORE] * 4 + [7, 8])]
    assert loss_module.shared_prefix(same_prompt) == 3  # row 3 predicts the first target token
    twins = [Example("a", [1, 2, 3], [IGNORE] * 3), Example("b", [1, 2, 3], [IGNORE] * 3)]
    assert loss_module.shared_prefix(twins) == 2  # each keeps a token of its own
    assert loss_module.shared_prefix(twins[:1]) == 0
    assert loss_module.shared_prefix([Example("c", [9, 2, 3], [IGNORE] * 3), twins[0]]) == 0


def test_activation_checkpointing_keeps_the_per_sequence_pass():
    """Checkpointed layers drop the cache in training, so the prefix is not shared then."""
    model = tiny_lora_model(config())
    decoder = model.get_base_model().get_decoder()
    assert loss_module._can_share(decoder)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert not loss_module._can_share(decoder)
