"""SFT records → token ids: chat template for the prompt, the prompt masked out of the loss,
EOS appended to every target (the SFT stage's targets carry none)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

IGNORE = -100  # the label torch's cross-entropy skips


class BadRecord(ValueError):
    """A record the trainer cannot use; `code` becomes its rejection reason."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


@dataclass
class Example:
    id: str
    input_ids: list[int]
    labels: list[int]

    @property
    def n_target(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def split_messages(parsed: Any) -> tuple[list[dict[str, str]], str]:
    """(prompt messages, assistant target) from `{"messages": [..., {"role": "assistant", ...}]}`."""
    msgs = parsed.get("messages") if isinstance(parsed, dict) else None
    if not isinstance(msgs, list) or len(msgs) < 2:
        raise BadRecord("bad_messages", "parsed.messages must be a list of at least a user and an assistant message")
    for m in msgs:
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise BadRecord("bad_messages", "every message needs a string role and a string content")
    if msgs[-1]["role"] != "assistant" or not msgs[-1]["content"].strip():
        raise BadRecord("no_target", "the last message must be a non-empty assistant message (the target)")
    if not any(m["role"] == "user" for m in msgs[:-1]):
        raise BadRecord("bad_messages", "no user message before the target")
    return [{"role": m["role"], "content": m["content"]} for m in msgs[:-1]], msgs[-1]["content"]


def prompt_and_reference(parsed: Any) -> tuple[list[dict[str, str]], str | None]:
    """An eval prompt: the messages up to the answer, and the reference answer when the record has one
    (a held-out prompt suite has none: schema-validity needs only the prompt and the contract)."""
    msgs = parsed.get("messages") if isinstance(parsed, dict) else None
    if isinstance(msgs, list) and msgs and isinstance(msgs[-1], dict) and msgs[-1].get("role") == "assistant":
        return split_messages(parsed)
    if not isinstance(msgs, list) or not msgs or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in msgs):
        raise BadRecord("bad_messages", "parsed.messages must be a list of messages with string role and content")
    if msgs[-1]["role"] != "user":
        raise BadRecord("bad_messages", "a prompt-only record must end with the user message")
    return [{"role": m["role"], "content": m["content"]} for m in msgs], None


def prompt_ids(tok: Any, prompt: list[dict[str, str]]) -> list[int]:
    """The chat-templated prompt up to and including the assistant header (what generation starts from)."""
    out = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False)
    if isinstance(out, dict):  # some tokenizers return a BatchEncoding whatever the flag says
        out = out["input_ids"]
    return list(out)


def tokenize(tok: Any, rid: str, parsed: Any) -> Example:
    """The whole record as token ids, whatever its length (the trainer measures, then applies its limit)."""
    prompt, target = split_messages(parsed)
    p = prompt_ids(tok, prompt)
    t = list(tok(target, add_special_tokens=False)["input_ids"])
    if t and t[-1] == tok.eos_token_id:  # never two: the SFT stage promises no EOS, but be safe
        t = t[:-1]
    t.append(tok.eos_token_id)
    return Example(rid, p + t, [IGNORE] * len(p) + t)


def check_length(ex: Example, max_len: int) -> Example:
    if len(ex.input_ids) > max_len:
        n_prompt = len(ex.input_ids) - ex.n_target
        raise BadRecord("too_long", f"{n_prompt} prompt + {ex.n_target} target tokens > max_seq_length {max_len}; "
                                    f"raise max_seq_length (null picks it from the data) or shorten the record")
    return ex


def encode(tok: Any, rid: str, parsed: Any, max_len: int) -> Example:
    return check_length(tokenize(tok, rid, parsed), max_len)


def collate(examples: list[Example], pad_id: int) -> dict[str, Any]:
    """Right-pad to the longest sequence in the batch; padding is masked in attention and loss."""
    import torch

    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}
