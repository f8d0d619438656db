"""Background jobs: the pipeline, campaign runs, imports, snapshots — their progress and outcome."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from jingzhun.pipeline import STAGES, run_pipeline
from jingzhun.web.api.deps import Admin, Database, Page, PageParams, Viewer, paged
from jingzhun.web.calls import AuditEntry, EngineContext

router = APIRouter(tags=["jobs"])


class PipelineIn(BaseModel):
    stages: list[str] | None = Field(None, max_length=20, description="only these stages (in pipeline order)")


def job_list(ctx: EngineContext, page: PageParams, kind: str | None) -> dict[str, Any]:
    items, total = ctx.jobs.list(ctx.engine, page.limit, page.offset, kind)
    return paged(items, total, page)


def job_read(ctx: EngineContext, job_id: str) -> dict[str, Any]:
    return ctx.jobs.get(ctx.engine, job_id)


def stage_list(ctx: EngineContext) -> list[dict[str, str]]:
    return [{"name": stage.name, "title_zh": stage.title_zh, "title_en": stage.title_en} for stage in STAGES]


def pipeline_job(ctx: EngineContext, stages: list[str] | None) -> dict[str, Any]:
    """Run the pipeline in the background; the collector's after-load hooks pause meanwhile."""
    workspace = ctx.workspace
    if stages and set(stages) - {stage.name for stage in STAGES}:
        # Fail now, not in the background: run_pipeline checks the names (and suggests a close
        # one) before it touches the engine.
        run_pipeline(workspace, None, stages=stages)  # type: ignore[arg-type]

    def work(engine, progress):  # noqa: ANN001, ANN202 — a job: (engine, progress) → result
        current = {"stage": "", "index": 0, "total": 1}

        def on_stage(stage, index: int, total: int) -> None:  # noqa: ANN001
            current.update(stage=stage.name, index=index, total=total)
            progress(index / total, stage.name)

        def on_step(step: str, done: int, total: int) -> None:
            inside = done / total if total else 0.0
            progress((current["index"] + inside) / current["total"], f"{current['stage']}: {step}")

        results = run_pipeline(workspace, engine, on_stage, on_step, stages=stages or None)
        return [{"stage": r.stage, "seconds": round(r.seconds, 2), "tables": r.tables,
                 "notes": [{"key": n.key, "values": n.values} for n in r.notes]} for r in results]

    return ctx.jobs.start("pipeline", work, {"stages": stages}, ctx.actor, lock="pipeline", pause_hooks=True).as_dict()


@router.get("/jobs")
async def list_jobs(principal: Viewer, db: Database, page: Page,
                    kind: Annotated[str | None, Query(max_length=40)] = None) -> Response:
    """Background jobs, newest first; running ones with their live progress."""
    return await db.json(job_list, page=page, kind=kind)


@router.get("/jobs/{job_id}")
async def read_job(job_id: str, principal: Viewer, db: Database) -> Response:
    """One job: status (running, succeeded, failed, interrupted), progress 0-1, step, result or error."""
    return await db.json(job_read, job_id=job_id)


@router.get("/pipeline/stages")
async def list_stages(principal: Viewer, db: Database) -> Response:
    """The pipeline's stages, in order, named in zh and en."""
    return await db.json(stage_list)


@router.post("/pipeline/runs", status_code=202)
async def run(body: PipelineIn, principal: Admin, db: Database) -> Response:
    """Run the whole pipeline (or some stages) as a background job; one at a time."""
    return await db.change(pipeline_job, AuditEntry("pipeline.run", "pipeline", ",".join(body.stages or ["*"])[:200]),
                           status_code=202, stages=body.stages)
