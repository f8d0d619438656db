"""What the console's audience builder offers: the rule language's vocabulary in this workspace.

The builder needs more than the rule language's definitions: which trait columns the stored
portrait has (and the operators each type takes), which score models, identifier types and
tags exist, and the values people actually have — event names, product categories, order
platforms and channels, consent purposes — so a marketer picks instead of typing. The lists
of values are read from the data (with their SQL, like every other answer).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from sqlglot import exp

from jingzhun.profiles import OPS_BY_KIND, list_tags, live_catalog
from jingzhun.segments import list_audiences
from jingzhun.web.api.deps import Database, Viewer
from jingzhun.web.calls import EngineContext

router = APIRouter(prefix="/console", tags=["console"])
# Operators in the order a person reads them (the rule language keeps them in sets).
OPERATOR_ORDER = ("=", "!=", ">", ">=", "<", "<=", "between", "in", "not_in", "contains", "within", "older_than",
                  "is_null", "is_not_null")
VALUE_LISTS = 200  # the most frequent values per list: enough to pick from, small to send


def _counted(table: str, *columns: str) -> exp.Select:
    """Distinct values of `columns` in `table` with how many rows have them, the most frequent first."""
    present = exp.and_(*(exp.column(c).is_(exp.null()).not_() for c in columns))
    return (exp.select(*columns, exp.func("COUNT", exp.Star()).as_("rows")).from_(table).where(present)
            .group_by(*columns).order_by(exp.Ordered(this=exp.column("rows"), desc=True), *columns)
            .limit(VALUE_LISTS))


VALUE_QUERIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "events": ("events", ("event",)),
    "categories": ("products", ("category",)),
    "subcategories": ("products", ("category", "subcategory")),
    "brands": ("products", ("brand",)),
    "platforms": ("orders", ("platform",)),
    "order_channels": ("orders", ("channel",)),
    "event_channels": ("events", ("channel",)),
    "consents": ("consents", ("purpose",)),
    "consent_channels": ("consents", ("channel",)),
}


def builder_catalog(ctx: EngineContext) -> dict[str, Any]:
    """Traits with their kind and operators, score models, identifier types, tags, audiences and
    the values found in the data, each list with the SQL that read it."""
    catalog = live_catalog(ctx.engine)
    traits = [{"name": name, "kind": kind, "ops": [op for op in OPERATOR_ORDER if op in OPS_BY_KIND[kind]]}
              for name, kind in sorted(catalog.traits.items())]
    tags = list_tags(ctx.workspace, ctx.engine)
    keep = [c for c in ("tag_id", "category", "name_zh", "name_en", "kind", "holders") if c in tags.columns]
    audiences = list_audiences(ctx.workspace, ctx.engine)
    values, sql = {}, {}
    for name, (table, columns) in VALUE_QUERIES.items():
        if not ctx.engine.table_exists(table):
            values[name] = []
            continue
        query = _counted(table, *columns)
        sql[name] = ctx.engine.render(query)
        values[name] = ctx.engine.query(query).to_pylist()
    return {"traits": traits, "score_models": list(catalog.score_models),
            "identifier_types": list(catalog.identifier_types), "tags": tags[keep].to_dict(orient="records"),
            "audiences": audiences[["segment_id", "name_zh", "name_en"]].to_dict(orient="records")
            if len(audiences) else [], "values": values, "sql": sql}


@router.get("/catalog")
async def read_catalog(principal: Viewer, db: Database) -> Response:
    """The audience builder's vocabulary: traits and their operators, scores, identifier types,
    tags, audiences, and the event names, categories, platforms, channels and consent purposes
    found in the data."""
    return await db.json(builder_catalog)
