"""Pipelines shipped with pocketguide: data plus registered functions, found through the registries."""

from . import pocketguide  # noqa: F401
