"""Sales leads (销售线索): the scored list, one lead and why it scored so, the reps' outcomes,
scoring runs (a background job) and assignment rounds, and the sales team of sales.yaml.

What `jingzhun lead score|assign|list|outcome` does, for sales teams and marketers who never
open a terminal: the same activation functions run in the engine process (the server holds
the database, so the CLI's lead commands would wait for it). Contact names and phones of
prospects are masked for viewer and analyst like every other personal identifier.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import AfterValidator, BaseModel, Field
from sqlglot import exp

from jingzhun.activation import (
    LeadError,
    assign_leads,
    leads_sql,
    load_sales_settings,
    record_lead_outcome,
    require_rep,
    score_leads,
)
from jingzhun.engine import parse_sql
from jingzhun.schema.tables import LEAD_ASSIGNMENTS, LEAD_OUTCOMES, LEADS, MODEL_RUNS
from jingzhun.web.api.deps import Database, Marketer, Page, PageParams, Viewer
from jingzhun.web.api.results import paged_query
from jingzhun.web.calls import AuditEntry, EngineContext
from jingzhun.web.errors import not_found

router = APIRouter(prefix="/leads", tags=["leads"])
LeadStatus = Literal["open", "won", "lost", "all"]
RepId = Annotated[str | None, Query(min_length=1, max_length=64, description="only the leads this rep holds now")]
Assigned = Annotated[bool | None, Query(description="held by a rep now (true) or not (false)")]
EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
SHOWN_ASSIGNMENTS = 1000  # an assignment round's rows returned (the count is always whole)
# The lead file's own columns shown beside the score: what the intent and fit parts were made from.
LEAD_DETAIL_SQL = """
SELECT l.*, s.identifiers->>'$.phone' AS phone, s.attributes->>'$.pages_viewed' AS pages_viewed,
  s.attributes->>'$.price_checks' AS price_checks, s.attributes->>'$.sample_requested' AS sample_requested,
  s.attributes->>'$.owner' AS crm_owner
FROM leads AS l LEFT JOIN source_records AS s ON s.record_id = l.record_id
WHERE l.lead_id = :lead_id
"""
WORKLOAD_SQL = """
SELECT rep_id, SUM(CASE WHEN closed_at IS NULL THEN 1 ELSE 0 END) AS holding, COUNT(*) AS assigned,
  SUM(CASE WHEN close_reason = 'won' THEN 1 ELSE 0 END) AS won,
  SUM(CASE WHEN close_reason = 'lost' THEN 1 ELSE 0 END) AS lost,
  SUM(CASE WHEN close_reason = 'no_answer' THEN 1 ELSE 0 END) AS no_answer, MAX(assigned_at) AS last_assigned_at
FROM lead_assignments GROUP BY rep_id ORDER BY rep_id
"""


def _instant(value: datetime | None) -> datetime | None:
    """An instant with its offset (none given: UTC), within the years scoring can replay."""
    if value is None:
        return None
    moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    if not EARLIEST <= moment < LATEST:
        raise ValueError("give an instant between 2000 and 2099 (ISO 8601, e.g. 2026-09-01T09:00:00+08:00)")
    return moment


Instant = Annotated[datetime | None, AfterValidator(_instant)]


class ScoreIn(BaseModel):
    """When to score as of (replaying a past day gives the leads that were open then)."""

    as_of: Instant = Field(None, description="ISO 8601; default the latest data")


class AssignIn(BaseModel):
    """When the round happens: its local day (or week) is the quota period."""

    at: Instant = Field(None, description="ISO 8601; default now")


class OutcomeIn(BaseModel):
    """What the rep holding the lead got."""

    outcome: Literal["won", "lost", "no_answer"]
    rep_id: str | None = Field(None, min_length=1, max_length=64,
                               description="the rep recording it, checked against who holds the lead")
    note: str | None = Field(None, max_length=2000)
    at: Instant = Field(None, description="when it happened (ISO 8601); default now")


def _rep_field(refused: LeadError) -> LeadError:
    """The stage names the rep `rep` (the CLI's --rep); the API's parameter is `rep_id`."""
    if refused.field == "rep":
        refused.field = "rep_id"
    return refused


def _scored_yet(ctx: EngineContext) -> bool:
    return ctx.engine.table_exists(LEADS.name)


def require_lead(ctx: EngineContext, lead_id: str) -> None:
    found = 0
    if _scored_yet(ctx):
        counted = exp.select(exp.func("COUNT", exp.Star()).as_("n")).from_(LEADS.name) \
            .where(exp.column("lead_id").eq(exp.convert(lead_id)))
        found = ctx.engine.query(counted).column("n")[0].as_py()
    if not found:
        raise not_found("lead", lead_id, "/api/v1/leads", "线索")


def lead_list(ctx: EngineContext, page: PageParams, status: str, rep_id: str | None,
              assigned: bool | None) -> dict[str, Any]:
    """Leads best first, each with its score, the parts it is made of and who holds it, cut by the engine."""
    if rep_id is not None:
        try:
            require_rep(load_sales_settings(ctx.workspace), rep_id)
        except LeadError as refused:
            raise _rep_field(refused) from None
    if not _scored_yet(ctx):
        return {"columns": [], "items": [], "total": 0, "limit": page.limit, "offset": page.offset, "sql": {}}
    query = leads_sql(None if status == "all" else status, rep_id, assigned)
    query.set("limit", None)  # the page's LIMIT/OFFSET replace the CLI's
    return paged_query(ctx.engine, query, page, "leads")


def _select(ctx: EngineContext, query: exp.Expression, name: str, sql: dict[str, str]) -> list[dict[str, Any]]:
    sql[name] = ctx.engine.render(query)
    return ctx.engine.query(query).to_pylist()


def lead_read(ctx: EngineContext, lead_id: str) -> dict[str, Any]:
    """The lead as last scored with the lead file's inputs, its assignments, its outcomes and the
    model that scored it (log-odds per standard deviation of each feature)."""
    require_lead(ctx, lead_id)
    key = exp.convert(lead_id)
    sql: dict[str, str] = {}
    lead = _select(ctx, exp.replace_placeholders(parse_sql(LEAD_DETAIL_SQL), lead_id=key), "lead", sql)[0]
    assignments = _select(ctx, exp.select("*").from_(LEAD_ASSIGNMENTS.name)
                          .where(exp.column("lead_id").eq(key)).order_by("attempt"), "assignments", sql)
    outcomes = _select(ctx, exp.select("*").from_(LEAD_OUTCOMES.name).where(exp.column("lead_id").eq(key))
                       .order_by("recorded_at"), "outcomes", sql)
    held = [row["rep_id"] for row in assignments if row["closed_at"] is None]
    return {"lead": lead, "held_by": held[0] if held else None, "assignments": assignments, "outcomes": outcomes,
            "model": _model(ctx, lead.get("model_version"), sql), "sql": sql}


def _model(ctx: EngineContext, version: str | None, sql: dict[str, str]) -> dict[str, Any] | None:
    """The scoring model's coefficients and time-split test (None: too few decided leads, ranked by freshness)."""
    if not version or not ctx.engine.table_exists(MODEL_RUNS.name):
        return None
    this = exp.and_(exp.column("model").eq(exp.convert("lead_score")),
                    exp.column("model_version").eq(exp.convert(version)))
    query = exp.select("model_version", "trained_at", "metrics", "rows_trained").from_(MODEL_RUNS.name).where(this)
    rows = _select(ctx, query, "model", sql)
    if not rows:
        return None
    metrics = orjson.loads(rows[0].pop("metrics") or "{}")
    return {**rows[0], "intercept": metrics.get("intercept"), "coefficients": metrics.get("coefficients", {}),
            "test": metrics.get("test")}


def lead_outcome(ctx: EngineContext, lead_id: str, outcome: str, rep_id: str | None, note: str | None,
                 at: datetime | None) -> dict[str, Any]:
    """Close the lead's assignment with the rep's outcome (a rep sales.yaml does not list is refused)."""
    require_lead(ctx, lead_id)
    try:
        return record_lead_outcome(ctx.engine, lead_id, outcome, rep_id=rep_id, note=note, recorded_by=ctx.actor,
                                   now=at, settings=load_sales_settings(ctx.workspace))
    except LeadError as refused:
        raise _rep_field(refused) from None


def score_job(ctx: EngineContext, as_of: datetime | None) -> dict[str, Any]:
    """Score every lead in the background: the model is refitted on the outcomes known by `as_of`."""
    workspace = ctx.workspace

    def work(engine, progress):  # noqa: ANN001, ANN202 — a job: (engine, progress) → result
        progress(None, "scoring leads")
        scored = score_leads(workspace, engine, as_of=as_of)
        return {"as_of": scored.as_of, "model_version": scored.model_version, "statuses": scored.statuses,
                "test": scored.test.as_json() if scored.test else None, "coefficients": scored.coefficients(),
                "sql": scored.sql}

    return ctx.jobs.start("lead_score", work, {"as_of": as_of}, ctx.actor, lock="lead_score").as_dict()


def assign_round(ctx: EngineContext, at: datetime | None) -> dict[str, Any]:
    """Hand each rep their quota of the best open leads of their territories (never one lead to two)."""
    handed = assign_leads(ctx.workspace, ctx.engine, now=at, assigned_by=ctx.actor)
    return {"assigned_at": handed.assigned_at, "per_rep": handed.per_rep, "rounds": handed.rounds,
            "assigned": len(handed.assignments), "assignments": handed.assignments.head(SHOWN_ASSIGNMENTS),
            "sql": {"round": handed.sql}}


def sales_team(ctx: EngineContext) -> dict[str, Any]:
    """sales.yaml as it stands (territories, reps with quotas, scoring) and each rep's leads so far."""
    settings = load_sales_settings(ctx.workspace)
    workload: list[dict[str, Any]] = []
    sql: dict[str, str] = {}
    if ctx.engine.table_exists(LEAD_ASSIGNMENTS.name):
        workload = _select(ctx, parse_sql(WORKLOAD_SQL), "workload", sql)
    return {**settings.model_dump(mode="json"), "workload": workload, "sql": sql}


@router.get("")
async def list_all(principal: Viewer, db: Database, page: Page, status: LeadStatus = "open", rep_id: RepId = None,
                   assigned: Assigned = None) -> Response:
    """Leads best first: score, its freshness / intent / fit parts, intent tags, territory, who holds it."""
    return await db.json(lead_list, page=page, status=status, rep_id=rep_id, assigned=assigned)


@router.get("/settings")
async def settings(principal: Viewer, db: Database) -> Response:
    """The sales team (definitions/sales.yaml, read-only here): territories, reps and quotas, scoring;
    and per rep the leads held now, assigned, won, lost and unanswered."""
    return await db.json(sales_team)


@router.post("/score", status_code=202)
async def score(body: ScoreIn, principal: Marketer, db: Database) -> Response:
    """Score every lead (freshness, intent, fit; a model fitted on past outcomes) as a background job."""
    return await db.change(score_job, AuditEntry("lead.score", "leads", None, {"as_of": body.as_of}),
                           status_code=202, as_of=body.as_of)


@router.post("/assign")
async def assign(body: AssignIn, principal: Marketer, db: Database) -> Response:
    """Run an assignment round: each rep gets up to their quota of open leads of their territories."""
    return await db.change(assign_round, AuditEntry("lead.assign", "leads", None, {"at": body.at}), at=body.at)


@router.get("/{lead_id}")
async def read(lead_id: str, principal: Viewer, db: Database) -> Response:
    """One lead: score and why (parts, intent tags, the lead file's inputs, the model), assignments, outcomes."""
    return await db.json(lead_read, lead_id=lead_id)


@router.post("/{lead_id}/outcome", status_code=201)
async def outcome(lead_id: str, body: OutcomeIn, principal: Marketer, db: Database) -> Response:
    """Record what the rep holding the lead got (won, lost, no_answer); the next scoring learns from it."""
    return await db.change(lead_outcome, AuditEntry("lead.outcome", "lead", lead_id,
                                                    {"outcome": body.outcome, "rep_id": body.rep_id}),
                           status_code=201, lead_id=lead_id, **body.model_dump())
