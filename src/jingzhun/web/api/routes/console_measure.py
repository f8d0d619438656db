"""Measurement (效果评估): campaign KPIs, lift against the holdout, attribution and the channel
budget — the measure stage's public functions, each answer with the SQL behind it.

Reading only: KPIs come from `campaign_kpis` as the measure stage and the collector's hook
keep it; lift and attribution are computed from deliveries, events and orders on each call;
the budget plan fits the response curves on each call (seconds on the demo). Each answer's
main table comes a page at a time (`limit`/`offset`, like every list of the API); the
numbers beside it (the budget's gain, the day-by-day lift readings) come whole.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import APIRouter, Query
from fastapi.responses import Response

from jingzhun.measure import compute_attribution, measure_lift, plan_budget, read_kpis
from jingzhun.web.api.deps import Database, Page, PageParams, Viewer
from jingzhun.web.api.results import table_page
from jingzhun.web.calls import EngineContext

router = APIRouter(prefix="/measure", tags=["measure"])
KpiGroup = Literal["campaign_id", "channel", "segment_id", "day", "arm", "origin"]
CampaignIds = Annotated[list[str] | None, Query(max_length=50, description="campaigns; all when absent")]


def kpi_report(ctx: EngineContext, by: list[str], campaign_id: str | None, page: PageParams) -> dict[str, Any]:
    if not ctx.engine.table_exists("campaign_kpis"):  # the measure stage has not run on this workspace
        return table_page(pd.DataFrame(), page)
    report = read_kpis(ctx.engine, by=tuple(by), campaign_id=campaign_id)
    return table_page(report.frame, page, {"kpis": report.sql})


def lift_report(ctx: EngineContext, campaign_ids: list[str] | None, pool: bool, page: PageParams) -> dict[str, Any]:
    report = measure_lift(ctx.workspace, ctx.engine, campaign_ids or None, pool=pool)
    shown = table_page(report.frame, page, report.sql)
    on_page = {row["campaign_id"] for row in shown["items"]}  # the day-by-day readings of these campaigns
    return {**shown, "sequential": report.sequential[report.sequential["campaign_id"].isin(on_page)]}


def attribution_report(ctx: EngineContext, page: PageParams) -> dict[str, Any]:
    """The credits per model, channel and campaign (a page of them), their sums per model and
    channel (whole: the picture across campaigns), and the Markov removal effects."""
    result = compute_attribution(ctx.workspace, ctx.engine)
    channels = result.credits.groupby(["model", "touch_channel"], as_index=False)[["conversions", "value"]].sum()
    return {**table_page(result.credits, page, result.sql), "channels": channels, "removal": result.removal}


def budget_report(ctx: EngineContext, total: float | None, page: PageParams) -> dict[str, Any]:
    """The recommended split per channel (a page of channels), the curves, and the expected gain."""
    plan = plan_budget(ctx.workspace, ctx.engine, total=total)
    return {**table_page(plan.allocation, page, plan.sql), "curves": plan.curves, "gain_per_day": plan.gain_per_day,
            "gain_low": plan.gain_low, "gain_high": plan.gain_high, "gain_positive": plan.gain_positive,
            "total_budget": plan.total}


@router.get("/kpis")
async def kpis(principal: Viewer, db: Database, page: Page,
               by: Annotated[list[KpiGroup], Query(min_length=1, max_length=6)] = ["campaign_id", "channel", "arm"],  # noqa: B006 — FastAPI copies defaults
               campaign_id: Annotated[str | None, Query(max_length=64)] = None) -> Response:
    """Campaign KPIs (sent, delivered, opened, clicked, converted, GMV, cost, CTR, CVR, ROI) summed to `by`."""
    return await db.json(kpi_report, by=by, campaign_id=campaign_id, page=page)


@router.get("/lift")
async def lift(principal: Viewer, db: Database, page: Page, campaign_id: CampaignIds = None,
               pool: bool = False) -> Response:
    """Each campaign's lift against its holdout: rates, intervals, incremental GMV and ROI, the verdict."""
    return await db.json(lift_report, campaign_ids=campaign_id, pool=pool, page=page)


@router.get("/attribution")
async def attribution(principal: Viewer, db: Database, page: Page) -> Response:
    """Credit of each channel and campaign for orders, under the rule models and the Markov chain."""
    return await db.json(attribution_report, page=page)


@router.get("/budget")
async def budget(principal: Viewer, db: Database, page: Page,
                 total: Annotated[float | None, Query(gt=0, le=1e12, description="daily budget to split")] = None
                 ) -> Response:
    """Response curves per channel and the split of the daily budget that earns the most."""
    return await db.json(budget_report, total=total, page=page)
