"""contract_ok, verification_when_needed, overconfidence_guard, critique_consistent: pass and fail cases."""

from __future__ import annotations

from pathlib import Path

import pytest
from pg_samples import careful, critique, envelope

from pocketguide.engine.runtime import GateInput
from pocketguide.pipelines.pocketguide.gates import (
    KEYWORDS_DIR,
    ContractOptions,
    KeywordOptions,
    OverconfidenceOptions,
    contract_ok,
    critique_consistent,
    find_phrases,
    overconfidence_guard,
    verification_when_needed,
)

REPO = Path(__file__).resolve().parents[1]  # the default PocketGuide project


def item(parsed, prompt="Plan a day in Lisbon.", parse_mode="strict", payload_type=None, settings=None):
    data = {"prompt": prompt}
    if payload_type:
        data["payload_type"] = payload_type
    record = {"data": data, "parse_notes": {"parse_mode": parse_mode} if parse_mode else None}
    return GateInput(parsed, None, record, settings or {}, REPO)


# --- contract_ok -------------------------------------------------------------------------------

def test_contract_ok_passes_a_valid_envelope():
    r = contract_ok(item(envelope("checklist"), payload_type="checklist"), ContractOptions())
    assert (r.passed, r.reason) == (True, None)


@pytest.mark.parametrize("parsed, reason", [
    ("not an object", "not_parsed"),
    ({**envelope(), "summary": ""}, "envelope_schema_failed"),
    (envelope("procedure", payload={"title": "t", "steps": []}), "payload_schema_failed"),
])
def test_contract_ok_fails_invalid_answers(parsed, reason):
    r = contract_ok(item(parsed), ContractOptions())
    assert (r.passed, r.reason) == (False, reason)


def test_contract_ok_reports_the_path():
    r = contract_ok(item(envelope("procedure", payload={"title": "t", "steps": [{"step": 0, "instruction": "x"}]})),
                    ContractOptions())
    assert r.details["path"] == "$.payload.steps[0].step"


def test_contract_ok_checks_the_planned_payload_type():
    r = contract_ok(item(envelope("checklist"), payload_type="itinerary"), ContractOptions())
    assert (r.passed, r.reason) == (False, "payload_type_mismatch")
    assert contract_ok(item(envelope("checklist"), payload_type="itinerary"),
                       ContractOptions(match_planned_type=False)).passed


@pytest.mark.parametrize("parse_mode", ["fenced", "extracted"])
def test_gating_mode_strict_rejects_rescued_json_and_lenient_accepts_it(parse_mode):
    strict = contract_ok(item(envelope(), parse_mode=parse_mode, settings={"gating_mode": "strict"}), ContractOptions())
    assert (strict.passed, strict.reason) == (False, "lenient_parse")
    lenient = contract_ok(item(envelope(), parse_mode=parse_mode, settings={"gating_mode": "lenient"}),
                          ContractOptions(mode="strict"))  # the run setting wins over the YAML default
    assert lenient.passed and lenient.details["gating_mode"] == "lenient"
    assert not contract_ok(item(envelope(), parse_mode=parse_mode), ContractOptions(mode="strict")).passed


def test_unknown_gating_mode_fails_visibly():
    r = contract_ok(item(envelope(), settings={"gating_mode": "loose"}), ContractOptions())
    assert (r.passed, r.reason) == (False, "bad_gating_mode")


# --- keyword matching ----------------------------------------------------------------------------

def test_keywords_match_on_word_boundaries_case_insensitively(tmp_path):
    f = tmp_path / "k.txt"
    f.write_text("# comment\nnow\nvisa\nas of\n100%\n")
    assert find_phrases("I know the way; snowy peaks", f) == []
    assert find_phrases("Right NOW the Visa rules, As  of May", f) == ["as  of", "now", "visa"]
    assert find_phrases("visas and supervisa", f) == []
    assert find_phrases("100% sure, 1000% not", f) == ["100%"]


def test_an_edited_keyword_list_is_read_again_in_the_same_process(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("guaranteed\n")
    assert find_phrases("Simply guaranteed.", words) == ["guaranteed"]
    words.write_text("guaranteed\nsimply\n")  # a rerun after editing the list must see the edit
    assert find_phrases("Simply guaranteed.", words) == ["guaranteed", "simply"]


def test_shipped_lists_do_not_flag_know():
    path = REPO / KEYWORDS_DIR / "time_sensitive.txt"
    assert find_phrases("I know you will enjoy the known sights. Acknowledge the view.", path) == []
    assert find_phrases("Entry requirements and opening hours vary.", path) == ["entry requirements", "opening hours"]


# --- verification_when_needed -------------------------------------------------------------------

def test_not_time_sensitive_passes_without_verification():
    r = verification_when_needed(item(envelope(summary="I know a nice cafe; walk there now."),
                                      prompt="Where can I get coffee?"), KeywordOptions())
    assert r.passed and r.details == {"time_sensitive": False}


def test_time_sensitive_needs_steps_and_notes():
    opts = KeywordOptions()
    no_steps = verification_when_needed(item(envelope(summary="The visa fee is 50 USD.")), opts)
    assert (no_steps.passed, no_steps.reason) == (False, "missing_verification_steps")
    assert "visa" in no_steps.details["matched"]
    no_notes = verification_when_needed(item(envelope(summary="The visa fee is 50 USD.",
                                                      verification_steps=["Check the embassy site"],
                                                      uncertainty_notes="  ")), opts)
    assert (no_notes.passed, no_notes.reason) == (False, "missing_uncertainty_notes")
    assert verification_when_needed(item(careful()), opts).passed


def test_the_question_alone_can_make_it_time_sensitive():
    it = item(envelope(), prompt="Do I need a visa for Japan?")
    assert not verification_when_needed(it, KeywordOptions()).passed
    assert verification_when_needed(it, KeywordOptions(include_prompt=False)).passed


# --- overconfidence_guard -----------------------------------------------------------------------

@pytest.mark.parametrize("summary", [
    "Visa on arrival is guaranteed for everyone.",
    "Entry requirements never change here.",
    "The museum fee is definitely 10 EUR.",
    "You can ALWAYS get a permit at the border.",
    "Prices are 100% fixed, no need to verify.",
])
def test_overconfident_time_sensitive_claims_fail(summary):
    r = overconfidence_guard(item(careful(summary=summary)), OverconfidenceOptions())
    assert (r.passed, r.reason) == (False, "absolute_claim")
    assert r.details["absolute"]


@pytest.mark.parametrize("summary", [
    "Always verify the visa rules before you go.",
    "Always check current opening hours; entry is not guaranteed on holidays.",
    "Never assume the fees are the same as last year.",
])
def test_safe_contexts_pass(summary):
    r = overconfidence_guard(item(careful(summary=summary)), OverconfidenceOptions())
    assert r.passed, r.details


def test_absolute_words_without_time_sensitivity_pass():
    r = overconfidence_guard(item(envelope(summary="You will definitely love the view; I know it."),
                                  prompt="Where is a nice viewpoint?"), OverconfidenceOptions())
    assert r.passed and r.details == {"time_sensitive": False}


def test_safe_phrase_does_not_hide_a_second_claim():
    r = overconfidence_guard(item(careful(summary="Always verify visa rules. Approval is guaranteed.")),
                             OverconfidenceOptions())
    assert not r.passed and r.details["absolute"] == ["guaranteed"]


@pytest.mark.parametrize("summary, excused", [
    ("Visa checks are not always strict; almost never an issue for EU citizens.", "hedged"),
    ("We can’t say for sure when the border reopens.", "hedged"),
    ("Tip: always agree the taxi fare first.\nNever leave your passport at the desk.", "advice"),
    ("If you rent a scooter, always wear a helmet; travellers should never overstay the visa.", "advice"),
])
def test_hedges_and_advice_are_not_claims(summary, excused):
    r = overconfidence_guard(item(careful(summary=summary)), OverconfidenceOptions())
    assert r.passed and r.details["absolute"] == [] and r.details[excused], r.details


@pytest.mark.parametrize("summary, claim", [
    ("Always carry cash. Entry is always free on Sundays.", "always"),  # advice first, then a claim
    ("Trains always leave on time; the fee never changes.", "always"),
    ("Always open on Sundays, the consulate takes walk-in visa applications.", "always"),
    ("You can always pay the park fee by card.", "always"),
    ("Not every museum is free, but this one is definitely free.", "definitely"),
])
def test_claims_next_to_hedges_and_advice_still_fail(summary, claim):
    r = overconfidence_guard(item(careful(summary=summary)), OverconfidenceOptions())
    assert not r.passed and claim in r.details["absolute"], r.details


def test_a_word_in_another_sense_is_not_time_sensitive():
    opts = KeywordOptions()
    for text in ("Respect local customs at temples.", "If time permits, add Nara.", "Strike up a chat."):
        assert verification_when_needed(item(envelope(summary=text), prompt="Plan a day."), opts).passed, text
    r = verification_when_needed(item(envelope(summary="Declare cash at customs."), prompt="Plan a day."), opts)
    assert not r.passed and r.details["matched"] == ["customs"]


def test_regex_lines_in_keyword_files(tmp_path):
    f = tmp_path / "k.txt"
    f.write_text("# amounts\nre:[$€] ?[0-9]\nre:[0-9]+ ?(?:usd|eur)(?![a-z])\nvisa\n")
    assert find_phrases("A ticket costs €12 or 15 USD; visa extra.", f) == ["15 usd", "visa", "€1"]
    assert find_phrases("It takes 15 used tickets and 3 euros.", f) == []
    shipped = REPO / KEYWORDS_DIR / "time_sensitive.txt"
    assert find_phrases("The park costs 20 USD; the bus is $2.50.", shipped) == ["$2.50", "20 usd"]


def test_custom_keyword_dir(tmp_path):
    (tmp_path / "time_sensitive.txt").write_text("ferry\n")
    (tmp_path / "absolute_phrases.txt").write_text("surely\n")
    (tmp_path / "safe_phrases.txt").write_text("")
    opts = OverconfidenceOptions(keywords_dir=str(tmp_path))
    assert not overconfidence_guard(item(envelope(summary="The ferry surely runs."), prompt="x"), opts).passed
    assert overconfidence_guard(item(envelope(summary="The visa is guaranteed."), prompt="x"), opts).passed


# --- critique_consistent ------------------------------------------------------------------------

def test_critique_consistency():
    assert critique_consistent(item(critique("pass")), None).passed
    assert critique_consistent(item(critique("revise")), None).passed
    assert critique_consistent(item(critique("reject")), None).passed
    assert critique_consistent(item(critique("pass", ["fix it"])), None).reason == "pass_with_instructions"
    assert critique_consistent(item(critique("revise", [])), None).reason == "revise_without_instructions"


def test_edited_negator_and_advice_verb_lists_are_read_again_in_the_same_process(tmp_path):
    from pocketguide.pipelines.pocketguide.claims import ClaimLists, scan_claims

    lists = ClaimLists(*(tmp_path / f"{n}.txt" for n in ("absolute", "safe", "negators", "advice_verbs")))
    lists.absolute.write_text("always\n")
    lists.safe.write_text("")
    lists.negators.write_text("")
    lists.advice_verbs.write_text("")
    assert scan_claims("Always observe locals. Not always open.", lists).claims == ["always"]
    lists.negators.write_text("not\n")
    lists.advice_verbs.write_text("observe\n")
    scan = scan_claims("Always observe locals. Not always open.", lists)
    assert scan.claims == [] and scan.advice == ["always"] and scan.hedged == ["always"]
