"""The `plan` operation: a seeded, weighted prompt plan (data/specs/*.yaml) → one record per travel question.

Deterministic by construction: one `random.Random(seed)` drawn in a fixed order, records carry no
timestamp, so the same spec and seed give a byte-identical records.jsonl, and a smaller limit gives a
prefix of a larger plan (downstream stages resume instead of redoing work).
"""

from __future__ import annotations

import random
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pocketguide.engine.errors import StageError
from pocketguide.engine.registry import operation
from pocketguide.engine.store import file_sha256
from pocketguide.pipelines.pocketguide.contracts import PAYLOAD_TYPES


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CategorySpec(_Strict):
    weight: float = Field(gt=0)
    patterns: dict[str, list[str]] = Field(description="payload type → question patterns ({destination}, {duration})")

    @model_validator(mode="after")
    def _known_types(self) -> CategorySpec:
        bad = [t for t in self.patterns if t not in PAYLOAD_TYPES]
        if bad or not self.patterns or not all(self.patterns.values()):
            raise ValueError(f"patterns need ≥ 1 pattern per payload type, types among {PAYLOAD_TYPES}; bad: {bad}")
        return self


class RegionSpec(_Strict):
    weight: float = Field(gt=0)
    destinations: list[str] = Field(min_length=1)


class PlanSpec(_Strict):
    version: str = "v1"
    seed: int = 0
    count: int = Field(ge=1)
    difficulty: dict[str, float]
    payload_types: dict[str, float]
    categories: dict[str, CategorySpec] = Field(min_length=1)
    regions: dict[str, RegionSpec] = Field(min_length=1)
    profiles: list[str] = Field(min_length=1)
    durations: list[str] = Field(min_length=1)
    constraints: dict[str, list[str]] = Field(default_factory=dict)
    phrases: dict[str, str] = Field(default_factory=dict)


class PlanOptions(_Strict):
    spec: str = Field("data/specs/pocketguide.v1.yaml", description="plan spec file, relative to stages.yaml")
    seed: int | None = Field(None, description="overrides the spec's seed")
    count: int | None = Field(None, ge=1, description="overrides the spec's count (a run's --limit caps it further)")


def load_plan_spec(path) -> PlanSpec:
    try:
        return PlanSpec.model_validate(yaml.safe_load(path.read_text()))
    except FileNotFoundError:
        raise StageError(f"plan spec {path} not found — fix options.spec in stages.yaml") from None
    except (yaml.YAMLError, ValidationError) as exc:
        raise StageError(f"plan spec {path} is invalid: {exc} — fix the file") from None


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


_N_CONSTRAINTS = {"easy": (0, 1), "medium": (1, 2), "hard": (2, 3)}


def draw_prompt(spec: PlanSpec, rng: random.Random, index: int) -> tuple[str, dict[str, Any]]:
    """One plan entry (id, data). Every draw happens in the same order whatever the outcome."""
    category = _pick(rng, {k: c.weight for k, c in spec.categories.items()})
    cat = spec.categories[category]
    ptype = _pick(rng, {t: spec.payload_types.get(t, 1.0) for t in cat.patterns})
    difficulty = _pick(rng, spec.difficulty)
    region = _pick(rng, {k: r.weight for k, r in spec.regions.items()})
    destination = rng.choice(spec.regions[region].destinations)
    profile = rng.choice(spec.profiles)
    duration = rng.choice(spec.durations)
    pattern = rng.choice(cat.patterns[ptype])
    lo, hi = _N_CONSTRAINTS.get(difficulty, (0, 1))
    n = min(rng.randint(lo, hi), len(spec.constraints))
    kinds = sorted(rng.sample(sorted(spec.constraints), n))
    constraints = {k: rng.choice(spec.constraints[k]) for k in kinds}
    parts = [pattern.format_map({"destination": destination, "duration": duration})]
    if "profile" in spec.phrases:
        parts.append(spec.phrases["profile"].format_map({"profile": profile}))
    for k, v in constraints.items():
        parts.append(spec.phrases.get(k, k + ": {value}.").format_map({"value": v}))
    rid = f"{spec.version}_{ptype}_{category}_{index:04d}"
    data = {"prompt": " ".join(parts), "payload_type": ptype, "category": category, "difficulty": difficulty,
            "region": region, "destination": destination, "profile": profile, "duration": duration,
            "constraints": constraints}
    return rid, data


@operation("plan", options=PlanOptions)
def plan(ctx: Any, opts: PlanOptions) -> None:
    """Seeded, weighted prompt plan from a spec file; at most --limit prompts."""
    path = ctx.pipe.resolve(opts.spec)
    spec = load_plan_spec(path)
    seed = spec.seed if opts.seed is None else opts.seed
    count = opts.count or spec.count
    limit = ctx.run.limit
    n = count if limit is None else min(count, limit)
    rng = random.Random(seed)
    for i in range(1, n + 1):
        rid, data = draw_prompt(spec, rng, i)
        # no timestamp: the plan is a pure function of (spec, seed, n), byte for byte
        ctx.accept(ctx.new(rid, data=data, prompt=data["prompt"], created_at=None))
    ctx.manifest_extra.update({"limit": limit, "plan": {"seed": seed, "count": count, "written": n},
                               "files_read": {opts.spec: file_sha256(path)}})
    ctx.stats_extra["plan"] = {"seed": seed, "count": count, "written": n, "limit": limit}
