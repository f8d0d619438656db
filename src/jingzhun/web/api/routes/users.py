"""Console users (admin only): list, add, change role or name, disable, reset a password."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from jingzhun.web import accounts
from jingzhun.web.api.deps import Admin, Database, records_own_audit
from jingzhun.web.calls import EngineContext

router = APIRouter(prefix="/users", tags=["users"])
ROLE_PATTERN = "^(admin|marketer|analyst|viewer)$"


class UserIn(BaseModel):
    username: str = Field(min_length=2, max_length=63, description="lower-case letters, digits, _ . -")
    role: str = Field(pattern=ROLE_PATTERN, description="admin, marketer, analyst or viewer")
    password: str = Field(min_length=1, max_length=1000)
    display_name: str | None = Field(None, max_length=200)


class UserPatch(BaseModel):
    role: str | None = Field(None, pattern=ROLE_PATTERN, description="admin, marketer, analyst or viewer")
    display_name: str | None = Field(None, max_length=200)
    disabled: bool | None = None


class PasswordReset(BaseModel):
    password: str = Field(min_length=1, max_length=1000)


class UserOut(BaseModel):
    user_id: str
    username: str
    display_name: str | None = None
    role: str
    created_at: str | None = None
    disabled_at: str | None = None
    last_login_at: str | None = None


def user_list(ctx: EngineContext) -> list[dict[str, Any]]:
    return accounts.list_users(ctx.engine).to_pylist()


@records_own_audit
def user_create(ctx: EngineContext, username: str, role: str, password: str, display_name: str | None) -> dict:
    return accounts.create_user(ctx.engine, username, role, password, display_name, ctx.actor)


@records_own_audit
def user_update(ctx: EngineContext, username: str, role: str | None, display_name: str | None,
                disabled: bool | None) -> dict:
    return accounts.update_user(ctx.engine, username, role=role, display_name=display_name, disabled=disabled,
                                actor=ctx.actor)


@records_own_audit
def user_password(ctx: EngineContext, username: str, password: str) -> dict[str, bool]:
    accounts.set_password(ctx.engine, username, password, ctx.actor)
    return {"changed": True}


@router.get("", response_model=list[UserOut])
async def list_users(principal: Admin, db: Database) -> Response:
    """Every user and role (never a password hash)."""
    return await db.json(user_list)


@router.post("", status_code=201, response_model=UserOut)
async def create_user(body: UserIn, principal: Admin, db: Database) -> Response:
    """Add a user with a role; the password is stored as an Argon2id hash."""
    return await db.json(user_create, status_code=201, **body.model_dump())


@router.patch("/{username}", response_model=UserOut)
async def update_user(username: str, body: UserPatch, request: Request, principal: Admin, db: Database) -> Response:
    """Change a user's role or name, or disable / enable them (their sessions end)."""
    answer = await db.json(user_update, username=username, **body.model_dump())
    request.app.state.auth_cache.clear()
    return answer


@router.put("/{username}/password")
async def reset_password(username: str, body: PasswordReset, request: Request, principal: Admin,
                         db: Database) -> Response:
    """Set a user's password (their sessions end)."""
    answer = await db.json(user_password, username=username, password=body.password)
    request.app.state.auth_cache.clear()
    return answer
