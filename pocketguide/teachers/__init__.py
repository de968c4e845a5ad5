"""Teachers: the interface, the providers and the factory."""

from .base import Teacher, TeacherRequest, TeacherResponse
from .registry import PROVIDERS, build_teacher, provider


def load_providers() -> None:
    from . import openai_compat  # noqa: F401
    try:
        from . import embedded  # noqa: F401
    except ImportError:
        pass


__all__ = ["Teacher", "TeacherRequest", "TeacherResponse", "PROVIDERS", "build_teacher", "provider",
           "load_providers"]
