"""Run every stage in order; each redoes only what changed (engine/resume.py). The stages' states
(done, partial, stale and why) come from engine/staleness.py."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from pocketguide.engine.loader import Pipeline, load_pipeline
from pocketguide.engine.runner import StageResult, arun_stage
from pocketguide.engine.session import RunOptions, Services
from pocketguide.engine.staleness import StageState, pipeline_status

__all__ = ["PipelineResult", "run_pipeline", "pipeline_status", "StageState"]


@dataclass
class PipelineResult:
    stages: list[StageResult] = field(default_factory=list)
    stopped: str | None = None

    @property
    def ok(self) -> bool:
        return self.stopped is None


def run_pipeline(path: str | Path | Pipeline = "stages.yaml", *, limit: int | None = None, dry_run: bool = False,
                 fresh: bool = False, options: RunOptions | None = None,
                 only: list[str] | None = None) -> PipelineResult:
    """Each stage in order; `limit` caps the first stage's records (in total, so a rerun resumes). A rerun
    redoes only what changed; `fresh` moves every stage's output aside and starts over."""
    pipe = path if isinstance(path, Pipeline) else load_pipeline(path)
    base = options or RunOptions(limit=limit, dry_run=dry_run, fresh=fresh)

    async def main() -> PipelineResult:
        out = PipelineResult()
        services = Services()
        try:
            for i, stage in enumerate(pipe.stages):
                if only and stage.name not in only:
                    continue
                opts = RunOptions(**{**base.__dict__})
                opts.limit = base.limit if i == 0 else None
                opts.settings = {**base.settings, "limit_total": i == 0}
                res = await arun_stage(pipe, stage, opts, services)
                out.stages.append(res)
                if res.stopped:
                    out.stopped = f"{stage.name}: {res.stopped}"
                    break
        finally:
            await services.aclose()
        return out

    return asyncio.run(main())
