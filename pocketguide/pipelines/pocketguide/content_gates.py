"""Content gates built on the critic's checks: the refine stage re-checks every rewrite with them, and the
student's evaluation reports their pass rates (destination named, no placeholders, no repeated items)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...registry import gate
from ...runtime import GateInput, GateResult
from .checks import Finding, Question, check_destination, check_placeholders, check_repeated, envelope_of, run_checks


def _result(findings: list[Finding]) -> GateResult:
    if not findings:
        return GateResult(True, None, {})
    return GateResult(False, findings[0].check, {"findings": [{"check": f.check, "path": f.path,
                                                               "message": f.message} for f in findings]})


def _run(item: GateInput, check: Callable[[Any, Question], list[Finding]]) -> GateResult:
    env = envelope_of(item.parsed)
    if not isinstance(env, dict):
        return GateResult(False, "not_parsed", {})
    return _result(check(env, Question.from_record(item.record)))


@gate("destination_named")
def destination_named(item: GateInput, opts: None) -> GateResult:
    """The planned destination (data.destination) is named in the summary or the payload title."""
    return _run(item, check_destination)


@gate("no_placeholders")
def no_placeholders(item: GateInput, opts: None) -> GateResult:
    """No placeholder text ('...', 'text', single letters, field names, the format example's strings)."""
    return _run(item, check_placeholders)


@gate("no_repeated_items")
def no_repeated_items(item: GateInput, opts: None) -> GateResult:
    """No identical or near-identical elements in a list, no sentence used in three places."""
    return _run(item, check_repeated)


@gate("critic_checks")
def critic_checks(item: GateInput, opts: None) -> GateResult:
    """Every check of the deterministic critic passes (what its verdict `pass` means)."""
    return _run(item, run_checks)
