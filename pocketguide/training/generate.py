"""Batched greedy generation for the evaluation: left-padded prompts, an optional xgrammar JSON-schema
constraint per row, and llama.cpp's repeat penalty (the teacher's repetition control) for constrained rows."""

from __future__ import annotations

import json
import time
from typing import Any

from pocketguide.training.data import prompt_ids
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


class Generator:
    """Greedy, left-padded batched generation; optional grammar per row and repeat penalty."""

    def __init__(self, model: Any, tok: Any, device: Any, max_new_tokens: int):
        self.model, self.tok, self.device, self.max_new = model, tok, device, max_new_tokens
        self._compiler = None
        self._grammars: dict[str, Any] = {}

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
            # compact JSON: with free whitespace a small model can loop on newlines until the cap
            self._grammars[key] = self._compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)
        return self._grammars[key]

    def run(self, prompts: list[list[dict[str, str]]], grammars: list[Any] | None = None,
            penalty: RepeatPenalty | None = None) -> list[dict[str, Any]]:
        import torch

        seqs = [prompt_ids(self.tok, p) for p in prompts]
        width = max(len(s) for s in seqs)
        pad = self.tok.pad_token_id
        ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=self.device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=self.device)
        processors: list[Any] = [penalty] if penalty is not None else []
        if grammars:
            import xgrammar as xgr

            # one processor per generate() call; one grammar per row, so a batch may mix payload types;
            # it runs last, so the penalty can never push the model outside the grammar
            processors.append(xgr.contrib.hf.LogitsProcessor(list(grammars)))
        kwargs: dict[str, Any] = {"logits_processor": processors} if processors else {}
        t0 = time.perf_counter()
        with torch.no_grad():
            out = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=self.max_new, do_sample=False,
                                      pad_token_id=pad, eos_token_id=self.tok.eos_token_id, **kwargs)
        dt = time.perf_counter() - t0
        rows = []
        for row in out[:, width:].tolist():
            n = len(row)
            finished = self.tok.eos_token_id in row
            if finished:
                n = row.index(self.tok.eos_token_id)
            rows.append({"text": self.tok.decode(row[:n], skip_special_tokens=True), "new_tokens": n,
                         "finished": finished, "latency_s": round(dt / len(seqs), 3), "batch_s": round(dt, 3),
                         "batch_size": len(seqs)})
        return rows
