"""`op: heldout_prompts`: a fixed suite of plan prompts the student never trains on, for the evaluation.

Schema-validity needs only a prompt and the contract, so this suite does not depend on how many drafts
survive the critic: it is drawn from the plan spec with its own seed, stratified by payload type (equal
shares), and every prompt whose text is in the training plan (all `count` prompts, whatever --limit) is
skipped. The same spec file and options give the same suite byte for byte (its version is the sha256 of
both); a changed spec gives a new version. Records carry `parsed.messages` = system + user, no answer.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from typing import Any

from pydantic import ConfigDict, Field, ValidationError

from pocketguide.engine.errors import StageError
from pocketguide.engine.registry import operation
from pocketguide.engine.store import file_sha256
from pocketguide.ops.content import normalize
from pocketguide.ops.student_prompt import FormatHintOptions, MissingFormatHint, user_message
from pocketguide.pipelines.pocketguide.plan import PlanOptions, draw_prompt, load_plan_spec

MAX_DRAWS_PER_PROMPT = 200  # give up (with a clear error) rather than loop when the spec cannot fill the suite


class HeldoutOptions(FormatHintOptions):
    model_config = ConfigDict(extra="forbid")

    size: int = Field(48, ge=1, description="prompts in the suite, split equally across payload types")
    seed: int = Field(7, description="seed of the held-out draw (the training plan uses the spec's own seed)")
    system_prompt: str = Field(description="system message the student sees: the sft stage's (a YAML anchor "
                                           "keeps the two the same)")
    plan_stage: str | None = Field(None, description="the plan stage whose prompts are excluded (default: the "
                                                     "first input); its options name the spec, seed and count")


def _plan_options(ctx: Any, name: str) -> PlanOptions:
    try:
        return PlanOptions.model_validate(ctx.pipe.stage(name).options)
    except ValidationError as exc:
        raise StageError(f"{ctx.stage.name}: stage '{name}' is not a plan stage ({exc.errors()[0]['msg']}) — "
                         f"set options.plan_stage to the stage with `op: plan`") from None


def training_prompts(spec: Any, seed: int, count: int) -> set[str]:
    """Every prompt the training plan can ever hold (its full `count`, not only a --limit prefix)."""
    rng = random.Random(seed)
    return {normalize(draw_prompt(spec, rng, i)[1]["prompt"]) for i in range(1, count + 1)}


def draw_heldout(spec: Any, exclude: set[str], size: int, seed: int) -> tuple[list[tuple[str, dict]], int]:
    """(id, data) pairs, equal shares per payload type, none in `exclude`; and how many draws collided."""
    types = sorted(spec.payload_types)
    quota = {t: size // len(types) + (i < size % len(types)) for i, t in enumerate(types)}
    rng, taken, seen, out, collided = random.Random(seed), Counter(), set(), [], 0
    for draw in range(1, MAX_DRAWS_PER_PROMPT * size + 1):
        if len(out) == size:
            break
        _, data = draw_prompt(spec, rng, draw)
        key = normalize(data["prompt"])
        if taken[data["payload_type"]] >= quota[data["payload_type"]] or key in seen:
            continue
        if key in exclude:
            collided += 1
            continue
        seen.add(key)
        taken[data["payload_type"]] += 1
        out.append((f"{spec.version}_heldout_{data['payload_type']}_{data['category']}_{len(out) + 1:04d}", data))
    if len(out) < size:
        short = {t: quota[t] - taken[t] for t in types if taken[t] < quota[t]}
        raise StageError(f"the plan spec cannot give {size} held-out prompts disjoint from the training plan "
                         f"(short by {short}) — lower options.size or widen the spec")
    return sorted(out), collided


@operation("heldout_prompts", options=HeldoutOptions)
def heldout_prompts(ctx: Any, opts: HeldoutOptions) -> None:
    """Plan prompts held out from training, stratified by payload type, fixed per plan version."""
    plan_name = opts.plan_stage or (ctx.stage.inputs[0] if ctx.stage.inputs else None)
    if not plan_name:
        raise StageError(f"{ctx.stage.name}: name the plan stage — `inputs: [plan]` or options.plan_stage")
    plan_opts = _plan_options(ctx, plan_name)
    path = ctx.pipe.resolve(plan_opts.spec)
    spec = load_plan_spec(path)
    plan_seed = spec.seed if plan_opts.seed is None else plan_opts.seed
    exclude = training_prompts(spec, plan_seed, plan_opts.count or spec.count)
    picked, collided = draw_heldout(spec, exclude, opts.size, opts.seed)
    planned = {normalize(str((r.get("data") or {}).get("prompt") or "")) for r in ctx.records(plan_name)}
    leaked = [rid for rid, d in picked if normalize(d["prompt"]) in planned]
    if leaked:  # impossible by construction; checked against the real plan records all the same
        raise StageError(f"held-out prompts {leaked[:3]} are in the plan stage's records — report this as a bug")
    sha = file_sha256(path)
    version = hashlib.sha256(json.dumps([sha, opts.model_dump(), plan_seed], sort_keys=True).encode()).hexdigest()
    for rid, data in picked:
        try:
            user = user_message(data["prompt"], data, opts)
        except MissingFormatHint as exc:
            raise StageError(f"{ctx.stage.name}: {exc}") from None
        messages = [{"role": "system", "content": opts.system_prompt}, {"role": "user", "content": user}]
        ctx.accept(ctx.new(rid, data={**data, "heldout_version": version}, prompt=data["prompt"],
                           parsed={"messages": messages}, created_at=None))
    counts = {f: dict(sorted(Counter(str(d[f]) for _, d in picked).items()))
              for f in ("payload_type", "difficulty", "category")}
    ctx.stats_extra["heldout"] = {"version": version, "size": len(picked), "counts": counts,
                                  "overlap_with_plan": 0, "collisions_skipped": collided,
                                  "excluded_training_prompts": len(exclude)}
    ctx.manifest_extra["files_read"] = {plan_opts.spec: sha}
