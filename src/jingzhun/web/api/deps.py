"""The API's dependencies: who is calling, what their role may do, and the database.

Route handlers declare what they need as `Annotated` types — `Viewer`, `Analyst`,
`Marketer`, `Admin` (the caller, checked to hold that permission), `Database` (calls
into the engine process on the caller's behalf), `Page` (limit/offset) — and stay
thin: a handler names the function the engine process runs and its parameters.

Credentials: a session cookie (console) or `Authorization: Bearer jzk_…` (API keys).
A request authenticated by cookie that changes something must carry the session's
CSRF token in `X-CSRF-Token` (a cross-site page can make the browser send the cookie,
not read the token). A collector write key is neither, so it opens nothing here.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import Depends, Query, Request
from fastapi.responses import Response

from jingzhun.web import accounts
from jingzhun.web.accounts import Principal
from jingzhun.web.calls import AuditEntry, CallContext, EngineContext
from jingzhun.web.client import EngineClient
from jingzhun.web.errors import ApiError, api_error, language_of
from jingzhun.web.masking import sees_pii
from jingzhun.web.security import (
    API_KEY_PREFIX,
    CSRF_HEADER,
    SESSION_COOKIE,
    CookieSigner,
    same,
    token_hash,
)
from jingzhun.web.serialize import ErrorInfo, FileResult
from jingzhun.web.settings import WebSettings

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Which roles hold each permission (docs/api.md, "Roles").
PERMISSIONS: dict[str, frozenset[str]] = {
    "view": frozenset({"viewer", "analyst", "marketer", "admin"}),
    "analyze": frozenset({"analyst", "marketer", "admin"}),
    "market": frozenset({"marketer", "admin"}),
    "admin": frozenset({"admin"}),
}
# A POST that computes an answer and changes nothing (an audience preview, a funnel with a
# JSON body): no audit row. Every other unsafe request must name the change it audits.
COMPUTES: dict[str, Any] = {"x-jingzhun-computes": True}
AUTH_CACHE_SECONDS = 30.0


def records_own_audit(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark an engine-process function that writes its own `audit_log` row (the accounts do)."""
    fn.records_own_audit = True  # type: ignore[attr-defined]
    return fn


class AuthCache:
    """Recently checked credentials (token hash → principal), for `AUTH_CACHE_SECONDS`.

    Changes to users and keys made through the API clear it; the CLI cannot change them
    while the server holds the database, so it never serves a revoked credential longer.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[bool, Principal | None]:
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, key: str, principal: Principal | None) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[key] = (time.monotonic() + AUTH_CACHE_SECONDS, principal)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _session_reply(ctx: EngineContext, token: str) -> dict | None:
    found = accounts.session_principal(ctx.engine, token)
    return dataclasses.asdict(found) if found else None


def _key_reply(ctx: EngineContext, token: str) -> dict | None:
    found = accounts.api_key_principal(ctx.engine, token)
    return dataclasses.asdict(found) if found else None


async def _lookup(request: Request, fn: Callable[..., dict | None], token: str) -> Principal | None:
    """Ask the engine process who holds `token` (cached for a short while)."""
    cache: AuthCache = request.app.state.auth_cache
    key = f"{fn.__name__}:{token_hash(token)}"
    hit, principal = cache.get(key)
    if hit:
        return principal
    client: EngineClient = request.app.state.engine
    kind, payload = await client.call(fn, {"token": token}, CallContext(None, False))
    if kind == "error":
        raise ApiError(payload)
    data = orjson.loads(payload)
    found = Principal(**data) if data else None
    cache.put(key, found)
    return found


async def authenticate(request: Request) -> Principal | None:
    """The caller, from `Authorization: Bearer` (an API key) or the session cookie; None if neither."""
    if hasattr(request.state, "principal"):
        return request.state.principal
    principal = None
    authorization = request.headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        secret = authorization[7:].strip()
        principal = await _lookup(request, _key_reply, secret) if secret.startswith(API_KEY_PREFIX) else None
    else:
        signer: CookieSigner = request.app.state.signer
        token = signer.session_token(request.cookies.get(SESSION_COOKIE))
        principal = await _lookup(request, _session_reply, token) if token else None
    request.state.principal = principal
    return principal


def _not_authenticated() -> ApiError:
    return api_error(401, "not_authenticated", "log in, or send an API key as `Authorization: Bearer jzk_…`.",
                     "请先登录，或以 `Authorization: Bearer jzk_…` 提供 API 密钥。",
                     fix_en="POST /api/v1/auth/login, or ask an admin for an API key",
                     fix_zh="调用 POST /api/v1/auth/login 登录，或向管理员申请 API 密钥",
                     headers={"WWW-Authenticate": 'Bearer realm="jingzhun"'})


def require(permission: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the caller, if their role holds `permission` (and a cookie change carries its CSRF token)."""
    allowed = PERMISSIONS[permission]

    async def check(request: Request) -> Principal:
        principal = await authenticate(request)
        if principal is None:
            raise _not_authenticated()
        if principal.role not in allowed:
            raise api_error(403, "forbidden", f"the role {principal.role} may not do this (it needs {permission}).",
                            f"角色 {principal.role} 无权执行此操作（需要 {permission} 权限）。",
                            fix_en="ask an admin for a role that may", fix_zh="请向管理员申请有此权限的角色")
        if principal.kind == "user" and request.method not in SAFE_METHODS and \
                not same(request.headers.get(CSRF_HEADER), principal.csrf_token):
            raise api_error(403, "csrf_failed", f"the {CSRF_HEADER} header is missing or wrong.",
                            f"缺少或错误的 {CSRF_HEADER} 请求头。", field=CSRF_HEADER,
                            fix_en="send the csrf_token of GET /api/v1/auth/me in X-CSRF-Token",
                            fix_zh="请在 X-CSRF-Token 中携带 GET /api/v1/auth/me 返回的 csrf_token")
        return principal

    check.__name__ = f"require_{permission}"
    return check


Viewer = Annotated[Principal, Depends(require("view"))]
Analyst = Annotated[Principal, Depends(require("analyze"))]
Marketer = Annotated[Principal, Depends(require("market"))]
Admin = Annotated[Principal, Depends(require("admin"))]


@dataclass(frozen=True)
class PageParams:
    """`limit` rows from `offset`; list answers also say the `total`."""

    limit: int
    offset: int


def page_params(limit: Annotated[int, Query(ge=1, le=1000, description="Rows to return.")] = 50,
                offset: Annotated[int, Query(ge=0, le=10**9, description="Rows to skip.")] = 0) -> PageParams:
    return PageParams(limit, offset)


Page = Annotated[PageParams, Depends(page_params)]


def paged(items: list[Any], total: int, page: PageParams) -> dict[str, Any]:
    """The list answer: `{"items", "total", "limit", "offset"}`."""
    return {"items": items, "total": total, "limit": page.limit, "offset": page.offset}


class Db:
    """Calls into the engine process as the authenticated caller (a route's `Database`)."""

    def __init__(self, request: Request) -> None:
        self.request = request

    def _context(self, fn: Callable[..., Any], audit: AuditEntry | None) -> CallContext:
        principal = getattr(self.request.state, "principal", None)
        if principal is None:  # a route without an auth dependency must not reach the data
            raise _not_authenticated()
        route = self.request.scope.get("route")
        computes = bool((getattr(route, "openapi_extra", None) or {}).get("x-jingzhun-computes"))
        own = getattr(fn, "records_own_audit", False)
        if self.request.method not in SAFE_METHODS and audit is None and not computes and not own:
            raise RuntimeError(f"{self.request.method} {self.request.url.path} changes data without an audit entry")
        client = self.request.client.host if self.request.client else None
        return CallContext(principal, not sees_pii(principal.role), language_of(self.request), audit, client)

    async def reply(self, fn: Callable[..., Any], audit: AuditEntry | None = None, **params: Any) -> tuple[str, Any]:
        client: EngineClient = self.request.app.state.engine
        kind, payload = await client.call(fn, params, self._context(fn, audit))
        if kind == "error":
            raise ApiError(payload)
        return kind, payload

    async def json(self, fn: Callable[..., Any], *, status_code: int = 200, **params: Any) -> Response:
        """Run `fn(ctx, **params)` and answer with what it returns, as JSON."""
        _, payload = await self.reply(fn, **params)
        return Response(payload, status_code=status_code, media_type="application/json")

    async def change(self, fn: Callable[..., Any], audit: AuditEntry, *, status_code: int = 200,
                     **params: Any) -> Response:
        """Like `json`, for a change: the engine process records `audit` once `fn` succeeded."""
        _, payload = await self.reply(fn, audit, **params)
        return Response(payload, status_code=status_code, media_type="application/json")

    async def value(self, fn: Callable[..., Any], audit: AuditEntry | None = None, **params: Any) -> Any:
        """What `fn` returns, decoded, for a handler that needs it (to set a cookie, say)."""
        _, payload = await self.reply(fn, audit, **params)
        return orjson.loads(payload)

    async def file(self, fn: Callable[..., Any], **params: Any) -> Response:
        """A download `fn` builds (a `FileResult`)."""
        kind, result = await self.reply(fn, **params)
        if kind != "file" or not isinstance(result, FileResult):
            raise ApiError(ErrorInfo(500, "internal_error", None, "the export did not produce a file.",
                                     "导出没有生成文件。"))
        disposition = f"attachment; filename*=UTF-8''{_quoted(result.filename)}"
        return Response(result.content, media_type=result.media_type, headers={"Content-Disposition": disposition})


def _quoted(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


Database = Annotated[Db, Depends(Db)]


def settings_of(request: Request) -> WebSettings:
    return request.app.state.settings


Settings = Annotated[WebSettings, Depends(settings_of)]
