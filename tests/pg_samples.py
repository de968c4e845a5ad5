"""Valid PocketGuide envelopes and critiques for the pocketguide tests (one per payload type)."""

from __future__ import annotations

import copy
import json

PAYLOADS = {
    "itinerary": {"title": "Two days in Lisbon", "trip_days": [
        {"day": 1, "summary": "Old town", "items": [
            {"time_block": "morning", "activity": "Walk through Alfama", "transport": {"mode": "walk"}},
            {"time_block": "evening", "activity": "Fado dinner {reserve ahead}", "booking_needed": True}]},
        {"day": 2, "summary": "Belem", "items": [{"time_block": "morning", "activity": "Tram 15 to Belem"}]}]},
    "checklist": {"title": "Packing for Kyoto", "groups": [
        {"name": "Documents", "items": [{"text": "Passport", "priority": "must"}, {"text": "Hotel address"}]}]},
    "decision_tree": {"title": "Car or transit", "root_question": "Are you leaving the city?",
                      "nodes": [{"id": "q1", "type": "question", "text": "Leaving the city?", "options": ["yes", "no"]},
                                {"id": "o1", "type": "outcome", "text": "Use the metro"}],
                      "edges": [{"from": "q1", "to": "o1", "condition": "no"}]},
    "procedure": {"title": "Airport to centre", "steps": [
        {"step": 1, "instruction": "Follow signs to the metro", "why": "cheapest"},
        {"step": 2, "instruction": "Buy a rechargeable card at the machine"}]},
}


def envelope(payload_type: str = "procedure", **overrides) -> dict:
    env = {
        "summary": f"A short {payload_type} answer.",
        "assumptions": ["You travel in spring"],
        "uncertainty_notes": "",
        "next_steps": ["Book early"],
        "verification_steps": [],
        "payload_type": payload_type,
        "payload": copy.deepcopy(PAYLOADS[payload_type]),
    }
    env.update(overrides)
    return env


def careful(payload_type: str = "procedure", **overrides) -> dict:
    """A time-sensitive envelope that passes every gate."""
    base = {"summary": "Visa rules and fees change; check the current rules.",
            "uncertainty_notes": "Fees and entry requirements change often.",
            "verification_steps": ["Always verify the visa rules on the embassy website"]}
    base.update(overrides)
    return envelope(payload_type, **base)


def critique(verdict: str = "pass", instructions: list[str] | None = None) -> dict:
    return {
        "verdict": verdict,
        "issues": [] if verdict == "pass" else [{"type": "verification", "severity": "medium", "message": "add checks"}],
        "scores": {"actionability": 4, "clarity": 4, "schema_compliance": 5, "safety_risk": 1},
        "hallucination": {"risk_level": "low", "risky_claims": []},
        "verification": {"missing_when_needed": verdict != "pass", "suggested_steps": []},
        "rewrite_instructions": (instructions if instructions is not None
                                 else [] if verdict == "pass" else ["Add a verification step"]),
    }


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)


def copy_project(dst):
    """The default stages.yaml with its templates and data files, copied under dst (runs stay in tmp)."""
    import shutil
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(repo / "stages.yaml", dst / "stages.yaml")
    shutil.copytree(repo / "templates", dst / "templates")
    for sub in ("schemas", "specs", "keywords"):
        shutil.copytree(repo / "data" / sub, dst / "data" / sub)
    return dst / "stages.yaml"


REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
REPO_STAGES = REPO / "stages.yaml"
