"""Tokenization for SFT: the chat template, the prompt masked out of the loss, EOS ending every target."""

from __future__ import annotations

import json

import pytest
from training_helpers import base_cache_dir, sft_lines

from pocketguide.training.config import TrainConfig
from pocketguide.training.data import IGNORE, BadRecord, encode, split_messages
from pocketguide.training.lengths import token_batches


@pytest.fixture(scope="session")
def tok(tmp_path_factory):
    from transformers import AutoTokenizer

    from pocketguide.training.model import prepare_base

    ref = prepare_base(None, base_cache_dir(tmp_path_factory))
    return AutoTokenizer.from_pretrained(str(ref.path))


def good_records():
    return [r for r in sft_lines() if not r["id"].startswith("bad")]


def test_every_target_ends_with_exactly_one_eos_and_the_prompt_is_masked(tok):
    for r in good_records():
        parsed = {"messages": r["messages"]}
        ex = encode(tok, r["id"], parsed, 256)
        prompt, target = split_messages(parsed)
        n_prompt = len(tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False))
        assert ex.labels[:n_prompt] == [IGNORE] * n_prompt  # no loss on the system/user turns
        trained = ex.labels[n_prompt:]
        assert IGNORE not in trained and trained[-1] == tok.eos_token_id
        assert trained.count(tok.eos_token_id) == 1
        assert tok.decode(trained[:-1]) == target  # the target is learned verbatim
        assert ex.input_ids[n_prompt:] == trained
        assert tok.decode(ex.input_ids[:n_prompt]).endswith("<|im_start|>assistant\n")


def test_a_target_that_already_ends_in_eos_gets_no_second_one(tok):
    r = good_records()[0]
    msgs = json.loads(json.dumps(r["messages"]))
    msgs[-1]["content"] += tok.eos_token
    ex = encode(tok, "x", {"messages": msgs}, 256)
    assert [x for x in ex.labels if x != IGNORE].count(tok.eos_token_id) == 1


@pytest.mark.parametrize("parsed, code", [
    ({"messages": [{"role": "user", "content": "hi"}]}, "bad_messages"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]}, "no_target"),
    ({"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "{}"}]}, "bad_messages"),
    ({"messages": "nope"}, "bad_messages"),
    (None, "bad_messages"),
])
def test_unusable_records_raise_with_a_reason_code(parsed, code):
    with pytest.raises(BadRecord) as exc:
        split_messages(parsed)
    assert exc.value.code == code


def test_an_overlong_record_is_refused_not_cut(tok):
    msgs = [{"role": "user", "content": "word " * 300}, {"role": "assistant", "content": "{}"}]
    with pytest.raises(BadRecord) as exc:
        encode(tok, "x", {"messages": msgs}, 64)
    assert exc.value.code == "too_long" and "max_seq_length 64" in str(exc.value)


def test_batches_are_a_pure_function_of_seed_and_index():
    def first(n, lengths, budget, cap, seed):
        stream = token_batches(lengths, budget, cap, seed)
        return [next(stream) for _ in range(n)]

    a = first(10, [1] * 10, None, 3, 7)
    assert a == first(10, [1] * 10, None, 3, 7)
    flat = [x for b in a[:3] for x in b] + a[3][:1]
    assert sorted(flat) == list(range(10))  # the first epoch visits every record once
    assert a != first(10, [1] * 10, None, 3, 8)


def test_micro_batches_fill_a_token_budget():
    lengths = [100] * 8 + [1500] * 2
    batches = [b for b, _ in zip(token_batches(lengths, 2048, None, 1), range(12))]
    for b in batches:
        width = max(lengths[i] for i in b)
        assert width * len(b) <= 2048 or len(b) == 1  # padded size within budget; a long record goes alone
    assert max(len(b) for b in batches) >= 2  # short records share a micro-batch
    assert any(len(b) == 1 and lengths[b[0]] == 1500 for b in batches)
    capped = [b for b, _ in zip(token_batches([10] * 50, 4096, 4, 1), range(5))]
    assert all(len(b) == 4 for b in capped)


def test_config_needs_steps_or_epochs_and_rejects_unknown_keys():
    with pytest.raises(ValueError, match="max_steps or epochs"):
        TrainConfig(max_steps=None, epochs=None)
    with pytest.raises(ValueError, match="extra"):
        TrainConfig.model_validate({"learning_rate": 1e-3})
    assert all(f.description for f in TrainConfig.model_fields.values())


def test_max_seq_length_follows_the_data_or_fails_early_saying_what_to_set():
    from pocketguide.training.lengths import eval_max_new_tokens, pick_max_seq_length
    from pocketguide.training.model import TrainingError

    real = [1200, 1350, 1420, 1477, 1500, 1610, 1700, 1850, 2100, 2467] * 2  # real-teacher-sized records
    assert pick_max_seq_length(real, 0.95, None) == (2496, "auto: keeps 95% of 20 records")
    with pytest.raises(TrainingError) as exc:
        pick_max_seq_length(real, 0.95, 640)
    assert "keeps 0 of 20 records" in str(exc.value) and "set max_seq_length: 2496" in str(exc.value)
    assert pick_max_seq_length(real, 0.95, 4096)[0] == 4096
    assert eval_max_new_tokens([499, 1950], None) == (2496, "auto: longest reference or training answer 1950 tokens × 1.25")
    assert eval_max_new_tokens([], 448) == (448, "set")
    with pytest.raises(TrainingError, match="set options.eval.max_new_tokens"):
        eval_max_new_tokens([], None)
