"""Read-only SQL over the workspace's tables: rerun any query an answer carries.

For roles that see personal identifiers (marketer, admin) only: a query can take a phone
apart (`substr(id_value, 4, 4)`), which no masking of answers could catch. Files and table
functions are refused for everyone (user_sql.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlglot import exp

from jingzhun.engine.dialects import parse_read_only
from jingzhun.web.api.deps import COMPUTES, Database, Marketer
from jingzhun.web.api.user_sql import check_user_sql
from jingzhun.web.calls import EngineContext
from jingzhun.web.serialize import jsonable

router = APIRouter(prefix="/sql", tags=["sql"])


class QueryIn(BaseModel):
    query: str = Field(min_length=1, max_length=100_000, description="SELECT, WITH … SELECT (DuckDB's dialect)")
    limit: int = Field(1000, ge=1, le=100_000, description="rows to return at most")


def run_query(ctx: EngineContext, query: str, limit: int) -> dict[str, Any]:
    check_user_sql(ctx.engine, query, "query")
    statement = parse_read_only(query)
    cut = exp.select("*").from_(statement.subquery("q")).limit(limit + 1) if isinstance(statement, exp.Query) \
        else statement
    rows = ctx.engine.query(cut)
    return {"columns": rows.column_names, "items": jsonable(rows.slice(0, limit)),
            "truncated": rows.num_rows > limit, "sql": {"query": ctx.engine.render(statement)}}


@router.post("", openapi_extra=COMPUTES)
async def run(body: QueryIn, principal: Marketer, db: Database) -> Response:
    """Run a read-only query over the workspace's tables (the SQL any answer carries runs here as it stands)."""
    return await db.json(run_query, query=body.query, limit=body.limit)
