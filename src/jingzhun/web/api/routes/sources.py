"""Collector sources and their write keys (admin only). A write key only sends events."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from jingzhun.collect.collector import CollectorState, Source, add_source, hash_key, list_sources
from jingzhun.web.api.deps import Admin, Database, Page, PageParams
from jingzhun.web.api.results import table_page
from jingzhun.web.calls import AuditEntry, EngineContext

router = APIRouter(prefix="/sources", tags=["sources"])


class SourceIn(BaseModel):
    name: str = Field(min_length=1, max_length=100, description="e.g. web-shop")
    kind: Literal["web", "app", "miniprogram", "server"] = Field("web", description="becomes the events' channel")


def source_list(ctx: EngineContext, page: PageParams) -> dict[str, Any]:
    return table_page(list_sources(ctx.engine), page)


def source_add(ctx: EngineContext, name: str, kind: str) -> dict[str, Any]:
    source, write_key = add_source(ctx.engine, name, kind)
    return {"source_id": source.source_id, "name": source.name, "kind": source.kind, "write_key": write_key}


@router.get("")
async def list_all(principal: Admin, db: Database, page: Page) -> Response:
    """Every source (write keys are stored hashed and cannot be shown again)."""
    return await db.json(source_list, page=page)


@router.post("", status_code=201)
async def create(body: SourceIn, request: Request, principal: Admin, db: Database) -> dict[str, Any]:
    """Create a source; `write_key` is in this answer only. The collector accepts it at once."""
    created = await db.value(source_add, AuditEntry("source.create", "source", body.name, {"kind": body.kind}),
                             name=body.name, kind=body.kind)
    state: CollectorState = request.app.state.collector
    state.keys[hash_key(created["write_key"])] = Source(created["source_id"], created["name"], created["kind"])
    return created
