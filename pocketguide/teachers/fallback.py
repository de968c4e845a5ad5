"""The model fallback chain and the record of what each model did."""

from __future__ import annotations

from typing import Any

from pocketguide.engine.errors import TeacherError
from pocketguide.engine.teacher_spec import TeacherSettings


def model_chain(settings: TeacherSettings, requested: str | None) -> list[str]:
    """Requested model (or `model`, or models[0]) first, then `models`, then `fallback_models`; no repeats."""
    first = requested or settings.model or (settings.models or [None])[0]
    chain: list[str] = []
    for m in [first, *(settings.models or []), *(settings.fallback_models or [])]:
        if m and m not in chain:
            chain.append(m)
    return chain


class Attempts:
    """Which models were tried, and how each failed, for the record's teacher provenance."""

    def __init__(self) -> None:
        self.models: list[str] = []
        self.errors: list[dict[str, Any]] = []

    def tried(self, model: str) -> None:
        self.models.append(model)

    def failed(self, model: str, exc: TeacherError, attempts: int) -> None:
        self.errors.append({"model": model, "kind": exc.kind, "status": exc.status, "attempts": attempts,
                            "message": str(exc)[:400]})

    def provenance(self, notes: list[str]) -> dict[str, Any]:
        """What a rejected record shows when every model failed."""
        return {"model": None, "selected_model": None, "attempted_models": list(self.models),
                "finish_reason": None, "usage": {}, "latency_s": None, "cached": False,
                "errors": list(self.errors), "notes": notes, "cost": None, "provider": None, "request_id": None}

    def final_error(self, notes: list[str]) -> TeacherError:
        last = self.errors[-1] if self.errors else {"kind": "unexpected", "status": None, "message": "no model"}
        chain = " → ".join(f"{e['model']}: {e['kind']}" for e in self.errors)
        what = "the model" if len(self.models) == 1 else f"all {len(self.models)} models"
        err = TeacherError(last["kind"], f"{what} failed ({chain}); last error: {last['message']}",
                           retryable=False, status=last["status"])
        err.provenance = self.provenance(notes)  # type: ignore[attr-defined]
        return err
