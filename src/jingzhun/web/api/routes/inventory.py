"""Stock: on hand, stock-out spells, cycle-count reconciliation and data-quality findings."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlglot import exp

from jingzhun.collect import inventory, inventory_checks
from jingzhun.engine import TableHandle
from jingzhun.web.api.deps import Database, Page, PageParams, Viewer
from jingzhun.web.api.results import MATERIALIZING, table_page
from jingzhun.web.calls import EngineContext

router = APIRouter(prefix="/inventory", tags=["inventory"])
AsOf = Annotated[dt.datetime | None, Query(description="the instant to report at (UTC if no zone); default now")]


def _report(handle: TableHandle, page: PageParams) -> dict[str, Any]:
    return table_page(handle.to_arrow(), page, {handle.logical_name: handle.sql})


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def findings(ctx: EngineContext, as_of: dt.datetime | None, stale_days: int, page: PageParams) -> dict[str, Any]:
    """A page of findings, and every finding counted by check and severity (the console's chart
    counts them all, not the page)."""
    with MATERIALIZING:
        handle = inventory_checks.compute_inventory_findings(ctx.engine, as_of=_utc(as_of), stale_days=stale_days,
                                                             timezone=ctx.timezone)
        counted = (exp.select(exp.column("check", quoted=True), "severity", exp.func("COUNT", exp.Star()).as_("findings"))
                   .from_(handle.logical_name).group_by(exp.column("check", quoted=True), "severity")
                   .order_by(exp.column("check", quoted=True), "severity"))
        answer = _report(handle, page)
        answer["summary"] = ctx.engine.query(counted).to_pylist()
        answer["sql"]["summary"] = ctx.engine.render(counted)
        return answer


def on_hand(ctx: EngineContext, as_of: dt.datetime | None, page: PageParams) -> dict[str, Any]:
    with MATERIALIZING:
        return _report(inventory.compute_stock_on_hand(ctx.engine, _utc(as_of), timezone=ctx.timezone), page)


def stockouts(ctx: EngineContext, page: PageParams) -> dict[str, Any]:
    with MATERIALIZING:
        return _report(inventory.compute_stockouts(ctx.engine, timezone=ctx.timezone), page)


def reconciliation(ctx: EngineContext, page: PageParams) -> dict[str, Any]:
    with MATERIALIZING:
        return _report(inventory.compute_reconciliation(ctx.engine, timezone=ctx.timezone), page)


@router.get("/checks")
async def data_quality(principal: Viewer, db: Database, page: Page, as_of: AsOf = None,
                       stale_days: Annotated[int, Query(ge=1, le=3650)] = 60) -> Response:
    """Stock data-quality findings: negative stock, stale counts, duplicates, bad barcodes …, one row each."""
    return await db.json(findings, as_of=as_of, stale_days=stale_days, page=page)


@router.get("/stock")
async def stock(principal: Viewer, db: Database, page: Page, as_of: AsOf = None) -> Response:
    """Stock on hand per SKU × location."""
    return await db.json(on_hand, as_of=as_of, page=page)


@router.get("/stockouts")
async def stockout_spells(principal: Viewer, db: Database, page: Page) -> Response:
    """Stock-out spells per SKU × location."""
    return await db.json(stockouts, page=page)


@router.get("/reconciliation")
async def count_reconciliation(principal: Viewer, db: Database, page: Page) -> Response:
    """Cycle counts against the ledger: over, short, match, uncounted."""
    return await db.json(reconciliation, page=page)
