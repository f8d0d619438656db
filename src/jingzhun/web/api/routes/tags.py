"""Tags: the library with current holders, who holds a tag, how holders changed, recomputing."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlglot import exp

from jingzhun.profiles import apply_tags, list_tags, tag_trend
from jingzhun.web.api.deps import Database, Marketer, Page, PageParams, Viewer
from jingzhun.web.api.results import paged_query, table_page
from jingzhun.web.calls import AuditEntry, EngineContext
from jingzhun.web.errors import not_found

router = APIRouter(prefix="/tags", tags=["tags"])
CATEGORIES = "^(base|marketing|intent|scenario|predictive)$"


class ApplyIn(BaseModel):
    tag_ids: list[str] | None = Field(None, max_length=500, description="tags to compute; all when absent")


def known_tag(ctx: EngineContext, tag_id: str) -> None:
    if tag_id not in set(list_tags(ctx.workspace)["tag_id"]):
        raise not_found("tag", tag_id, "/api/v1/tags", "标签")


def tag_list(ctx: EngineContext, category: str | None, page: PageParams) -> dict[str, Any]:
    frame = list_tags(ctx.workspace, ctx.engine)
    if category is not None:
        frame = frame[frame["category"] == category]
    return table_page(frame, page, {"holders": "SELECT tag_id, COUNT(*) AS holders FROM tags "
                                               "WHERE valid_to IS NULL GROUP BY tag_id ORDER BY tag_id"})


def tag_holders(ctx: EngineContext, tag_id: str, value: str | None, page: PageParams) -> dict[str, Any]:
    """Current holders of a tag (the portrait's open tag rows), with their value since when."""
    known_tag(ctx, tag_id)
    query = (exp.select("person_id", "value", "valid_from", "tag_version").from_("tags")
             .where(exp.column("tag_id").eq(exp.convert(tag_id))).where("valid_to IS NULL"))
    if value is not None:
        query = query.where(exp.column("value").eq(exp.convert(value)))
    return paged_query(ctx.engine, query.order_by("person_id"), page, "holders")


def tag_history(ctx: EngineContext, tag_id: str, start: dt.date | None, end: dt.date | None) -> dict[str, Any]:
    known_tag(ctx, tag_id)
    return {"tag_id": tag_id, "items": tag_trend(ctx.engine, tag_id, timezone=ctx.timezone, start=start, end=end)}


def apply_job(ctx: EngineContext, tag_ids: list[str] | None) -> dict[str, Any]:
    workspace = ctx.workspace

    def work(engine, progress):  # noqa: ANN001, ANN202 — a job: (engine, progress) → result
        result = apply_tags(workspace, engine, tag_ids or None, None,
                            lambda step, done, total: progress(done / total if total else None, step))
        return {"as_of": result.as_of, "tables": result.tables, "changes": result.changes, "skipped": result.skipped}

    return ctx.jobs.start("tags", work, {"tag_ids": tag_ids}, ctx.actor, lock="tags").as_dict()


@router.get("")
async def list_tag_library(principal: Viewer, db: Database, page: Page,
                           category: Annotated[str | None, Query(pattern=CATEGORIES)] = None) -> Response:
    """Every enabled tag: names (zh/en), category, kind, version and current holders."""
    return await db.json(tag_list, category=category, page=page)


@router.get("/{tag_id}/holders")
async def list_holders(tag_id: str, principal: Viewer, db: Database, page: Page,
                       value: Annotated[str | None, Query(max_length=200)] = None) -> Response:
    """Who holds a tag now (optionally with one value)."""
    return await db.json(tag_holders, tag_id=tag_id, value=value, page=page)


@router.get("/{tag_id}/trend")
async def read_trend(tag_id: str, principal: Viewer, db: Database, start: dt.date | None = None,
                     end: dt.date | None = None) -> Response:
    """Holders at the end of each local day."""
    return await db.json(tag_history, tag_id=tag_id, start=start, end=end)


@router.post("/apply", status_code=202)
async def apply(body: ApplyIn, principal: Marketer, db: Database) -> Response:
    """Recompute tags (all, or the listed ones) as a background job; entries and exits are recorded."""
    return await db.change(apply_job, AuditEntry("tags.apply", "tag", ",".join(body.tag_ids or ["*"])[:500]),
                           status_code=202, tag_ids=body.tag_ids)
