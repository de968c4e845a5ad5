"""Teacher providers by name; `build_teacher` turns resolved settings into a Teacher."""

from __future__ import annotations

from typing import Any, Callable

from ..errors import RegistryError, TeacherConfigError
from ..registry import closest
from ..spec import TeacherSettings

PROVIDERS: dict[str, Callable[[TeacherSettings], Any]] = {}


def provider(name: str):
    def decorate(cls):
        if name in PROVIDERS:
            raise RegistryError(f"teacher provider '{name}' is already registered")
        PROVIDERS[name] = cls
        return cls

    return decorate


def build_teacher(settings: TeacherSettings):
    from . import load_providers

    load_providers()
    name = settings.provider or "openai"
    if name not in PROVIDERS:
        raise TeacherConfigError(f"unknown teacher provider '{name}'; {closest(name, PROVIDERS)}")
    return PROVIDERS[name](settings)
