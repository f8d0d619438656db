"""API keys for machines (admin only): create (the secret is shown once), list, revoke."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from jingzhun.web import accounts
from jingzhun.web.api.deps import Admin, Database, records_own_audit
from jingzhun.web.calls import EngineContext

router = APIRouter(prefix="/api-keys", tags=["api-keys"])


class ApiKeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="the machine or job that uses it")
    role: str = Field(pattern="^(admin|marketer|analyst|viewer)$", description="what the key may do")


class ApiKeyOut(BaseModel):
    key_id: str
    name: str
    key_prefix: str | None = None
    role: str
    created_at: str | None = None
    created_by: str | None = None
    last_used_at: str | None = None
    revoked_at: str | None = None
    secret: str | None = Field(None, description="only in the answer to its creation; stored hashed")


def key_list(ctx: EngineContext) -> list[dict[str, Any]]:
    return accounts.list_api_keys(ctx.engine).to_pylist()


@records_own_audit
def key_create(ctx: EngineContext, name: str, role: str) -> dict[str, Any]:
    row, secret = accounts.create_api_key(ctx.engine, name, role, ctx.actor)
    return {**row, "secret": secret}


@records_own_audit
def key_revoke(ctx: EngineContext, key_id: str) -> None:
    accounts.revoke_api_key(ctx.engine, key_id, ctx.actor)


@router.get("", response_model=list[ApiKeyOut])
async def list_keys(principal: Admin, db: Database) -> Response:
    """Every API key with its role, creator and last use (never the secret)."""
    return await db.json(key_list)


@router.post("", status_code=201, response_model=ApiKeyOut)
async def create_key(body: ApiKeyIn, principal: Admin, db: Database) -> Response:
    """A new key acting with `role`; `secret` is in this answer only — store it now."""
    return await db.json(key_create, status_code=201, name=body.name, role=body.role)


@router.delete("/{key_id}", status_code=204, response_class=Response)
async def revoke_key(key_id: str, request: Request, principal: Admin, db: Database) -> Response:
    """Revoke a key: it stops working at once."""
    await db.value(key_revoke, key_id=key_id)
    request.app.state.auth_cache.clear()
    return Response(status_code=204)
