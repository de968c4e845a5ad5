"""Synthetic envelope records for tests and benchmarks only (never training data).

Each record's content is drawn word by word from a few hundred words, so two unrelated records
share almost no word 3-grams, and a planted near duplicate (one or two words changed in a ~150
word record) is measurably, not trivially, similar."""

from __future__ import annotations

import random
from typing import Any

PAYLOAD_TYPES = ["itinerary", "checklist", "decision_tree", "procedure"]
CATEGORIES = ["itinerary_planning", "transport", "entry_requirements", "accommodation", "safety", "budgeting",
              "local_customs"]
DIFFICULTIES = ["easy", "medium", "hard"]
REGIONS = ["europe", "asia", "americas", "africa", "oceania"]
_PLACES = ("Lisbon Porto Kyoto Osaka Lima Cusco Hanoi Hue Oaxaca Tbilisi Baku Tallinn Riga Quito Seville Granada "
           "Naples Bari Sapporo Busan Taipei Tainan Penang Cebu Hobart Perth Accra Dakar Tunis Fez").split()
_WORDS = ("book reserve compare confirm pack carry download print photocopy register charge renew exchange "
          "withdraw ticket pass card adapter charger jacket umbrella sunscreen medicine insurance receipt "
          "passport visa permit map offline app route ferry train bus tram metro taxi bike walk airport station "
          "harbour market museum temple castle garden beach hostel hotel apartment guesthouse checkin checkout "
          "deposit locker luggage backpack cash coins budget fare discount bundle family student senior "
          "morning noon evening night weekend holiday festival season rain heat snow wind tide ridge valley "
          "trail summit village old town quarter district square bridge river lake coast island border "
          "embassy consulate office counter kiosk window platform gate terminal pier queue schedule timetable "
          "delay strike closure detour refund voucher upgrade seat berth cabin deck row aisle quiet early late "
          "cheap local fresh spicy vegan halal street food lunch dinner breakfast tip greeting dress modest "
          "shoes shrine photo etiquette bargain haggle price label scale meter note emergency clinic pharmacy "
          "police hotline contact copy cloud backup lock pouch belt whistle torch water filter snack "
          "blanket pillow earplugs mask notebook pen sticker stamp postcard souvenir gift wrap bag").split()


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def _payload(rng: random.Random, payload_type: str, place: str) -> dict[str, Any]:
    title = f"{place} {_sentence(rng, 3)}"
    if payload_type == "itinerary":
        return {"title": title, "trip_days": [
            {"day": d, "summary": _sentence(rng, 5),
             "items": [{"time_block": tb, "activity": _sentence(rng, 7)} for tb in ("morning", "afternoon")]}
            for d in (1, 2, 3)]}
    if payload_type == "checklist":
        return {"title": title, "groups": [
            {"name": _sentence(rng, 2), "items": [{"text": _sentence(rng, 6), "priority": "must"} for _ in range(3)]}
            for _ in range(2)]}
    if payload_type == "decision_tree":
        nodes = [{"id": f"n{i}", "type": "question" if i == 0 else "outcome", "text": _sentence(rng, 7),
                  "action": _sentence(rng, 5)} for i in range(4)]
        return {"title": title, "root_question": _sentence(rng, 6), "nodes": nodes,
                "edges": [{"from": "n0", "to": f"n{i}", "condition": _sentence(rng, 3)} for i in (1, 2, 3)]}
    return {"title": title, "steps": [{"step": i, "instruction": _sentence(rng, 8), "why": _sentence(rng, 4)}
                                      for i in range(1, 6)]}


def envelope(rng: random.Random, payload_type: str, place: str) -> dict[str, Any]:
    return {"summary": f"{place}: {_sentence(rng, 10)}",
            "assumptions": [_sentence(rng, 6), _sentence(rng, 6)],
            "uncertainty_notes": f"Prices and schedules change; {_sentence(rng, 6)}",
            "next_steps": [_sentence(rng, 6) for _ in range(3)],
            "verification_steps": [f"check the official {place} site for {_sentence(rng, 4)}"],
            "payload_type": payload_type, "payload": _payload(rng, payload_type, place)}


def make_record(rng: random.Random, n: int, payload_type: str | None = None, difficulty: str | None = None,
                category: str | None = None) -> dict[str, Any]:
    """One accepted `dataset`-stage record: id, data facets with the prompt, the envelope in `parsed`."""
    pt = payload_type or rng.choice(PAYLOAD_TYPES)
    cat = category or rng.choice(CATEGORIES)
    place = rng.choice(_PLACES)
    data = {"prompt": f"{place} {cat.replace('_', ' ')}: {_sentence(rng, 12)}?", "payload_type": pt,
            "category": cat, "difficulty": difficulty or rng.choice(DIFFICULTIES), "region": rng.choice(REGIONS),
            "destination": place}
    return {"id": f"v1_{pt}_{cat}_{n:06d}", "stage": "dataset", "status": "accepted", "reasons": [],
            "data": data, "parsed": envelope(rng, pt, place)}


def perturb(rng: random.Random, record: dict[str, Any], new_id: str, edits: int = 1) -> dict[str, Any]:
    """A near duplicate: the same record with `edits` words of its envelope replaced."""
    import copy

    rec = copy.deepcopy(record)
    rec["id"] = new_id
    env = rec["parsed"]
    for _ in range(edits):
        key = rng.choice(["next_steps", "assumptions"])
        i = rng.randrange(len(env[key]))
        words = env[key][i].split()
        words[rng.randrange(len(words))] = rng.choice(_WORDS) + "x"  # a word no record has
        env[key][i] = " ".join(words)
    return rec


def source_line(record: dict[str, Any]) -> dict[str, Any]:
    """The record as a `source:` line for a copy stage: facets at the top, the envelope under `envelope`."""
    return {"id": record["id"], **record["data"], "envelope": record["parsed"]}
