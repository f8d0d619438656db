"""Analytics: every `jingzhun report` analysis, each answer carrying the SQL that produced it.

Parameters mirror the CLI's options (docs/analytics.md). An analysis's rows come a page
at a time (`limit`/`offset`); its SQL, chart spec and readings come whole.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import orjson
import yaml
from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from jingzhun.analytics import (
    DIMENSIONS,
    MEASURES,
    AnalyticsError,
    CubeQuery,
    Thresholds,
    allowed_dimensions,
    association_rules,
    bundle_suggestions,
    compare_audiences,
    compare_periods,
    compare_with_benchmark,
    cross_sell,
    fans_vs_buyers,
    find_root_cause,
    funnel,
    hypothesis_checks,
    livestream_lineup,
    paths,
    rank_sources,
    retention,
    retention_triangle,
    run_cube,
    seasonality,
)
from jingzhun.web.api.deps import COMPUTES, Analyst, Database, Page, PageParams, Viewer
from jingzhun.web.api.results import MATERIALIZING, AnalysisOut, analysis_page, narrowed
from jingzhun.web.api.user_sql import check_user_sql
from jingzhun.web.calls import EngineContext
from jingzhun.web.serialize import jsonable

router = APIRouter(prefix="/analytics", tags=["analytics"])

Measures = Annotated[list[str], Query(min_length=1, max_length=10, description="measure names (GET …/cube/catalog)")]
By = Annotated[list[str] | None, Query(max_length=5, description="dimensions; tag:<id> for one tag")]
Where = Annotated[list[str] | None, Query(max_length=10, description="dimension=value[,value…]")]
Period = Annotated[str | None, Query(max_length=60, description="2026, 2026-Q1, 2026-03, 2026-W12, A..B, 春节2026±7")]
Level = Literal["product", "subcategory", "category"]
Support = Annotated[float | None, Query(gt=0, le=1, description="share of baskets an itemset must be in")]
Since = Annotated[dt.datetime | None, Query(description="orders placed from this instant")]
Until = Annotated[dt.datetime | None, Query(description="orders placed before this instant")]
Day = dt.date | None


def where_filters(items: list[str] | None) -> dict[str, tuple[str, ...]]:
    """`["category=cosmetics,apparel"]` → `{"category": ("cosmetics", "apparel")}`."""
    found: dict[str, tuple[str, ...]] = {}
    for item in items or []:
        name, sep, values = item.partition("=")
        kept = tuple(v.strip() for v in values.split(",") if v.strip())
        if not sep or not name.strip() or not kept:
            raise AnalyticsError(f"cannot read the filter {item!r}.", field="where",
                                 fix="write dimension=value[,value…], e.g. category=cosmetics",
                                 message_zh=f"无法解析过滤条件 {item!r}。", fix_zh="请写成 维度=取值，例如 category=cosmetics")
        found[name.strip()] = kept
    return found


def instant(moment: dt.datetime | None) -> dt.datetime | None:
    """An instant from a query: UTC when it names no zone (as the CLI reads --since/--until)."""
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def goal_of(text: str | None) -> object:
    """A goal as the CLI reads it: JSON or YAML (an order/event rule), else an event name."""
    if text is None:
        return None
    stripped = text.strip()
    try:
        if stripped.startswith("{"):
            return orjson.loads(stripped)
        return yaml.safe_load(stripped) if ":" in stripped else stripped
    except (orjson.JSONDecodeError, yaml.YAMLError):
        raise AnalyticsError(f"cannot read the goal {text[:60]!r}.", field="goal",
                             fix='an event name, or a rule as JSON: {"order": {"product": {"category": "cosmetics"}}}',
                             message_zh=f"无法解析转化目标 {text[:60]!r}。",
                             fix_zh='请给出事件名，或 JSON 规则：{"order": {"product": {"category": "cosmetics"}}}') from None


def cube_query(measures: list[str], by: list[str] | None, where: list[str] | None, period: str | None) -> CubeQuery:
    return CubeQuery(measures=tuple(measures), by=tuple(by or ()), where=where_filters(where), period=period)


def cube_catalog(ctx: EngineContext) -> dict[str, Any]:
    return {"measures": [{"name": name, "label_zh": m.label_zh, "label_en": m.label_en, "unit": m.unit,
                          "dimensions": list(allowed_dimensions(m))} for name, m in MEASURES.items()],
            "dimensions": [jsonable(dimension) for dimension in DIMENSIONS.values()]}


def cube_analysis(ctx: EngineContext, measures: list[str], by: list[str] | None, where: list[str] | None,
                  period: str | None, pivot: str | None, page: PageParams) -> dict[str, Any]:
    query = cube_query(measures, by, where, period)
    return analysis_page(run_cube(ctx.engine, query, ctx.timezone, pivot=pivot), page)


def compare_analysis(ctx: EngineContext, measures: list[str], by: list[str] | None, where: list[str] | None,
                     period: str | None, against: str, align: str, benchmark: str | None, subject: str | None,
                     benchmark_category: str | None, page: PageParams) -> dict[str, Any]:
    query = cube_query(measures, by, where, period)
    if benchmark:
        found = compare_with_benchmark(ctx.engine, query, benchmark, subject, benchmark_category, against, align,
                                       ctx.timezone)
    else:
        found = compare_periods(ctx.engine, query, against, align, ctx.timezone)
    return analysis_page(found, page)


def root_cause_analysis(ctx: EngineContext, measure: str, period: str, base: str | None,
                        dimensions: list[str] | None, where: list[str] | None, max_depth: int, min_share: float,
                        recent_days: int, page: PageParams) -> dict[str, Any]:
    filters = {name: values[0] for name, values in where_filters(where).items()}
    thresholds = Thresholds(max_depth=max_depth, min_share=min_share, recent_days=recent_days)
    return analysis_page(find_root_cause(ctx.engine, measure, period, base, dimensions, filters, thresholds,
                                         ctx.timezone), page)


def rules_analysis(ctx: EngineContext, level: str, min_support: float | None, min_confidence: float,
                   min_lift: float, max_size: int, since: dt.datetime | None, until: dt.datetime | None,
                   page: PageParams) -> dict[str, Any]:
    return analysis_page(association_rules(ctx.engine, level, min_support, min_confidence, min_lift, max_size,
                                           instant(since), instant(until)), page)


def cross_sell_analysis(ctx: EngineContext, item: str | None, level: str, top: int, min_support: float | None,
                        min_lift: float, since: dt.datetime | None, until: dt.datetime | None,
                        page: PageParams) -> dict[str, Any]:
    return analysis_page(cross_sell(ctx.engine, item, level, top, min_support, min_lift, instant(since),
                                    instant(until)), page)


def lineup_analysis(ctx: EngineContext, items: list[str] | None, level: str, slots: int, min_lift: float,
                    min_support: float | None, since: dt.datetime | None, until: dt.datetime | None,
                    page: PageParams) -> dict[str, Any]:
    return analysis_page(livestream_lineup(ctx.engine, items or None, level, slots, min_support, min_lift,
                                           since=instant(since), until=instant(until)), page)


def bundles_analysis(ctx: EngineContext, level: str, min_support: float | None, min_lift: float, min_baskets: int,
                     bundle_confidence: float, top: int, since: dt.datetime | None, until: dt.datetime | None,
                     page: PageParams) -> dict[str, Any]:
    return analysis_page(bundle_suggestions(ctx.engine, level, min_support, min_lift, min_baskets,
                                            bundle_confidence, top, instant(since), instant(until)), page)


def fans_analysis(ctx: EngineContext, accounts: list[str], product: dict[str, str], by: list[str],
                  interactions: bool, page: PageParams) -> dict[str, Any]:
    return analysis_page(fans_vs_buyers(ctx.engine, accounts, product=product or None, dimensions=by,
                                        interactions=interactions, timezone=ctx.timezone), page)


def audiences_analysis(ctx: EngineContext, a: dict[str, Any], b: dict[str, Any], by: list[str],
                       page: PageParams) -> dict[str, Any]:
    for name, audience in (("a", a), ("b", b)):
        if isinstance(audience.get("sql"), str):
            check_user_sql(ctx.engine, audience["sql"], f"{name}.sql")
    return analysis_page(compare_audiences(ctx.engine, a, b, by, timezone=ctx.timezone), page)


def funnel_analysis(ctx: EngineContext, steps: list[Any], window: str, order: str, by: str | None, start: Day,
                    end: Day, page: PageParams) -> dict[str, Any]:
    return analysis_page(funnel(ctx.engine, steps, window=window, order=order, breakdown=by, start=start, end=end,
                                timezone=ctx.timezone), page)


def retention_analysis(ctx: EngineContext, cohort: str, period: str, activity: str, layout: str, unbounded: bool,
                       start: Day, end: Day, page: PageParams) -> dict[str, Any]:
    found = retention(ctx.engine, cohort=cohort, period=period, activity=activity, start=start, end=end,
                      timezone=ctx.timezone)
    if layout == "triangle":
        found = narrowed(found, retention_triangle(found.frame, "unbounded_retention" if unbounded else "retention"))
    return analysis_page(found, page)


def paths_analysis(ctx: EngineContext, event: str, direction: str, depth: int, top: int, prop: str | None,
                   start: Day, end: Day, page: PageParams) -> dict[str, Any]:
    return analysis_page(paths(ctx.engine, event, direction=direction, depth=depth, top=top, prop=prop, start=start,
                               end=end, timezone=ctx.timezone), page)


def seasonality_analysis(ctx: EngineContext, by: str, holidays: list[str] | None, window_days: int,
                         per_holiday: bool, confidence: float, start: Day, end: Day, page: PageParams) -> dict:
    chosen = {"holidays": holidays} if holidays else {}  # else the analysis's own default: all four
    return analysis_page(seasonality(ctx.engine, dimension=by, **chosen, window_days=window_days, per_holiday=per_holiday, start=start, end=end,
                                     confidence=confidence, timezone=ctx.timezone), page)


def hypotheses_analysis(ctx: EngineContext, baseline: str, current: str, kpi: str, category: str | None,
                        kpi_sql: str | None, hypotheses: list[dict[str, Any]], alpha: float, min_share: float,
                        price_elasticity: float, page: PageParams) -> dict[str, Any]:
    for index, given in enumerate(hypotheses):
        if isinstance(given, dict) and isinstance(given.get("sql"), str):
            check_user_sql(ctx.engine, given["sql"], f"hypotheses.{index}.sql")
    if kpi_sql is not None:
        check_user_sql(ctx.engine, kpi_sql, "kpi_sql")
    with MATERIALIZING:  # stock-out spells are materialized (inventory_stockouts)
        found = hypothesis_checks(ctx.engine, baseline=baseline, current=current, kpi=kpi, category=category,
                                  kpi_query=kpi_sql, user_hypotheses=hypotheses, alpha=alpha, min_share=min_share,
                                  price_elasticity=price_elasticity, timezone=ctx.timezone)
    return analysis_page(found, page)


def source_ranking(ctx: EngineContext, goal: str | None, window: int, as_of: dt.datetime | None,
                   page: PageParams) -> dict[str, Any]:
    return analysis_page(rank_sources(ctx.engine, goal_of(goal), window, instant(as_of), None, ctx.workspace,
                                      ctx.timezone), page)


@router.get("/cube/catalog")
async def catalog(principal: Viewer, db: Database) -> Response:
    """The cube's measures (with the dimensions each allows) and dimensions, named in zh and en."""
    return await db.json(cube_catalog)


@router.get("/cube", response_model=AnalysisOut)
async def cube(principal: Viewer, db: Database, page: Page, measure: Measures, by: By = None, where: Where = None,
               period: Period = None, pivot: Annotated[str | None, Query(max_length=60)] = None) -> Response:
    """Measures by time, place, channel, people and product: roll up, drill down, slice, dice, pivot."""
    return await db.json(cube_analysis, measures=measure, by=by, where=where, period=period, pivot=pivot, page=page)


@router.get("/compare", response_model=AnalysisOut)
async def compare(principal: Viewer, db: Database, page: Page, measure: Measures, by: By = None, where: Where = None,
                  period: Period = None, against: Literal["yoy", "mom", "wow"] = "yoy",
                  align: Literal["auto", "date", "weekday", "holiday"] = "auto",
                  benchmark: Annotated[str | None, Query(max_length=100)] = None,
                  subject: Annotated[str | None, Query(max_length=100)] = None,
                  benchmark_category: Annotated[str | None, Query(max_length=100)] = None) -> Response:
    """Year on year, month on month, week on week (calendar-aware), or against a benchmark series."""
    return await db.json(compare_analysis, measures=measure, by=by, where=where, period=period, against=against,
                         align=align, benchmark=benchmark, subject=subject, benchmark_category=benchmark_category,
                         page=page)


@router.get("/root-cause", response_model=AnalysisOut)
async def root_cause(principal: Viewer, db: Database, page: Page,
                     measure: Annotated[str, Query(max_length=60)], period: Annotated[str, Query(max_length=60)],
                     base: Period = None,
                     dimension: Annotated[list[str] | None, Query(max_length=20)] = None, where: Where = None,
                     max_depth: Annotated[int, Query(ge=1, le=5)] = 3,
                     min_share: Annotated[float, Query(gt=0, le=1)] = 0.5,
                     recent_days: Annotated[int, Query(ge=1, le=365)] = 30) -> Response:
    """Which dimension values explain a KPI's change (Adtributor), drilling into the top cause."""
    return await db.json(root_cause_analysis, measure=measure, period=period, base=base, dimensions=dimension,
                         where=where, max_depth=max_depth, min_share=min_share, recent_days=recent_days, page=page)


@router.get("/rules", response_model=AnalysisOut)
async def rules(principal: Viewer, db: Database, page: Page, level: Level = "subcategory", min_support: Support = None,
                min_confidence: Annotated[float, Query(ge=0, le=1)] = 0.0,
                min_lift: Annotated[float, Query(ge=0, le=1000)] = 0.0, max_size: Annotated[int, Query(ge=2, le=3)] = 3,
                since: Since = None, until: Until = None) -> Response:
    """Association rules of items bought together: support, confidence, lift, leverage, conviction."""
    return await db.json(rules_analysis, level=level, min_support=min_support, min_confidence=min_confidence,
                         min_lift=min_lift, max_size=max_size, since=since, until=until, page=page)


@router.get("/cross-sell", response_model=AnalysisOut)
async def cross_sell_report(principal: Viewer, db: Database, page: Page,
                            item: Annotated[str | None, Query(max_length=200)] = None, level: Level = "product",
                            top: Annotated[int, Query(ge=1, le=50)] = 5, min_support: Support = None,
                            min_lift: Annotated[float, Query(ge=0, le=1000)] = 1.0, since: Since = None,
                            until: Until = None) -> Response:
    """What each item's buyers add most often, with attach rate and lift."""
    return await db.json(cross_sell_analysis, item=item, level=level, top=top, min_support=min_support,
                         min_lift=min_lift, since=since, until=until, page=page)


@router.get("/lineup", response_model=AnalysisOut)
async def lineup(principal: Viewer, db: Database, page: Page,
                 item: Annotated[list[str] | None, Query(max_length=50)] = None, level: Level = "product",
                 slots: Annotated[int, Query(ge=1, le=50)] = 12, min_lift: Annotated[float, Query(ge=0, le=1000)] = 1.5,
                 min_support: Support = None, since: Since = None, until: Until = None) -> Response:
    """A livestream line-up: traffic drivers first, each followed by its add-ons."""
    return await db.json(lineup_analysis, items=item, level=level, slots=slots, min_lift=min_lift,
                         min_support=min_support, since=since, until=until, page=page)


@router.get("/bundles", response_model=AnalysisOut)
async def bundles(principal: Viewer, db: Database, page: Page, level: Level = "product", min_support: Support = None,
                  min_lift: Annotated[float, Query(ge=0, le=1000)] = 1.5,
                  min_baskets: Annotated[int, Query(ge=1, le=100_000)] = 5,
                  bundle_confidence: Annotated[float, Query(ge=0, le=1)] = 0.2,
                  top: Annotated[int, Query(ge=1, le=500)] = 20, since: Since = None, until: Until = None) -> Response:
    """Bundle and coupon-pair suggestions with expected attach rates."""
    return await db.json(bundles_analysis, level=level, min_support=min_support, min_lift=min_lift,
                         min_baskets=min_baskets, bundle_confidence=bundle_confidence, top=top, since=since,
                         until=until, page=page)


@router.get("/fans-vs-buyers", response_model=AnalysisOut)
async def fans(principal: Viewer, db: Database, page: Page,
               account: Annotated[list[str], Query(min_length=1, max_length=20, description="social accounts")],
               product_line: Annotated[str | None, Query(max_length=200)] = None,
               brand: Annotated[str | None, Query(max_length=200)] = None,
               subcategory: Annotated[str | None, Query(max_length=200)] = None, interactions: bool = False,
               by: Annotated[list[str] | None, Query(max_length=10)] = None) -> Response:
    """Followers of social accounts against buyers: shares, TGI, divergence and a verdict."""
    product = {k: v for k, v in (("product_line", product_line), ("brand", brand), ("subcategory", subcategory)) if v}
    return await db.json(fans_analysis, accounts=account, product=product,
                         by=by or ["age_band", "gender", "province", "member_level"], interactions=interactions,
                         page=page)


class AudiencesIn(BaseModel):
    a: dict[str, Any] = Field(description='{"followers": [...]}, {"rule": {...}}, {"segment": "id"} or {"sql": "SELECT person_id …"}')
    b: dict[str, Any] = Field(description="described against a")
    by: list[str] = Field(default_factory=lambda: ["age_band", "gender", "province", "member_level"], max_length=10)


@router.post("/compare-audiences", response_model=AnalysisOut, openapi_extra=COMPUTES)
async def audiences(body: AudiencesIn, principal: Analyst, db: Database, page: Page) -> Response:
    """Any two audiences' portraits side by side, with TGI and a verdict."""
    return await db.json(audiences_analysis, a=body.a, b=body.b, by=body.by, page=page)


class FunnelIn(BaseModel):
    steps: list[Any] = Field(min_length=2, max_length=10, description='event names, "order", or step objects')
    window: str = Field("7d", max_length=10, description="24h, 7d, 2w")
    order: Literal["strict", "any"] = "strict"
    by: str | None = Field(None, max_length=60, description="channel, platform, gender, age_band, audience, …")
    start: dt.date | None = None
    end: dt.date | None = None


@router.post("/funnel", response_model=AnalysisOut, openapi_extra=COMPUTES)
async def funnel_report(body: FunnelIn, principal: Viewer, db: Database, page: Page) -> Response:
    """Funnel: persons at each step within a conversion window, optionally broken down."""
    return await db.json(funnel_analysis, **body.model_dump(), page=page)


@router.get("/retention", response_model=AnalysisOut)
async def retention_report(principal: Viewer, db: Database, page: Page,
                           cohort: Literal["first_purchase", "first_visit", "registration"] = "first_purchase",
                           period: Literal["day", "week", "month"] = "week",
                           activity: Literal["any", "purchase", "visit"] = "any",
                           layout: Literal["triangle", "long"] = "triangle", unbounded: bool = False,
                           start: Day = None, end: Day = None) -> Response:
    """Retention cohorts: who comes back, period by period (triangle or long rows)."""
    return await db.json(retention_analysis, cohort=cohort, period=period, activity=activity, layout=layout,
                         unbounded=unbounded, start=start, end=end, page=page)


@router.get("/paths", response_model=AnalysisOut)
async def paths_report(principal: Viewer, db: Database, page: Page, event: Annotated[str, Query(max_length=200)],
                       direction: Literal["next", "previous"] = "next", depth: Annotated[int, Query(ge=1, le=10)] = 3,
                       top: Annotated[int, Query(ge=1, le=50)] = 8,
                       prop: Annotated[str | None, Query(alias="property", max_length=100)] = None,
                       start: Day = None, end: Day = None) -> Response:
    """Paths: the most common next or previous steps within sessions (Sankey edges)."""
    return await db.json(paths_analysis, event=event, direction=direction, depth=depth, top=top, prop=prop,
                         start=start, end=end, page=page)


@router.get("/seasonality", response_model=AnalysisOut)
async def seasonality_report(principal: Viewer, db: Database, page: Page,
                             by: Annotated[str, Query(max_length=60)] = "gender",
                             holiday: Annotated[list[Literal["womens_day", "618", "double_11", "spring_festival"]]
                                                | None, Query(max_length=4)] = None,
                             window_days: Annotated[int, Query(ge=1, le=30)] = 3, per_holiday: bool = False,
                             confidence: Annotated[float, Query(gt=0.5, lt=1)] = 0.95, start: Day = None,
                             end: Day = None) -> Response:
    """Holiday lift per group × category against all other order lines."""
    return await db.json(seasonality_analysis, by=by, holidays=holiday, window_days=window_days,
                         per_holiday=per_holiday, confidence=confidence, start=start, end=end, page=page)


class HypothesesIn(BaseModel):
    baseline: str = Field(max_length=60, description="2025-03-03..2025-04-13, 2025-03, 2025-W10, 春节2025±7")
    current: str = Field(max_length=60)
    kpi: str = Field("gmv", max_length=30, description="gmv, orders, search_index or custom")
    category: str | None = Field(None, max_length=100)
    kpi_sql: str | None = Field(None, max_length=20_000, description="for kpi=custom: SELECT day, value FROM …")
    hypotheses: list[dict[str, Any]] = Field(default_factory=list, max_length=20,
                                             description="your own: {name, sql, elasticity}")
    alpha: float = Field(0.05, gt=0, lt=0.5)
    min_share: float = Field(0.2, gt=0, le=1)
    price_elasticity: float = Field(-1.0, ge=-20, le=20)


@router.post("/hypotheses", response_model=AnalysisOut, openapi_extra=COMPUTES)
async def hypotheses(body: HypothesesIn, principal: Analyst, db: Database, page: Page) -> Response:
    """Rank the candidate causes of a KPI change (market, competitor launch, CTR, spend, stock-outs, price, yours)."""
    return await db.json(hypotheses_analysis, **body.model_dump(), page=page)


@router.get("/source-value", response_model=AnalysisOut)
async def source_value(principal: Viewer, db: Database, page: Page,
                       goal: Annotated[str | None, Query(max_length=2000, description="event name or rule JSON")] = None,
                       window: Annotated[int, Query(ge=1, le=365)] = 30, as_of: dt.datetime | None = None) -> Response:
    """Every data source ranked by how well it predicts the goal out of time (AUC)."""
    return await db.json(source_ranking, goal=goal, window=window, as_of=as_of, page=page)
