"""PocketGuide quality gates on an envelope: contract_ok, verification_when_needed, overconfidence_guard.

Keyword lists live in data files (`data/keywords/*.txt`), matched case-insensitively on word
boundaries: a phrase never matches inside a longer word ("now" is not in "know").
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pocketguide.engine.registry import gate
from pocketguide.engine.runtime import GateInput, GateResult
from pocketguide.pipelines.pocketguide.contracts import SCHEMAS_DIR, check_envelope

KEYWORDS_DIR = "data/keywords"  # relative to the pipeline's stages.yaml
GATING_MODES = ("strict", "lenient")


def phrase_pattern(path: str) -> re.Pattern[str] | None:
    """One regex for every phrase in a keyword file (longest first), or None for an empty list; cached per
    file version, so a list edited between runs of one process is read again."""
    st = os.stat(path)
    return _phrase_pattern(path, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=32)
def _phrase_pattern(path: str, mtime_ns: int, size: int) -> re.Pattern[str] | None:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    phrases = sorted({ln.strip().lower() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")},
                     key=lambda p: (-len(p), p))
    if not phrases:
        return None
    alts = [r"\s+".join(re.escape(w) for w in p.split()) for p in phrases]
    # (?<!\w)…(?!\w) rather than \b so phrases that start or end in a symbol ("100%") still bound correctly
    return re.compile(r"(?<!\w)(?:" + "|".join(alts) + r")(?!\w)", re.IGNORECASE)


def find_phrases(text: str, path: Path | str) -> list[str]:
    pat = phrase_pattern(str(path))
    return [] if pat is None else sorted({m.group(0).lower() for m in pat.finditer(text)})


def mask_phrases(text: str, path: Path | str) -> str:
    """The text with every listed phrase blanked out (same length, so offsets stay meaningful)."""
    pat = phrase_pattern(str(path))
    return text if pat is None else pat.sub(lambda m: " " * len(m.group(0)), text)


def envelope_text(value: Any) -> str:
    """Every string value of the parsed answer (not its keys), one per line."""
    out: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(value)
    return "\n".join(out)


class KeywordOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keywords_dir: str = Field(KEYWORDS_DIR, description="folder with the keyword files, relative to the stages.yaml")
    time_sensitive_file: str = Field("time_sensitive.txt", description="phrases that make advice time-sensitive")
    include_prompt: bool = Field(True, description="the user's question (data.prompt) also counts as text")



def time_sensitive_hits(item: GateInput, opts: KeywordOptions) -> list[str]:
    text = envelope_text(item.parsed)
    if opts.include_prompt:
        text += "\n" + str((item.record.get("data") or {}).get("prompt") or "")
    return find_phrases(text, item.resolve(opts.keywords_dir) / opts.time_sensitive_file)


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


@gate("overconfidence_guard", options=OverconfidenceOptions)
def overconfidence_guard(item: GateInput, opts: OverconfidenceOptions) -> GateResult:
    """On time-sensitive advice, no absolute claims in the answer (safe contexts such as 'always verify' excepted)."""
    hits = time_sensitive_hits(item, opts)
    if not hits:
        return GateResult(True, None, {"time_sensitive": False})
    words = item.resolve(opts.keywords_dir)
    text = mask_phrases(envelope_text(item.parsed), words / opts.safe_file)
    absolute = find_phrases(text, words / opts.absolute_file)
    details = {"time_sensitive": True, "matched": hits, "absolute": absolute}
    return GateResult(not absolute, "absolute_claim" if absolute else None, details)


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
