"""The audit log (admin only): every change, who made it and when."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import Response

from jingzhun.web import accounts
from jingzhun.web.api.deps import Admin, Database, Page, PageParams, paged
from jingzhun.web.calls import EngineContext

router = APIRouter(prefix="/audit", tags=["audit"])


def audit_page(ctx: EngineContext, page: PageParams, actor: str | None, object_type: str | None,
               action: str | None) -> dict:
    rows, total = accounts.audit_entries(ctx.engine, limit=page.limit, offset=page.offset, actor=actor,
                                         object_type=object_type, action=action)
    items = [{**row, "details": orjson.loads(row["details"]) if row["details"] else None} for row in rows.to_pylist()]
    return paged(items, total, page)


@router.get("")
async def list_audit(principal: Admin, db: Database, page: Page,
                     actor: Annotated[str | None, Query(max_length=200)] = None,
                     object_type: Annotated[str | None, Query(max_length=100)] = None,
                     action: Annotated[str | None, Query(max_length=100)] = None) -> Response:
    """Audit rows, newest first, optionally for one actor, object type or action."""
    return await db.json(audit_page, page=page, actor=actor, object_type=object_type, action=action)
