"""The default templates render for every payload type, with the context the runner gives them."""

from __future__ import annotations

import pytest
from pg_samples import REPO_STAGES, critique, envelope

from pocketguide.engine.loader import load_pipeline
from pocketguide.engine.templates import Renderer
from pocketguide.pipelines.pocketguide.contracts import PAYLOAD_TYPES


def contexts(stage, ptype):
    data = {"prompt": f"How do I get around Lisbon? ({ptype})", "payload_type": ptype, "category": "transport",
            "difficulty": "easy", "region": "europe", "destination": "Lisbon"}
    plan = {"id": "v1_x", "data": data, "parsed": None}
    draft = {"id": "v1_x", "data": data, "parsed": envelope(ptype)}
    crit = {"id": "v1_x", "data": data, "parsed": critique("revise", ["Add a verification step", "Mention fares"])}
    ctx = {"id": "v1_x", "variant": {}, "vars": stage.vars, "stage": stage.name, "schema": None,
           "plan": plan, "draft": draft, "critique": crit}
    ctx["input"] = ctx["record"] = ctx[stage.inputs[0]]
    return ctx


@pytest.mark.parametrize("ptype", PAYLOAD_TYPES)
@pytest.mark.parametrize("stage_name", ["draft", "critique", "refine"])
def test_templates_render_for_every_payload_type(stage_name, ptype):
    pipe = load_pipeline(REPO_STAGES)
    stage = pipe.stage(stage_name)
    text = Renderer(pipe.templates_dir, stage.template).render(contexts(stage, ptype))
    assert f"How do I get around Lisbon? ({ptype})" in text
    if stage_name in ("draft", "refine"):
        assert f'"{ptype}"' in text and stage.vars["payload_hints"][ptype] in text
    if stage_name == "refine":
        assert "- Add a verification step\n- Mention fares" in text
    if stage_name in ("critique", "refine"):
        assert envelope(ptype)["payload"]["title"] in text
    # a 4096-token context must hold prompt + answer: keep prompts well under ~1000 tokens (≈ 3.5 chars each)
    assert len(text) < 3500


def test_an_unknown_payload_type_is_a_template_error_not_silence():
    from pocketguide.engine.errors import TemplateError

    pipe = load_pipeline(REPO_STAGES)
    stage = pipe.stage("draft")
    ctx = contexts(stage, "itinerary")
    ctx["plan"]["data"]["payload_type"] = "poem"
    with pytest.raises(TemplateError):
        Renderer(pipe.templates_dir, stage.template).render(ctx)
