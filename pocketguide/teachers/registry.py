"""`build_teacher` turns resolved settings into the registered provider's Teacher."""

from __future__ import annotations

from typing import Any

from pocketguide.engine.errors import MissingExtra, TeacherConfigError
from pocketguide.engine.registry import PROVIDERS, closest, provider
from pocketguide.engine.teacher_spec import TeacherSettings

DEFAULT_PROVIDER = "openai"


def build_teacher(settings: TeacherSettings) -> Any:
    name = settings.provider or DEFAULT_PROVIDER
    pdef = PROVIDERS.get(name)
    if pdef is None:
        raise TeacherConfigError(f"unknown teacher provider '{name}'; {closest(name, PROVIDERS)}")
    missing = pdef.requires.missing()
    if missing:
        raise MissingExtra(f"teacher provider '{name}'", missing, pdef.requires.extra or name)
    return pdef.factory(settings)


__all__ = ["build_teacher", "provider", "PROVIDERS"]
