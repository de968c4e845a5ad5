"""Teachers: the interface, the providers (openai-compatible, embedded llama.cpp), the managed wrapper
(cache, limits, retries, fallback, budget) and the `llm` generator mode. Importing this package
registers the providers and the generator, the same way a plugin would."""

from pocketguide.teachers import (
    embedded,  # noqa: F401  (registers "embedded"; xllamacpp loads when used)
    generator,  # noqa: F401  (registers the "llm" generator mode)
    openai_compat,  # noqa: F401  (registers "openai")
)
from pocketguide.teachers.base import Teacher, TeacherRequest, TeacherResponse
from pocketguide.teachers.registry import PROVIDERS, build_teacher, provider

__all__ = ["Teacher", "TeacherRequest", "TeacherResponse", "PROVIDERS", "build_teacher", "provider"]
