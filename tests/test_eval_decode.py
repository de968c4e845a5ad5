"""The evaluation's greedy loop (training/decode.py) on the real embedded SmolLM2-135M: token-identical to
transformers' model.generate, free and under a grammar with the teacher's repeat penalty, while rows that
end leave the batch; and the constrained subset is stratified by payload type."""

from __future__ import annotations

import json

import pytest
from training_helpers import base_cache_dir

from pocketguide.training.evaluate import SuiteItem, stratified_first

PROMPTS = [[{"role": "user", "content": "Reply with the single word: yes."}],
           [{"role": "user", "content": "Name three colours."}],
           [{"role": "system", "content": "Answer with one JSON object."},
            {"role": "user", "content": "Give me a packing list for Oslo in winter."}]]
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["city", "items"],
          "properties": {"city": {"type": "string", "maxLength": 12},
                         "items": {"type": "array", "maxItems": 3, "items": {"type": "string", "maxLength": 10}}}}


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    import torch

    from pocketguide.training.model import load_base, prepare_base

    torch.manual_seed(0)
    model, tok = load_base(prepare_base(None, base_cache_dir(tmp_path_factory)), torch.device("cpu"), torch.float32)
    tok.padding_side = "left"
    return model.eval(), tok


def _both(student, grammars=None, penalty=None, max_new=32):
    from pocketguide.training.generate import Generator

    model, tok = student
    new = Generator(model, tok, "cpu", max_new).run(PROMPTS, grammars, penalty)
    ref = Generator(model, tok, "cpu", max_new, engine="generate").run(PROMPTS, grammars, penalty)
    return new, ref


def test_free_greedy_is_token_identical_to_generate_and_drops_finished_rows(student):
    import torch

    from pocketguide.training.data import prompt_ids
    from pocketguide.training.decode import greedy

    new, ref = _both(student)
    assert [(r["text"], r["finished"]) for r in new] == [(r["text"], r["finished"]) for r in ref]
    lengths = sorted(r["new_tokens"] for r in new)
    assert lengths[0] < lengths[-1] and new[0]["finished"]  # "yes" ends early, the packing list runs on
    model, tok = student
    seqs = [prompt_ids(tok, p) for p in PROMPTS]
    w = max(map(len, seqs))
    ids = torch.tensor([[tok.pad_token_id] * (w - len(s)) + s for s in seqs])
    mask = torch.tensor([[0] * (w - len(s)) + [1] * len(s) for s in seqs])
    out = greedy(model, ids, mask, 32, tok.eos_token_id)
    assert [len(t) for t in out.tokens] == [r["new_tokens"] for r in new]
    # the batch computed only the rows still decoding: one row per token after each row's first
    assert out.row_steps == sum(len(t) + f - 1 for t, f in zip(out.tokens, out.finished)) < out.steps * 3


def test_constrained_greedy_with_the_repeat_penalty_is_token_identical_to_generate(student):
    pytest.importorskip("xgrammar")
    from pocketguide.training.generate import Generator, RepeatPenalty

    model, tok = student
    compiled = Generator(model, tok, "cpu", 8).grammar("tiny", SCHEMA)
    new, ref = _both(student, [compiled] * 3, RepeatPenalty(1.2, 64), max_new=48)
    assert [(r["text"], r["finished"]) for r in new] == [(r["text"], r["finished"]) for r in ref]
    for r in new:
        if r["finished"]:
            assert set(json.loads(r["text"])) == {"city", "items"}


def test_a_pattern_bound_xgrammar_aborts_on_is_lifted_and_reported(student):
    xgr = pytest.importorskip("xgrammar")
    from pocketguide.training.generate import Generator

    model, tok = student
    long_text = {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9 ,.;'()&%!?+-]{1,199}$", "maxLength": 200}
    schema = {"type": "object", "properties": {"time_block": long_text}, "required": ["time_block"]}
    raw = xgr.GrammarCompiler(xgr.TokenizerInfo.from_huggingface(tok, vocab_size=model.config.vocab_size))
    with pytest.raises(RuntimeError):  # the xgrammar bug grammar_compat works around; drop the rewrite once fixed
        raw.compile_json_schema(json.dumps(schema), any_whitespace=False)
    gen = Generator(model, tok, "cpu", 8)
    assert gen.grammar("itinerary", schema) is not None
    assert len(gen.grammar_notes) == 1 and "1 pattern repetition bound" in gen.grammar_notes[0]


def test_the_constrained_subset_takes_each_payload_type_in_turn():
    items = [SuiteItem(f"{t}{i}", t, [], None) for t in ("a", "b", "c") for i in range(4)]
    assert [i.id for i in stratified_first(items, 5)] == ["a0", "a1", "b0", "b1", "c0"]
    assert stratified_first(items, None) == items and stratified_first(items, 99) == items
    assert [i.id for i in stratified_first(items[:5], 3)] == ["a0", "a1", "b0"]  # a type that runs out is skipped


def test_a_row_that_can_no_longer_parse_is_stopped_and_the_others_are_untouched(student):
    from pocketguide.training.generate import Generator

    model, tok = student
    free = Generator(model, tok, "cpu", 24).run(PROMPTS)
    cut = Generator(model, tok, "cpu", 24).run(PROMPTS, stop_unparseable=True)
    for a, b in zip(free, cut):
        if b["stopped_unparseable"]:  # its text so far cannot begin one JSON object; nothing after could parse
            assert a["text"].startswith(b["text"]) and b["new_tokens"] <= a["new_tokens"] and not b["finished"]
            try:
                json.loads(a["text"])
                parsed = True
            except ValueError:
                parsed = False
            assert not parsed
        else:
            assert (a["text"], a["finished"]) == (b["text"], b["finished"])
    assert cut[1]["stopped_unparseable"] and cut[1]["new_tokens"] <= 2  # "Name three colours." answers in prose


def test_several_suites_decode_in_one_batch_and_rows_keep_their_suite(student):
    """A short reference suite joins the held-out prompts' batch instead of paying its own tail of lone steps."""
    import contextlib

    from pocketguide.training.evaluate import Schemas, evaluate
    from pocketguide.training.generate import Generator

    model, tok = student
    gen, batches = Generator(model, tok, "cpu", 6), []
    real_run = gen.run
    gen.run = lambda prompts, *a, **k: batches.append(len(prompts)) or real_run(prompts, *a, **k)
    heldout = [SuiteItem(f"h{i}", None, p, None, suite="heldout") for i, p in enumerate(PROMPTS)]
    refs = [SuiteItem("r0", None, PROMPTS[1], "{}", suite="eval_suite")]
    rows = evaluate({"base": contextlib.nullcontext}, gen, heldout + refs, Schemas({}, {}), ["unconstrained"], 8, [])
    assert batches == [4]
    assert [(r["id"], r["suite"]) for r in rows] == [("h0", "heldout"), ("h1", "heldout"), ("h2", "heldout"),
                                                     ("r0", "eval_suite")]
