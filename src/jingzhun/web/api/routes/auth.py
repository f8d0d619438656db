"""Log in and out, who am I, change my password."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from jingzhun.web import accounts
from jingzhun.web.api.deps import PERMISSIONS, AuthCache, Database, Viewer, records_own_audit
from jingzhun.web.calls import CallContext, EngineContext
from jingzhun.web.client import EngineClient
from jingzhun.web.errors import ApiError, api_error
from jingzhun.web.masking import sees_pii
from jingzhun.web.security import SESSION_COOKIE, CookieSigner, LoginLimiter
from jingzhun.web.settings import WebSettings

router = APIRouter(prefix="/auth", tags=["auth"])


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000)


class PasswordIn(BaseModel):
    current_password: str = Field(min_length=1, max_length=1000)
    new_password: str = Field(min_length=1, max_length=1000)


class MeOut(BaseModel):
    kind: str
    name: str
    role: str
    sees_pii: bool
    permissions: list[str]
    csrf_token: str | None = None


def log_in(ctx: EngineContext, username: str, password: str, hours: int, user_agent: str | None) -> dict | None:
    """Check the password; open a session (the token goes in the cookie) or note the failure."""
    user = accounts.authenticate(ctx.engine, username, password)
    if user is None:
        accounts.record_audit(ctx.engine, f"login:{username[:64]}", "auth.login_failed", "user", username[:64],
                              {"ip": ctx.call.client})
        return None
    token, principal = accounts.open_session(ctx.engine, user, hours, ctx.call.client, user_agent)
    return {"token": token, "principal": dataclasses.asdict(principal)}


def me(principal: accounts.Principal) -> dict[str, Any]:
    return {"kind": principal.kind, "name": principal.name, "role": principal.role,
            "sees_pii": sees_pii(principal.role),
            "permissions": [name for name, roles in PERMISSIONS.items() if principal.role in roles],
            "csrf_token": principal.csrf_token}


async def start_session(request: Request, response: Response, username: str, password: str) -> dict[str, Any]:
    """Check a log-in (rate-limited per user and address) and set the session cookie."""
    settings: WebSettings = request.app.state.settings
    limiter: LoginLimiter = request.app.state.login_limiter
    address = request.client.host if request.client else "?"
    wait = limiter.retry_after(username, address)
    if wait:
        raise api_error(429, "too_many_attempts", f"too many failed log-ins; try again in {wait} s.",
                        f"登录失败次数过多，请 {wait} 秒后再试。", field="username", headers={"Retry-After": str(wait)})
    client: EngineClient = request.app.state.engine
    kind, payload = await client.call(log_in, {"username": username, "password": password,
                                               "hours": settings.session_hours,
                                               "user_agent": request.headers.get("user-agent")},
                                      CallContext(None, False, client=address))
    if kind == "error":
        raise ApiError(payload)
    found = orjson.loads(payload)
    if found is None:
        limiter.failed(username, address)
        raise api_error(401, "invalid_credentials", "the user name or password is wrong, or the user is disabled.",
                        "用户名或密码错误，或该用户已停用。", field="password")
    limiter.succeeded(username, address)
    set_session_cookie(request, response, found["token"])
    return me(accounts.Principal(**found["principal"]))


def cookie_secure(request: Request) -> bool:
    setting = request.app.state.settings.cookie_secure
    return setting == "always" or (setting == "auto" and request.url.scheme == "https")


def set_session_cookie(request: Request, response: Response, token: str) -> None:
    signer: CookieSigner = request.app.state.signer
    settings: WebSettings = request.app.state.settings
    response.set_cookie(SESSION_COOKIE, signer.session_cookie(token), max_age=settings.session_hours * 3600,
                        httponly=True, samesite="lax", secure=cookie_secure(request), path="/")


@records_own_audit
def end_session(ctx: EngineContext) -> None:
    if ctx.principal is not None:
        accounts.close_session(ctx.engine, ctx.principal)


@records_own_audit
def change_password(ctx: EngineContext, current_password: str, new_password: str) -> dict[str, bool]:
    principal = ctx.principal
    if principal is None or principal.kind != "user" or accounts.authenticate(
            ctx.engine, principal.name, current_password) is None:
        raise accounts.AccountError("the current password is wrong.", field="current_password",
                                    fix="type the password you log in with", message_zh="当前密码不正确。",
                                    fix_zh="请输入您登录时使用的密码")
    accounts.set_password(ctx.engine, principal.name, new_password, principal.actor)
    return {"changed": True}


@router.post("/login", response_model=MeOut)
async def login(body: LoginIn, request: Request, response: Response) -> dict[str, Any]:
    """Log in with a user name and password: sets the session cookie, returns the CSRF token."""
    return await start_session(request, response, body.username, body.password)


@router.post("/logout", status_code=204, response_class=Response)
async def logout(request: Request, principal: Viewer, db: Database) -> Response:
    """End this session (an API key has none to end)."""
    await db.value(end_session)
    cache: AuthCache = request.app.state.auth_cache
    cache.clear()
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/me", response_model=MeOut)
async def read_me(principal: Viewer) -> dict[str, Any]:
    """Who is calling, their role and permissions, and (for a session) the CSRF token to send on changes."""
    return me(principal)


@router.post("/password")
async def set_my_password(body: PasswordIn, request: Request, principal: Viewer, db: Database) -> Response:
    """Change your own password; every session of yours ends (log in again)."""
    if principal.kind != "user":
        raise api_error(400, "not_a_user", "an API key has no password.", "API 密钥没有密码。")
    result = await db.json(change_password, current_password=body.current_password,
                           new_password=body.new_password)
    request.app.state.auth_cache.clear()
    result.delete_cookie(SESSION_COOKIE, path="/")
    return result
