"""The command line: typer commands that parse arguments and call the library. Rich lives here only."""

from pocketguide.cli import cache  # noqa: F401  (cache stats / clear)
from pocketguide.cli import embedded  # noqa: F401  (doctor)
from pocketguide.cli import init  # noqa: F401  (init)
from pocketguide.cli import main  # noqa: F401  (stages, run, run-all, status, inspect, export)
from pocketguide.cli import report  # noqa: F401  (report)
from pocketguide.cli import training  # noqa: F401  (train, eval)
from pocketguide.cli.app import app


def entrypoint() -> None:
    app()


__all__ = ["app", "entrypoint"]
