"""Content gates built on the critic's checks: the refine stage re-checks every rewrite with them, and the
student's evaluation reports their pass rates (destination named, no placeholders, no repeated items)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pocketguide.engine.registry import gate
from pocketguide.engine.runtime import GateInput, GateResult
from pocketguide.pipelines.pocketguide.checks import (
    Finding,
    Question,
    check_destination,
    check_placeholders,
    check_repeated,
    envelope_of,
    run_checks,
)
from pocketguide.pipelines.pocketguide.gates import KEYWORDS_DIR


def _result(findings: list[Finding]) -> GateResult:
    if not findings:
        return GateResult(True, None, {})
    return GateResult(False, findings[0].check, {"findings": [{"check": f.check, "path": f.path,
                                                               "message": f.message} for f in findings]})


class CheckOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keywords_dir: str = Field(KEYWORDS_DIR, description="folder with the word lists, relative to the stages.yaml")


def _run(item: GateInput, opts: CheckOptions, check: Callable[[Any, Question], list[Finding]]) -> GateResult:
    env = envelope_of(item.parsed)
    if not isinstance(env, dict):
        return GateResult(False, "not_parsed", {})
    return _result(check(env, Question.from_record(item.record, item.resolve(opts.keywords_dir))))


@gate("destination_named", options=CheckOptions)
def destination_named(item: GateInput, opts: CheckOptions) -> GateResult:
    """The planned destination (data.destination) is named in the summary or the payload title."""
    return _run(item, opts, check_destination)


@gate("no_placeholders", options=CheckOptions)
def no_placeholders(item: GateInput, opts: CheckOptions) -> GateResult:
    """No placeholder text ('...', 'text', single letters, field names), nothing copied from the prompt."""
    return _run(item, opts, check_placeholders)


@gate("no_repeated_items", options=CheckOptions)
def no_repeated_items(item: GateInput, opts: CheckOptions) -> GateResult:
    """No identical or near-identical elements in a list, no sentence used in three places."""
    return _run(item, opts, check_repeated)


@gate("critic_checks", options=CheckOptions)
def critic_checks(item: GateInput, opts: CheckOptions) -> GateResult:
    """Every check of the deterministic critic passes (what its verdict `pass` means)."""
    return _run(item, opts, run_checks)
