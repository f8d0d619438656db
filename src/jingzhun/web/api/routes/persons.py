"""Persons: find anyone by any identifier, and their 360 view."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlglot import exp

from jingzhun.activation import RecommendError, recommend_for
from jingzhun.profiles import find_person, person_portrait
from jingzhun.web.api.deps import Database, Page, PageParams, Viewer
from jingzhun.web.api.results import table_page
from jingzhun.web.calls import EngineContext

router = APIRouter(prefix="/persons", tags=["persons"])
Identifier = Annotated[str, "person id, phone, e-mail, member id, or TYPE:VALUE"]


def campaigns_received_sql(person_id: str) -> exp.Select:
    """The person's deliveries, newest first, with the campaign's name and whether they opened or clicked.

    (Activation has no public function for one person's deliveries yet; this reads its tables.)
    """
    events = (exp.select("delivery_id",
                         exp.func("MAX", exp.case().when(exp.column("event_type").eq(exp.convert("opened")),
                                                         exp.convert(1)).else_(exp.convert(0))).as_("opened"),
                         exp.func("MAX", exp.case().when(exp.column("event_type").eq(exp.convert("clicked")),
                                                         exp.convert(1)).else_(exp.convert(0))).as_("clicked"))
              .from_("message_events").where(exp.column("person_id").eq(exp.convert(person_id)))
              .group_by("delivery_id"))
    names = exp.select("campaign_id", exp.func("MAX", exp.column("name")).as_("campaign_name")) \
        .from_("campaigns").group_by("campaign_id")
    return (exp.select("d.campaign_id", "n.campaign_name", "d.channel", "d.variant", "d.status", "d.reason",
                       "d.scheduled_at", "d.sent_at", exp.func("COALESCE", exp.column("opened", "e"), 0).as_("opened"),
                       exp.func("COALESCE", exp.column("clicked", "e"), 0).as_("clicked"), "d.delivery_id")
            .from_("deliveries AS d")
            .join(names.subquery("n"), on="n.campaign_id = d.campaign_id", join_type="left")
            .join(events.subquery("e"), on="e.delivery_id = d.delivery_id", join_type="left")
            .where(exp.column("person_id", "d").eq(exp.convert(person_id)))
            .order_by(exp.Ordered(this=exp.func("COALESCE", exp.column("sent_at", "d"),
                                                exp.column("scheduled_at", "d")), desc=True), "d.delivery_id"))


def person_lookup(ctx: EngineContext, identifier: str) -> dict[str, str]:
    return {"person_id": find_person(ctx.engine, identifier, ctx.workspace)}


def person_view(ctx: EngineContext, identifier: str, timeline: int, recommendations: int) -> dict[str, Any]:
    """Identities, traits, tags, scores, recommendations, timeline and campaigns received, each with its SQL."""
    person_id = find_person(ctx.engine, identifier, ctx.workspace)
    portrait = person_portrait(ctx.engine, person_id, timeline)
    sql = dict(portrait.queries)
    received = campaigns_received_sql(person_id).limit(100)
    sql["campaigns"] = ctx.engine.render(received)
    try:
        recs = recommend_for(ctx.engine, person_id, k=recommendations, kind="all", workspace=ctx.workspace)
        listed, sql["recommendations"] = recs.items, recs.sql
    except RecommendError:  # the pipeline has not computed any yet
        listed = []
    return {"person_id": person_id, "identities": portrait.identities, "traits": portrait.traits,
            "tags": portrait.tags, "scores": portrait.scores, "timeline": portrait.timeline,
            "recommendations": listed, "campaigns": ctx.engine.query(received), "sql": sql}


def person_timeline(ctx: EngineContext, identifier: str, page: PageParams) -> dict[str, Any]:
    person_id = find_person(ctx.engine, identifier, ctx.workspace)
    portrait = person_portrait(ctx.engine, person_id, page.offset + page.limit)
    result = table_page(portrait.timeline, page, {"timeline": portrait.queries["timeline"]})
    result["total"] = max(result["total"], page.offset + len(result["items"]))  # the query stops at the page
    return result


def person_campaigns(ctx: EngineContext, identifier: str, page: PageParams) -> dict[str, Any]:
    person_id = find_person(ctx.engine, identifier, ctx.workspace)
    query = campaigns_received_sql(person_id)
    return table_page(ctx.engine.query(query), page, {"campaigns": ctx.engine.render(query)})


@router.get("/lookup")
async def lookup_person(principal: Viewer, db: Database,
                        identifier: Annotated[str, Query(min_length=1, max_length=300, description=str(Identifier))]
                        ) -> Response:
    """The person behind any identifier (404 when nobody holds it)."""
    return await db.json(person_lookup, identifier=identifier)


@router.get("/{identifier}")
async def read_person(identifier: str, principal: Viewer, db: Database,
                      timeline: Annotated[int, Query(ge=1, le=500, description="timeline entries")] = 50,
                      recommendations: Annotated[int, Query(ge=1, le=50, description="per kind")] = 5) -> Response:
    """A person's 360 view from any identifier: identities, traits, tags, scores, recommendations,
    timeline and campaigns received, with the SQL behind each part."""
    return await db.json(person_view, identifier=identifier, timeline=timeline, recommendations=recommendations)


@router.get("/{identifier}/timeline")
async def read_timeline(identifier: str, principal: Viewer, db: Database, page: Page) -> Response:
    """A page of the person's timeline (events, orders, CRM and social records), newest first."""
    return await db.json(person_timeline, identifier=identifier, page=page)


@router.get("/{identifier}/campaigns")
async def read_campaigns_received(identifier: str, principal: Viewer, db: Database, page: Page) -> Response:
    """The messages the person was sent or left out of, newest first, with opens and clicks."""
    return await db.json(person_campaigns, identifier=identifier, page=page)
