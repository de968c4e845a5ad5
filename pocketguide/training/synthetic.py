"""Small, varied, schema-valid envelope SFT records and matching schemas, for smoke runs, tests and
`bench/train_student.py` (no teacher needed). Built from seeded templates, so they are realistic in
shape but not in depth: they prove the student can learn the contract, not travel expertise."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

SYSTEM = ("You are PocketGuide, an offline travel assistant. Reply with exactly one JSON object and nothing else: "
          "keys summary, assumptions, uncertainty_notes, next_steps, verification_steps, payload_type "
          "(itinerary, checklist, decision_tree or procedure) and payload.")

PLACES = [("Lisbon", "Portugal", "EUR"), ("Kyoto", "Japan", "JPY"), ("Oaxaca", "Mexico", "MXN"),
          ("Tbilisi", "Georgia", "GEL"), ("Hanoi", "Vietnam", "VND"), ("Edinburgh", "Scotland", "GBP"),
          ("Cusco", "Peru", "PEN"), ("Marrakesh", "Morocco", "MAD"), ("Tromsø", "Norway", "NOK"),
          ("Istanbul", "Türkiye", "TRY"), ("Chiang Mai", "Thailand", "THB"), ("Valparaíso", "Chile", "CLP")]
WHO = ["a solo traveller", "a couple", "a family with two kids", "two friends on a budget", "a wheelchair user",
       "a business traveller with one free day"]
ACTS = ["old town walking tour", "central market lunch", "museum visit", "viewpoint at sunset", "street food crawl",
        "day trip by train", "cooking class", "botanical garden", "harbour ferry ride", "local music evening"]
MODES = ["walk", "transit", "train", "taxi", "ferry"]
TOPICS = {
    "checklist": ["pack for {days} days in {city} in the rainy season", "prepare documents for a trip to {country}",
                  "get ready for an early flight out of {city}"],
    "procedure": ["buy and top up a transit card in {city}", "exchange money safely in {city}",
                  "get from the airport to central {city} at night"],
    "decision_tree": ["decide between a hotel and an apartment in {city}", "choose how to reach {city} from the nearest hub",
                      "decide whether to rent a car in {country}"],
    "itinerary": ["plan {days} days in {city}", "plan a relaxed {days}-day visit to {city}",
                  "plan {days} days in {city} on a tight budget"],
}


def _envelope(rng: random.Random, ptype: str, city: str, country: str, cur: str, days: int, who: str,
              payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "summary": f"A {ptype.replace('_', ' ')} for {who} in {city}, {country}.",
        "assumptions": [f"Travel is for {who}.", f"Prices are in {cur} and change often."][: rng.randint(1, 2)],
        "uncertainty_notes": rng.choice([f"Opening hours and fares in {city} change; figures are estimates.",
                                         f"Entry rules for {country} can change; confirm before you go."]),
        "next_steps": rng.sample([f"Book the first night in {city}.", "Save offline maps.",
                                  "Set a daily budget.", "Share the plan with someone at home."], 2),
        "verification_steps": [rng.choice([f"Check the official {country} tourism site.",
                                           f"Confirm current fares with the {city} transit operator.",
                                           "Check your government's travel advisory."])],
        "payload_type": ptype,
        "payload": payload,
    }


def _payload(rng: random.Random, ptype: str, city: str, days: int) -> dict[str, Any]:
    if ptype == "itinerary":
        return {"title": f"{days} days in {city}", "trip_days": [
            {"day": d, "summary": f"Day {d} in {city}", "items": [
                {"time_block": tb, "activity": rng.choice(ACTS), "transport": {"mode": rng.choice(MODES)}}
                for tb in ("morning", "afternoon")]} for d in range(1, days + 1)]}
    if ptype == "checklist":
        return {"title": f"Checklist for {city}", "groups": [
            {"name": g, "items": [{"text": t, "priority": rng.choice(["must", "should", "nice_to_have"])}
                                  for t in rng.sample(items, 2)]}
            for g, items in (("Documents", ["Passport", "Travel insurance", "Booking confirmations", "Visa printout"]),
                             ("Packing", ["Rain jacket", "Power adapter", "Comfortable shoes", "Reusable bottle"]))]}
    if ptype == "procedure":
        steps = [f"Find the official counter in {city}.", "Check the posted rate or fare.",
                 "Pay by card where possible.", "Keep the receipt until the trip ends."]
        return {"title": f"How to do it in {city}", "steps": [
            {"step": i + 1, "instruction": s} for i, s in enumerate(steps[: rng.randint(3, 4)])]}
    return {"title": f"Choosing in {city}", "root_question": "What matters most?", "nodes": [
        {"id": "q1", "type": "question", "text": "Is your budget tight?"},
        {"id": "a", "type": "outcome", "text": rng.choice(["Pick the cheaper option.", "Take public transport."])},
        {"id": "b", "type": "outcome", "text": rng.choice(["Pick comfort.", "Take a taxi."])}],
        "edges": [{"from": "q1", "to": "a", "condition": "yes"}, {"from": "q1", "to": "b", "condition": "no"}]}


def records(n: int, seed: int = 0, splits: tuple[float, float] = (0.8, 0.1)) -> list[dict[str, Any]]:
    """`n` source lines {id, data{payload_type, split}, parsed{messages}} cycling through the payload types."""
    rng = random.Random(seed)
    out = []
    types = list(TOPICS)
    for i in range(n):
        ptype = types[i % len(types)]
        city, country, cur = rng.choice(PLACES)
        days, who = rng.randint(1, 3), rng.choice(WHO)
        user = (rng.choice(TOPICS[ptype]).format(city=city, country=country, days=days) + f" for {who}. "
                f"Answer with a {ptype.replace('_', ' ')}.")  # the plan stage names the payload type too
        env = _envelope(rng, ptype, city, country, cur, days, who, _payload(rng, ptype, city, days))
        r = rng.random()
        split = "train" if r < splits[0] else "val" if r < splits[0] + splits[1] else "test"
        out.append({"id": f"syn_{ptype}_{i:04d}", "data": {"payload_type": ptype, "split": split},
                    "parsed": {"messages": [{"role": "system", "content": SYSTEM},
                                            {"role": "user", "content": user[0].upper() + user[1:]},
                                            {"role": "assistant", "content": json.dumps(env, ensure_ascii=False)}]}})
    return out


def _obj(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": list(required),
            "properties": {**required, **(optional or {}), "extra": {"type": "object"}}}


STR, STRS = {"type": "string", "minLength": 1}, {"type": "array", "items": {"type": "string"}}


def schemas() -> dict[str, dict[str, Any]]:
    """Envelope v0 and payload v1 schemas in the shape of the pipeline's contracts (a stand-in where
    data/schemas/ is absent)."""
    env = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "additionalProperties": False,
           "required": ["summary", "assumptions", "uncertainty_notes", "next_steps", "verification_steps",
                        "payload_type", "payload"],
           "properties": {"summary": STR, "assumptions": STRS, "uncertainty_notes": {"type": "string"},
                          "next_steps": STRS, "verification_steps": STRS,
                          "payload_type": {"enum": ["itinerary", "checklist", "decision_tree", "procedure"]},
                          "payload": {"type": "object"}, "metadata": {"type": "object"}}}
    item = _obj({"time_block": STR, "activity": STR}, {"transport": _obj(
        {"mode": {"enum": ["walk", "transit", "train", "taxi", "rideshare", "flight", "ferry", "car"]}}),
        "cost_estimate": {"type": "string"}, "booking_needed": {"type": "boolean"}, "warnings": STRS})
    day = _obj({"day": {"type": "integer", "minimum": 1}, "summary": STR, "items": {"type": "array", "items": item}})
    check_item = _obj({"text": STR}, {"priority": {"enum": ["must", "should", "nice_to_have"]}, "when": STR,
                                      "done": {"type": "boolean"}, "notes": STR})
    node = _obj({"id": STR}, {"type": {"enum": ["question", "decision", "outcome"]}, "text": STR, "options": STRS,
                              "action": STR})
    step = _obj({"step": {"type": "integer", "minimum": 1}, "instruction": STR},
                {"why": STR, "warning": STR, "requires": STRS, "estimated_time": STR})
    return {
        "envelope": env,
        "itinerary": _obj({"title": STR, "trip_days": {"type": "array", "minItems": 1, "items": day}},
                          {"timezone": STR, "total_budget": STR, "notes": STRS}),
        "checklist": _obj({"title": STR, "groups": {"type": "array", "minItems": 1, "items": _obj(
            {"name": STR, "items": {"type": "array", "items": check_item}})}}),
        "decision_tree": _obj({"title": STR, "nodes": {"type": "array", "minItems": 1, "items": node}},
                              {"edges": {"type": "array", "items": _obj({"from": STR, "to": STR},
                                                                        {"condition": STR})},
                               "root_question": STR}),
        "procedure": _obj({"title": STR, "steps": {"type": "array", "minItems": 1, "items": step}}),
    }


def write_schemas(folder: Path) -> tuple[Path, str]:
    """Write envelope.v0.json and payload.<type>.v1.json; returns (envelope path, payload pattern)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, s in schemas().items():
        fname = "envelope.v0.json" if name == "envelope" else f"payload.{name}.v1.json"
        (folder / fname).write_text(json.dumps(s, indent=2))
    return folder / "envelope.v0.json", str(folder / "payload.{type}.v1.json")
