"""Measurement (效果评估): campaign KPIs, lift against the holdout, attribution and the channel
budget — the measure stage's public functions, each answer with the SQL behind it.

Reading only: KPIs come from `campaign_kpis` as the measure stage and the collector's hook
keep it; lift and attribution are computed from deliveries, events and orders on each call;
the budget plan fits the response curves on each call (seconds on the demo).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from jingzhun.measure import compute_attribution, measure_lift, plan_budget, read_kpis
from jingzhun.web.api.deps import Database, Viewer
from jingzhun.web.calls import EngineContext

router = APIRouter(prefix="/measure", tags=["measure"])
KpiGroup = Literal["campaign_id", "channel", "segment_id", "day", "arm", "origin"]
CampaignIds = Annotated[list[str] | None, Query(max_length=50, description="campaigns; all when absent")]


def kpi_report(ctx: EngineContext, by: list[str], campaign_id: str | None) -> dict[str, Any]:
    if not ctx.engine.table_exists("campaign_kpis"):
        return {"columns": [], "items": [], "sql": {}}
    report = read_kpis(ctx.engine, by=tuple(by), campaign_id=campaign_id)
    return {"columns": list(report.frame.columns), "items": report.frame, "sql": {"kpis": report.sql}}


def lift_report(ctx: EngineContext, campaign_ids: list[str] | None, pool: bool) -> dict[str, Any]:
    report = measure_lift(ctx.workspace, ctx.engine, campaign_ids or None, pool=pool)
    return {"columns": list(report.frame.columns), "items": report.frame, "sequential": report.sequential,
            "sql": report.sql}


def attribution_report(ctx: EngineContext) -> dict[str, Any]:
    result = compute_attribution(ctx.workspace, ctx.engine)
    return {"credits": result.credits, "removal": result.removal, "sql": result.sql}


def budget_report(ctx: EngineContext, total: float | None) -> dict[str, Any]:
    plan = plan_budget(ctx.workspace, ctx.engine, total=total)
    return {"curves": plan.curves, "allocation": plan.allocation, "gain_per_day": plan.gain_per_day,
            "gain_low": plan.gain_low, "gain_high": plan.gain_high, "gain_positive": plan.gain_positive,
            "total": plan.total, "sql": plan.sql}


@router.get("/kpis")
async def kpis(principal: Viewer, db: Database,
               by: Annotated[list[KpiGroup], Query(min_length=1, max_length=6)] = ["campaign_id", "channel", "arm"],  # noqa: B006 — FastAPI copies defaults
               campaign_id: Annotated[str | None, Query(max_length=64)] = None) -> Response:
    """Campaign KPIs (sent, delivered, opened, clicked, converted, GMV, cost, CTR, CVR, ROI) summed to `by`."""
    return await db.json(kpi_report, by=by, campaign_id=campaign_id)


@router.get("/lift")
async def lift(principal: Viewer, db: Database, campaign_id: CampaignIds = None, pool: bool = False) -> Response:
    """Each campaign's lift against its holdout: rates, intervals, incremental GMV and ROI, the verdict."""
    return await db.json(lift_report, campaign_ids=campaign_id, pool=pool)


@router.get("/attribution")
async def attribution(principal: Viewer, db: Database) -> Response:
    """Credit of each channel and campaign for orders, under the rule models and the Markov chain."""
    return await db.json(attribution_report)


@router.get("/budget")
async def budget(principal: Viewer, db: Database,
                 total: Annotated[float | None, Query(gt=0, le=1e12, description="daily budget to split")] = None
                 ) -> Response:
    """Response curves per channel and the split of the daily budget that earns the most."""
    return await db.json(budget_report, total=total)
