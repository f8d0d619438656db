"""Recommendations: a person's 猜你喜欢 / 热门推荐 / 新品上市, and a product's related products."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from jingzhun.activation import recommend_for, related_products
from jingzhun.web.api.deps import Database, Viewer
from jingzhun.web.calls import EngineContext

router = APIRouter(prefix="/recommendations", tags=["recommendations"])
K = Annotated[int, Query(ge=1, le=100, description="at most this many (per kind)")]


def for_person(ctx: EngineContext, identifier: str, kind: str, k: int) -> dict[str, Any]:
    found = recommend_for(ctx.engine, identifier, k=k, kind=kind, workspace=ctx.workspace)
    return {"person_id": found.person_id, "kinds": found.kinds, "items": found.items, "sql": {"recommendations": found.sql}}


def related(ctx: EngineContext, product_id: str, k: int) -> dict[str, Any]:
    found = related_products(ctx.engine, product_id, k=k)
    return {"product_id": found.product_id, "name": found.name, "items": found.items, "sql": {"related": found.sql}}


@router.get("/persons/{identifier}")
async def person_recommendations(identifier: str, principal: Viewer, db: Database, k: K = 10,
                                 kind: Literal["guess_you_like", "popular", "new_arrival", "all"] = "all") -> Response:
    """A person's current lists (from any identifier), each item with its reason in zh and en."""
    return await db.json(for_person, identifier=identifier, kind=kind, k=k)


@router.get("/products/{product_id}/related")
async def product_related(product_id: str, principal: Viewer, db: Database, k: K = 10) -> Response:
    """The products to show beside one product, with why (bought or viewed together)."""
    return await db.json(related, product_id=product_id, k=k)
