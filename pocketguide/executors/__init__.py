"""Executors beyond the engine's own `local`: `ray` runs local-model teacher stages on Ray actors and the
operations' batch maps on Ray tasks (ray_executor.py). Importing this package registers them, the same
way a plugin would; ray itself is imported only when a run uses it."""

from pocketguide.executors import ray_executor  # noqa: F401  (registers "ray")
