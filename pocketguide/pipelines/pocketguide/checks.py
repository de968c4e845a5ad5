"""Deterministic checks of a PocketGuide answer: the defects a small teacher's drafts really have.

Each check reads one envelope and the question it answers and returns `Finding`s: what is wrong, where
(a JSON path), how bad, and a concrete instruction a rewrite must follow. The critic (critic.py) turns
findings into a critique v1 object, and the content gates (content_gates.py), which the refine stage and
the student's evaluation run, reuse the same checks, so "placeholder" or "repeated" means one thing
everywhere. Word lists live in data/keywords/ beside the gates' lists.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from pocketguide.pipelines.pocketguide.answer import (
    CODE_KEYS,
    Finding,
    Question,
    _field,
    _quote,
    bundled_keywords,
    envelope_of,
    norm,
    prose,
    strings,
    words,
)
from pocketguide.pipelines.pocketguide.gates import find_phrases, mask_phrases, phrase_pattern

__all__ = ["CHECKS", "Finding", "Question", "envelope_of", "run_checks", "verdict"]

#: placeholders even where a short code is expected (a time block, an option, a priority)
CODE_PLACEHOLDERS = frozenset({"text", "string", "example", "sample", "placeholder", "tbd", "todo", "xxx", "n/a"})
#: keys a model copies as values when it has nothing to say ("title": "title")
FIELD_NAMES = frozenset({"summary", "assumptions", "uncertainty_notes", "next_steps", "verification_steps",
                         "payload", "title", "groups", "name", "items", "text", "trip_days", "activity",
                         "instruction", "why", "nodes", "edges", "root_question", "steps", "action"})
#: keys whose strings are sentences: one word there is a placeholder ("you", "checklist", "Sterling")
SENTENCE_KEYS = frozenset({"assumptions", "uncertainty_notes", "next_steps", "verification_steps", "instruction",
                           "why"})  # and the answer's own summary ($.summary), not a day's short summary
#: a text of this many lowercase words, fewer than half of them English words, is gibberish
GIBBERISH_MIN_WORDS = 4
#: keys of the main text of a list element (a checklist item's text, a step's instruction, …)
MAIN_TEXT_KEYS = ("text", "activity", "instruction", "summary", "name", "action")
#: a draft with more than this many kinds of defect is not worth a rewrite: it is rejected
MAX_FIXABLE_KINDS = 3
#: a draft whose prose is at least this share placeholders (or copies) has nothing a rewrite could keep
FATAL_SHARE = 0.5

URL = re.compile(r"(?i)\bhttps?://\S+|\bwww\.\S+|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|org|net|gov|info|io|co|travel|"
                 r"edu|biz)\b(?:/\S*)?")
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
PHONE = re.compile(r"\+\d[\d\s().-]{6,}\d|\b\d{3}[\s.-]\d{3}[\s.-]\d{3,4}\b")
RESIDUE = re.compile(r"<[A-Za-z_ ]{2,}>|\[[A-Za-z_ ]{2,}\]|\{[A-Za-z_ ]{2,}\}|\bX{3,}\b")
MARKUP = re.compile(r"[<>{}\[\]`\\|]|&#?\w+;")  # HTML, JSON or code fragments: never in plain travel advice


def is_placeholder(text: str, key: str, keywords: Path | None = None) -> str | None:
    """Why `text` is not content, or None. Codes (CODE_KEYS) only fail on the listed placeholder words."""
    t = text.strip()
    bare = t.lower().strip(" .,;:!?-_*'\"()")
    if t and not re.search(r"[A-Za-z0-9]", t):
        return "no words"
    if key in CODE_KEYS:  # "question", "outcome", "morning" are real values here
        return "placeholder word" if bare in CODE_PLACEHOLDERS else None
    pattern = phrase_pattern(str((keywords or bundled_keywords()) / "placeholders.txt"))
    if pattern is not None and bare and pattern.fullmatch(bare):
        return "placeholder word"
    if not t:
        return "empty"
    if not re.search(r"[A-Za-z]", t):
        return "no words"
    if sum(c.isalpha() for c in t) < 3:
        return "too short to mean anything"
    if bare in FIELD_NAMES or bare.replace(" ", "_") in FIELD_NAMES:
        return "a field name"
    if key in SENTENCE_KEYS and len(words(t)) < 2:
        return "one word where a sentence belongs"
    if RESIDUE.search(t):
        return "template residue"
    if MARKUP.search(t):
        return "markup or code"
    return None


# --- the checks --------------------------------------------------------------------------------

def check_placeholders(env: dict[str, Any], q: Question) -> list[Finding]:
    """Strings that are not content, and strings copied from the prompt's format example."""
    texts = prose(env)
    hits: dict[str, list[tuple[str, str, str]]] = {"placeholder": [], "copied_example": []}
    for path, key, text in strings(env):
        why = is_placeholder(text, key, q.keywords)
        if why is None and path == "$.summary" and len(words(text)) < 2:
            why = "one word where a sentence belongs"
        if why:
            hits["placeholder"].append((path, text, why))
        elif key not in CODE_KEYS and (text.strip() in q.example_strings or norm(text) in q.example_strings):
            hits["copied_example"].append((path, text, "copied from the prompt"))
    fatal = sum(map(len, hits.values())) >= FATAL_SHARE * max(1, len(texts))
    out = []
    for check, found in hits.items():
        if not found:
            continue
        path, text, why = found[0]
        where = ", ".join(f"'{_quote(t, 30)}' ({_field(p)})" for p, t, _ in found[:3])
        out.append(Finding(check, "clarity", "high" if fatal else "medium", path,
                           f"{len(found)} of {len(texts)} text fields are not content ({why}: '{_quote(text)}' at "
                           f"{path})",
                           f"Replace {where} with real, specific content"
                           + (f" about {q.destination}" if q.destination else "") + ".", fatal=fatal))
    return out


def _named(text: str, place: str) -> bool:
    pattern = r"(?<!\w)" + r"\s+".join(map(re.escape, place.split())) + r"(?!\w)"
    return re.search(pattern, text, re.IGNORECASE) is not None


def check_destination(env: dict[str, Any], q: Question) -> list[Finding]:
    if not q.destination:
        return []
    payload = env.get("payload") if isinstance(env.get("payload"), dict) else {}
    head = " ".join(str(x) for x in (env.get("summary"), payload.get("title"), payload.get("root_question")) if x)
    if _named(head, q.destination):
        return []
    anywhere = _named(" ".join(t for _, _, t in strings(env)), q.destination)
    return [Finding("destination_missing", "actionability", "medium", "$.summary",
                    f"the planned destination {q.destination} is not named in the summary or title"
                    + ("" if anywhere else " (nor anywhere else)"),
                    f"Name {q.destination} in the summary and in the payload title.")]


def _main_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return " ".join(str(value[k]) for k in MAIN_TEXT_KEYS if isinstance(value.get(k), str))
    return ""


def near_duplicate(a: str, b: str, threshold: float = 0.8) -> bool:
    wa, wb = set(words(a)), set(words(b))
    if not wa or not wb:
        return False
    return norm(a) == norm(b) or len(wa & wb) / len(wa | wb) >= threshold


def _lists(value: Any, path: str = "$") -> Iterator[tuple[str, list[Any]]]:
    if isinstance(value, dict):
        for k, v in value.items():
            if k in ("metadata", "extra", "options", "edges"):
                continue
            if isinstance(v, list):
                yield f"{path}.{k}", v
            yield from _lists(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _lists(v, f"{path}[{i}]")


def check_repeated(env: dict[str, Any], q: Question) -> list[Finding]:
    """Identical or near-identical elements in one list, or one sentence used in three or more places."""
    out = []
    for path, items in _lists(env):
        texts = [_main_text(v) for v in items]
        for i in range(len(texts)):
            j = next((j for j in range(i) if texts[i].strip() and near_duplicate(texts[i], texts[j])), None)
            if j is not None:
                out.append(Finding("repeated_items", "clarity", "medium", f"{path}[{i}]",
                                   f"{path}[{i}] repeats {path}[{j}] ('{_quote(texts[i])}')",
                                   f"Write {_field(path)}[{i}] differently: it repeats '{_quote(texts[j], 50)}'."))
                break
    seen: dict[str, list[str]] = {}
    for path, _key, text in prose(env):
        if len(words(text)) >= 3:
            seen.setdefault(norm(text), []).append(path)
    for text, paths in seen.items():
        if len(paths) >= 3:
            out.append(Finding("repeated_items", "clarity", "medium", paths[0],
                               f"the same text appears in {len(paths)} places ({', '.join(paths[:3])}): "
                               f"'{_quote(text)}'", f"Say '{_quote(text, 50)}' only once; write something of its own "
                                                    f"in {', '.join(_field(p) for p in paths[1:3])}."))
    return out[:2]


def _thin(env: dict[str, Any], ptype: str | None) -> list[tuple[str, str, str]]:
    """(path, what is thin, what it needs) for each too-small part of the payload."""
    pay = env.get("payload") if isinstance(env.get("payload"), dict) else {}
    out = []
    if ptype == "checklist":
        for i, g in enumerate(pay.get("groups") or []):
            if len(g.get("items") or []) < 2 if isinstance(g, dict) else True:
                out.append((f"$.payload.groups[{i}]", "a group with fewer than 2 items", "at least 2 items"))
    elif ptype == "procedure":
        if len(pay.get("steps") or []) < 2:
            out.append(("$.payload.steps", "a procedure with fewer than 2 steps", "at least 2 steps"))
    elif ptype == "itinerary":
        for i, d in enumerate(pay.get("trip_days") or []):
            if len(d.get("items") or []) < 2 if isinstance(d, dict) else True:
                out.append((f"$.payload.trip_days[{i}]", "a day with fewer than 2 items", "at least 2 items"))
    elif ptype == "decision_tree":
        nodes = [n for n in pay.get("nodes") or [] if isinstance(n, dict)]
        with_text = [n for n in nodes if str(n.get("text") or n.get("action") or "").strip()]
        if len(nodes) < 2 or len(with_text) < 2:
            out.append(("$.payload.nodes", "a tree with fewer than 2 nodes that say something",
                        "a question node and at least one outcome node, each with text"))
    if not [s for s in env.get("next_steps") or [] if isinstance(s, str) and s.strip()]:
        out.append(("$.next_steps", "no next steps", "at least one concrete next step"))
    return out


def check_thin(env: dict[str, Any], q: Question) -> list[Finding]:
    found = _thin(env, env.get("payload_type") or q.payload_type)
    if not found:
        return []
    return [Finding("thin_structure", "actionability", "medium", found[0][0],
                    "; ".join(f"{p}: {what}" for p, what, _ in found[:3]),
                    " ".join(f"Give {_field(p)} {need}." for p, _, need in found[:3]))]


def check_traveller_voice(env: dict[str, Any], q: Question) -> list[Finding]:
    for path, _key, text in prose(env):
        if text.strip().endswith("?"):  # a question a decision tree asks on the traveller's behalf
            continue
        hits = find_phrases(text, q.keywords / "traveller_voice.txt")
        if hits:
            return [Finding("traveller_voice", "clarity", "medium", path,
                            f"written as the traveller ('{hits[0]}'): '{_quote(text)}' at {path}",
                            f"Rewrite '{_quote(text, 50)}' ({_field(path)}) as advice to the traveller ('you'), "
                            f"not in the traveller's own words.")]
    return []


def _sentences(text: str) -> list[str]:
    return [s for s in (norm(x) for x in re.split(r"(?<=[.!?])\s+", text)) if len(s.split()) >= 3]


def check_copied_prompt(env: dict[str, Any], q: Question) -> list[Finding]:
    """A field that only repeats the question (or one of its sentences) instead of answering it."""
    sentences = set(_sentences(q.prompt)) | ({norm(q.prompt)} if q.prompt.strip() else set())
    for path, key, text in prose(env):
        if key != "assumptions" and norm(text) in sentences:
            return [Finding("copied_prompt", "actionability", "medium", path,
                            f"{path} repeats the question: '{_quote(text)}'",
                            f"Replace '{_quote(text, 50)}' ({_field(path)}): it repeats the question; answer it.")]
    return []


@lru_cache(maxsize=8)
def _english(path: str) -> frozenset[str]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return frozenset(w.strip() for w in lines if w.strip() and not w.startswith("#"))


def check_language(env: dict[str, Any], q: Question) -> list[Finding]:
    """Gibberish: a text whose lowercase words (names are capitalised and left out) are mostly not English."""
    known = _english(str(q.keywords / "english_words.txt"))
    for path, _key, text in prose(env):
        plain = [w.lower() for w in re.findall(r"[A-Za-z]{3,}", text) if w.islower()]
        if len(plain) >= GIBBERISH_MIN_WORDS and sum(w in known for w in plain) < len(plain) / 2:
            return [Finding("not_english", "clarity", "high", path, f"not English: '{_quote(text)}' at {path}",
                            f"Rewrite '{_quote(text, 50)}' ({_field(path)}) in plain English.")]
    return []


def check_links(env: dict[str, Any], q: Question) -> list[Finding]:
    for path, _key, text in strings(env):
        for kind, pattern in (("web address", URL), ("email address", EMAIL), ("phone number", PHONE)):
            m = pattern.search(text)
            if m:
                return [Finding("fake_link", "hallucination", "high", path,
                                f"a {kind} a small model cannot know is real: '{_quote(m.group(0), 40)}' at {path}",
                                f"Remove the {kind} '{_quote(m.group(0), 40)}' ({_field(path)}); name the source "
                                f"in words instead (for example 'the official tourism website').")]
    return []


def time_sensitive(env: dict[str, Any], q: Question) -> list[str]:
    text = " ".join(t for _, _, t in strings(env)) + "\n" + q.prompt
    return find_phrases(text, q.keywords / "time_sensitive.txt")


def check_absolute(env: dict[str, Any], q: Question) -> list[Finding]:
    """Absolute claims; 'always' and 'never' count only in a sentence that is itself time-sensitive advice
    ("never leave bags" is a habit, "the museum is never closed" a claim that can go stale)."""
    sensitive = bool(time_sensitive(env, q))
    for path, _key, text in prose(env):
        hits = find_phrases(mask_phrases(text, q.keywords / "safe_phrases.txt"), q.keywords / "absolute_phrases.txt")
        dated = sensitive and bool(find_phrases(text, q.keywords / "time_sensitive.txt"))
        hits = [h for h in hits if dated or h not in ("always", "never")]
        if hits:
            return [Finding("absolute_claim", "overconfidence", "medium" if sensitive else "low", path,
                            f"an absolute claim ('{hits[0]}') at {path}: '{_quote(text)}'",
                            f"Replace '{hits[0]}' in '{_quote(text, 50)}' with a hedged statement and say what to "
                            f"check.")]
    return []


def check_verification(env: dict[str, Any], q: Question) -> list[Finding]:
    hits = time_sensitive(env, q)
    if not hits:
        return []
    steps = [s for s in env.get("verification_steps") or [] if isinstance(s, str) and s.strip()
             and not is_placeholder(s, "verification_steps", q.keywords)]
    notes = env.get("uncertainty_notes")
    notes_ok = isinstance(notes, str) and notes.strip() and not is_placeholder(notes, "uncertainty_notes", q.keywords)
    if steps and notes_ok:
        return []
    missing = " and ".join(x for x, bad in (("verification steps ($.verification_steps)", not steps),
                                            ("uncertainty notes ($.uncertainty_notes)", not notes_ok)) if bad)
    return [Finding("missing_verification", "verification", "high", "$.verification_steps",
                    f"time-sensitive advice ({', '.join(hits[:3])}) without {missing}",
                    f"Add {missing}: say to check {hits[0]} with an official source before travelling, and that "
                    f"it may change.")]


CHECKS = (check_placeholders, check_language, check_destination, check_repeated, check_thin, check_traveller_voice,
          check_copied_prompt, check_links, check_absolute, check_verification)


def run_checks(env: Any, q: Question) -> list[Finding]:
    """Every check on one answer; a non-object answer is one fatal finding."""
    if not isinstance(env, dict):
        return [Finding("not_an_object", "schema", "high", "$", "the answer is not a JSON object",
                        "Answer with one JSON object.", fatal=True)]
    return [f for check in CHECKS for f in check(env, q)]


def verdict(findings: list[Finding]) -> str:
    """pass: nothing found; revise: a rewrite can fix every finding; reject: it cannot."""
    if not findings:
        return "pass"
    kinds = {f.check for f in findings}
    if any(f.fatal for f in findings) or len(kinds) > MAX_FIXABLE_KINDS:
        return "reject"
    return "revise"


