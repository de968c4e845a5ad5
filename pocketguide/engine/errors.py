"""The typed error family. Every message says what went wrong and what to do about it."""

from __future__ import annotations


class PocketguideError(Exception):
    """Base of every error pocketguide raises on purpose."""


class StagesConfigError(PocketguideError):
    """stages.yaml is invalid; one line per problem, `stage.field: problem — fix`."""

    def __init__(self, problems: list[str], source: str = "stages.yaml"):
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source} has {len(self.problems)} problem(s):\n{lines}")


class RegistryError(PocketguideError):
    """A name was registered twice, or looked up and not found."""


class TemplateError(PocketguideError):
    """A template is missing, does not compile, or needs a variable nobody provides."""


class StoreError(PocketguideError):
    """An artifact could not be read or written."""


class TeacherError(PocketguideError):
    """A teacher call failed; `kind` is the reason code suffix (timeout, rate_limit, http_500…)."""

    def __init__(self, kind: str, message: str, *, retryable: bool = False, status: int | None = None):
        self.kind = kind
        self.retryable = retryable
        self.status = status
        super().__init__(message)


class TeacherConfigError(PocketguideError):
    """A teacher cannot be built: missing key, missing model file, unknown provider."""


class ParseError(PocketguideError):
    """A parser rejected the raw text; `code` becomes the record's reason code."""

    def __init__(self, code: str, message: str = ""):
        self.code = code
        super().__init__(message or code)


class StageError(PocketguideError):
    """A stage cannot run (missing upstream output, a whole-dataset operation failed)."""


class RecordRejected(PocketguideError):
    """One record cannot be made; `code` becomes its reason code and the stage goes on."""

    def __init__(self, code: str, message: str = ""):
        self.code = code
        super().__init__(message or code)


class MissingExtra(PocketguideError):
    """A stage needs an optional dependency that is not installed; the message names the extra."""

    def __init__(self, what: str, modules: list[str], extra: str):
        self.extra = extra
        super().__init__(f"{what} needs {', '.join(modules)} — install it with: "
                         f"python -m pip install 'pocketguide[{extra}]'")


class ExecutorError(PocketguideError):
    """The run's executor could not start or reach its workers (e.g. no Ray cluster at the address)."""


class StageStopped(PocketguideError):
    """Something that concerns the whole stage (a budget, a dead endpoint) ends it early; finished
    records are kept and a rerun resumes."""


class BudgetExceeded(StageStopped):
    """A run hit its --max-cost or --max-requests budget; finished work is kept."""


class CircuitOpen(StageStopped):
    """An endpoint kept failing; the stage stopped early and kept everything finished so far."""
