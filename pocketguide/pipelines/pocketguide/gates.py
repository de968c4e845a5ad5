"""PocketGuide quality gates on an envelope: contract_ok, verification_when_needed, overconfidence_guard.

Keyword lists live in data files (`data/keywords/*.txt`), matched case-insensitively on word
boundaries: a phrase never matches inside a longer word ("now" is not in "know"). A line starting
with `re:` is a regular expression instead (an amount of money: `re:[$€£¥] ?[0-9]`).

An absolute word is a claim only where it asserts something: "not always", "almost never" are hedges
(negators.txt right before it), and "Always observe locals", "If you rent, never leave…", "you should
always…" are advice (an absolute adverb at the start of a clause, followed by a verb from
advice_verbs.txt). Measured on labelled sentences: `python bench/gate_precision.py`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pocketguide.engine.registry import gate
from pocketguide.engine.runtime import GateInput, GateResult
from pocketguide.pipelines.pocketguide.claims import ClaimLists, scan_claims
from pocketguide.pipelines.pocketguide.contracts import SCHEMAS_DIR, check_envelope
from pocketguide.pipelines.pocketguide.keywords import (  # noqa: F401  (re-exported for callers)
    envelope_text,
    find_phrases,
    mask_phrases,
    phrase_pattern,
)

KEYWORDS_DIR = "data/keywords"  # relative to the pipeline's stages.yaml
GATING_MODES = ("strict", "lenient")


class KeywordOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keywords_dir: str = Field(KEYWORDS_DIR, description="folder with the keyword files, relative to the stages.yaml")
    time_sensitive_file: str = Field("time_sensitive.txt", description="phrases that make advice time-sensitive")
    not_time_sensitive_file: str = Field(
        "not_time_sensitive.txt", description="phrases removed first: a time-sensitive word in another sense "
                                              "(local customs, if time permits); a missing file removes nothing")
    include_prompt: bool = Field(True, description="the user's question (data.prompt) also counts as text")


def time_sensitive_hits(item: GateInput, opts: KeywordOptions) -> list[str]:
    text = envelope_text(item.parsed)
    if opts.include_prompt:
        text += "\n" + str((item.record.get("data") or {}).get("prompt") or "")
    words = item.resolve(opts.keywords_dir)
    if (words / opts.not_time_sensitive_file).exists():
        text = mask_phrases(text, words / opts.not_time_sensitive_file)
    return find_phrases(text, words / opts.time_sensitive_file)


class ContractOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["strict", "lenient"] = Field(
        "lenient", description="default gating mode; the run setting gating_mode (--gating-mode) overrides it")
    match_planned_type: bool = Field(True, description="payload_type must equal the planned data.payload_type")
    schemas_dir: str = Field(SCHEMAS_DIR, description="folder of the contract schemas, relative to the stages.yaml")


@gate("contract_ok", options=ContractOptions)
def contract_ok(item: GateInput, opts: ContractOptions) -> GateResult:
    """Envelope v0 + payload v1 valid; in strict mode the answer must also have been bare JSON."""
    mode = item.settings.get("gating_mode") or opts.mode
    if mode not in GATING_MODES:
        return GateResult(False, "bad_gating_mode", {"gating_mode": mode, "expected": list(GATING_MODES)})
    parse_mode = (item.record.get("parse_notes") or {}).get("parse_mode")
    details: dict[str, Any] = {"gating_mode": mode, "parse_mode": parse_mode}
    if not isinstance(item.parsed, dict):
        return GateResult(False, "not_parsed", details)
    ok, code, path, message = check_envelope(item.parsed, item.resolve(opts.schemas_dir))
    if not ok:
        return GateResult(False, code, {**details, "path": path, "message": message})
    planned = (item.record.get("data") or {}).get("payload_type")
    if opts.match_planned_type and planned and item.parsed.get("payload_type") != planned:
        return GateResult(False, "payload_type_mismatch",
                          {**details, "planned": planned, "got": item.parsed.get("payload_type")})
    if mode == "strict" and parse_mode not in (None, "strict"):
        return GateResult(False, "lenient_parse", details)
    return GateResult(True, None, details)


@gate("verification_when_needed", options=KeywordOptions)
def verification_when_needed(item: GateInput, opts: KeywordOptions) -> GateResult:
    """Time-sensitive advice needs ≥ 1 verification step and non-empty uncertainty notes."""
    hits = time_sensitive_hits(item, opts)
    if not hits:
        return GateResult(True, None, {"time_sensitive": False})
    env = item.parsed if isinstance(item.parsed, dict) else {}
    steps = [s for s in env.get("verification_steps") or [] if isinstance(s, str) and s.strip()]
    notes = env.get("uncertainty_notes")
    details = {"time_sensitive": True, "matched": hits, "verification_steps": len(steps)}
    if not steps:
        return GateResult(False, "missing_verification_steps", details)
    if not isinstance(notes, str) or not notes.strip():
        return GateResult(False, "missing_uncertainty_notes", details)
    return GateResult(True, None, details)


class OverconfidenceOptions(KeywordOptions):
    absolute_file: str = Field("absolute_phrases.txt", description="absolute claims (guaranteed, always, …)")
    safe_file: str = Field("safe_phrases.txt", description="safe contexts removed first (always verify, …)")
    negators_file: str = Field("negators.txt", description="words that hedge an absolute phrase right after them "
                                                           "(not always, almost never); a missing file hedges none")
    advice_verbs_file: str = Field("advice_verbs.txt", description="verbs that make a clause-opening 'always'/'never' "
                                                                   "advice (Always carry…); a missing file: none")


@gate("overconfidence_guard", options=OverconfidenceOptions)
def overconfidence_guard(item: GateInput, opts: OverconfidenceOptions) -> GateResult:
    """On time-sensitive advice, no absolute claims in the answer (hedges and advice such as 'not always',
    'always verify', 'Always carry cash' excepted: claims.py)."""
    hits = time_sensitive_hits(item, opts)
    if not hits:
        return GateResult(True, None, {"time_sensitive": False})
    words = item.resolve(opts.keywords_dir)
    lists = ClaimLists(words / opts.absolute_file, words / opts.safe_file, words / opts.negators_file,
                       words / opts.advice_verbs_file)
    scan = scan_claims(envelope_text(item.parsed), lists)
    details = {"time_sensitive": True, "matched": hits, "absolute": scan.claims, "hedged": scan.hedged,
               "advice": scan.advice}
    return GateResult(not scan.claims, "absolute_claim" if scan.claims else None, details)


@gate("critique_consistent")
def critique_consistent(item: GateInput, opts: None) -> GateResult:
    """Critique v1's rule: rewrite_instructions are empty on pass and present on revise."""
    crit = item.parsed if isinstance(item.parsed, dict) else {}
    verdict, instructions = crit.get("verdict"), [s for s in crit.get("rewrite_instructions") or [] if str(s).strip()]
    if verdict == "pass" and instructions:
        return GateResult(False, "pass_with_instructions", {"instructions": len(instructions)})
    if verdict == "revise" and not instructions:
        return GateResult(False, "revise_without_instructions", {})
    return GateResult(True, None, {"verdict": verdict, "instructions": len(instructions)})
