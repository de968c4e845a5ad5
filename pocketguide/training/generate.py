"""Batched greedy generation for the evaluation: left-padded prompts, an optional xgrammar JSON-schema
constraint per row, and llama.cpp's repeat penalty (the teacher's repetition control) for constrained rows.
Rows leave the batch as they end (decode.py); model.generate stays as the reference (hf_generate)."""

from __future__ import annotations

import json
import time
from typing import Any

from pocketguide.training.data import prompt_ids
from pocketguide.training.decode import GrammarRows, greedy
from pocketguide.training.grammar_compat import XGRAMMAR_MAX_REPEAT, xgrammar_compatible
from pocketguide.training.json_prefix import JsonObjectPrefix
from pocketguide.training.model import TrainingError


class RepeatPenalty:
    """llama.cpp's `repeat_penalty`: a token seen among the last `last_n` tokens has its logit divided by
    `penalty` (multiplied when negative). The teacher decodes with it; without it a small model under a
    grammar repeats one phrase until the string or token cap."""

    def __init__(self, penalty: float, last_n: int):
        self.penalty, self.last_n = penalty, last_n

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        window = input_ids[:, -self.last_n:]
        picked = torch.gather(scores, 1, window)
        picked = torch.where(picked < 0, picked * self.penalty, picked / self.penalty)
        return scores.scatter(1, window, picked)


class Repetition:
    """A teacher's repetition control as one scores processor: its repeat penalty, then DRY (training/dry.py),
    in llama.cpp's order; either may be absent."""

    def __init__(self, repeat: RepeatPenalty | None, dry: Any = None):
        self.repeat, self.dry = repeat, dry

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if self.repeat is not None:
            scores = self.repeat(input_ids, scores)
        if self.dry is not None:
            scores = self.dry(input_ids, scores)
        return scores

    def describe(self) -> str:
        parts = [f"repeat penalty {self.repeat.penalty} over the last {self.repeat.last_n} tokens"] if self.repeat else []
        parts += [self.dry.describe()] if self.dry is not None else []
        return " + ".join(parts) or "no repetition control"


class GrammarCompileError(TrainingError):
    """xgrammar rejected a decoding schema; that payload type's constrained rows are skipped and reported."""


class Generator:
    """Greedy, left-padded batched generation; optional grammar per row and repeat penalty. `engine`: "loop"
    (decode.greedy, the default) or "generate" (model.generate, for the benchmark's baseline)."""

    def __init__(self, model: Any, tok: Any, device: Any, max_new_tokens: int, engine: str = "loop"):
        self.model, self.tok, self.device, self.max_new, self.engine = model, tok, device, max_new_tokens, engine
        self._compiler = None
        self._grammars: dict[str, Any] = {}
        self.grammar_notes: list[str] = []  # what the grammar compile had to change, for the report

    def grammar(self, key: str, schema: dict[str, Any]) -> Any:
        """A compiled xgrammar grammar for `schema`, cached under `key` (the payload type)."""
        if key not in self._grammars:
            try:
                import xgrammar as xgr
            except ImportError as exc:
                raise TrainingError("constrained evaluation needs xgrammar — pip install --no-deps xgrammar==0.2.8 "
                                    "apache-tvm-ffi, or set options.eval.modes: [unconstrained]") from exc
            if self._compiler is None:
                info = xgr.TokenizerInfo.from_huggingface(self.tok, vocab_size=self.model.config.vocab_size)
                self._compiler = xgr.GrammarCompiler(info)
            schema, lifted = xgrammar_compatible(schema)
            if lifted:
                self.grammar_notes.append(
                    f"constrained {key}: {lifted} pattern repetition bound(s) above {XGRAMMAR_MAX_REPEAT} lifted to "
                    f"unbounded (xgrammar cannot compile them); answers are still validated against the schema")
            try:
                # compact JSON: with free whitespace a small model can loop on newlines until the cap
                self._grammars[key] = self._compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)
            except RuntimeError as exc:  # xgrammar's C++ checks surface as RuntimeError
                raise GrammarCompileError(f"xgrammar cannot compile the decoding schema for {key}: "
                                          f"{str(exc).strip().splitlines()[0][:200]}") from None
        return self._grammars[key]

    def run(self, prompts: list[list[dict[str, str]]], grammars: list[Any] | None = None,
            penalty: Any = None, stop_unparseable: bool = False) -> list[dict[str, Any]]:
        """Greedy answers to `prompts`, decoded together; a row leaves the batch when it ends (decode.py).
        `stop_unparseable`: a row also leaves once its text can no longer be one JSON object (it could not
        parse whatever followed; `stopped_unparseable` in its result). `engine="generate"` decodes with
        transformers' model.generate instead (the reference it matches)."""
        import torch

        seqs = [prompt_ids(self.tok, p) for p in prompts]
        width = max(len(s) for s in seqs)
        pad, eos = self.tok.pad_token_id, self.tok.eos_token_id
        ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=self.device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=self.device)
        t0 = time.perf_counter()
        if self.engine == "generate":
            tokens, finished = hf_generate(self.model, ids, mask, self.max_new, pad, eos, grammars, penalty)
        else:
            rows = GrammarRows(list(grammars), self.model.config.vocab_size) if grammars else None
            checks = [JsonObjectPrefix() for _ in seqs] if stop_unparseable else None
            stop = (lambda r, t: not checks[r].feed(self.tok.decode([t]))) if checks else None
            out = greedy(self.model, ids, mask, self.max_new, eos, [penalty] if penalty is not None else None, rows,
                         stop)
            tokens, finished, stopped = out.tokens, out.finished, out.stopped or [False] * len(seqs)
        if self.engine == "generate":
            stopped = [False] * len(seqs)
        dt = time.perf_counter() - t0
        return [{"text": self.tok.decode(row, skip_special_tokens=True), "new_tokens": len(row), "finished": done,
                 "stopped_unparseable": cut, "latency_s": round(dt / len(seqs), 3), "batch_s": round(dt, 3),
                 "batch_size": len(seqs)}
                for row, done, cut in zip(tokens, finished, stopped)]


def hf_generate(model: Any, ids: Any, mask: Any, max_new: int, pad: int, eos: int, grammars: list[Any] | None,
                penalty: Any) -> tuple[list[list[int]], list[bool]]:
    """The same greedy decoding through transformers' model.generate: every row stays in the batch until the
    longest ends. The reference decode.greedy matches token for token (tests) and is timed against (bench)."""
    import torch

    processors: list[Any] = [penalty] if penalty is not None else []
    if grammars:
        import xgrammar as xgr

        # one processor per generate() call; one grammar per row, so a batch may mix payload types;
        # it runs last, so the penalty can never push the model outside the grammar
        processors.append(xgr.contrib.hf.LogitsProcessor(list(grammars)))
    kwargs: dict[str, Any] = {"logits_processor": processors} if processors else {}
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
                             pad_token_id=pad, eos_token_id=eos, **kwargs)
    tokens, finished = [], []
    for row in out[:, ids.shape[1]:].tolist():
        done = eos in row
        tokens.append(row[:row.index(eos)] if done else row)
        finished.append(done)
    return tokens, finished
