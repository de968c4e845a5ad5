"""The teacher seam: chat messages and generation options in; text and provenance out."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable


@dataclass
class TeacherRequest:
    """One chat request. The sampling fields carry the names of TeacherSettings' sampling group."""

    messages: list[dict[str, str]]
    model: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None  # already in OpenAI wire form
    repeat_penalty: float | None = None
    repeat_last_n: int | None = None
    extra_body: dict[str, Any] = field(default_factory=dict)
    sample_index: int | None = None  # which replicate of the same prompt; keeps replicates apart in the cache

    def cache_material(self) -> dict[str, Any]:
        """Everything that changes the answer; used by the response cache (a shallow copy: asdict's deep
        copy of the messages costs more than hashing them)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class TeacherResponse:
    text: str
    finish_reason: str | None
    model: str
    usage: dict[str, int] = field(default_factory=dict)  # prompt_tokens, completion_tokens
    latency_s: float = 0.0
    attempted_models: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)  # failed attempts before this answer
    cached: bool = False
    notes: list[str] = field(default_factory=list)  # e.g. "response_format dropped: unsupported"
    selected_model: str | None = None  # the chain entry that answered (model is what the server reported)
    cost: float | None = None  # USD, from the price table; None when no price is known
    headers: dict[str, str] = field(default_factory=dict, repr=False)  # x-ratelimit-*, retry-after; not stored

    def provenance(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "selected_model": self.selected_model or self.model,
            "attempted_models": self.attempted_models or [self.model],
            "finish_reason": self.finish_reason,
            "usage": self.usage,
            "latency_s": round(self.latency_s, 4),
            "cached": self.cached,
            "errors": self.errors,
            "notes": self.notes,
            "cost": self.cost,
        }


@runtime_checkable
class Teacher(Protocol):
    """Implementations: teachers.openai_compat.OpenAITeacher, teachers.embedded.EmbeddedTeacher."""

    #: requests this teacher can usefully run at once (None = no own limit)
    max_concurrency: int | None

    async def generate(self, request: TeacherRequest) -> TeacherResponse:
        """Answer one request or raise TeacherError(kind, message)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Provenance for manifests: provider, model, base URL. Never a secret."""
        ...

    async def aclose(self) -> None:
        ...
