"""The console's pages, served by the same app as the API at `/`.

This module ships the log-in page (the one page that answers without credentials),
the authenticated shell the console's pages live in, the API's documentation
(`/docs`, Swagger UI vendored from npm: no CDN) and the console's static files
(only for logged-in users). The pages themselves call the REST API with the session
cookie and send the CSRF token from `<meta name="csrf-token">` on changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from jingzhun.web.api.deps import authenticate
from jingzhun.web.api.routes.auth import cookie_secure, end_session, start_session
from jingzhun.web.calls import CallContext
from jingzhun.web.client import EngineClient
from jingzhun.web.console.messages import console_messages
from jingzhun.web.errors import ApiError, error_response, language_of
from jingzhun.web.security import LOGIN_CSRF_COOKIE, SESSION_COOKIE, CookieSigner, same
from jingzhun.web.serialize import ErrorInfo

HERE = Path(__file__).parent
STATIC = HERE / "static"
LANG_COOKIE = "jz_lang"
# The console's sections, in the sidebar's order; the console's pages fill them.
SECTIONS = ("overview", "persons", "tags", "audiences", "analytics", "campaigns", "leads", "measurement", "data")
TEXT: dict[str, dict[str, str]] = {
    "zh": {"title": "登录", "subtitle": "精准营销平台", "username": "用户名", "password": "密码", "submit": "登录",
           "bad_login": "用户名或密码错误，或该用户已停用。", "bad_form": "登录表单已过期，请重试。",
           "too_many": "登录失败次数过多，请 {wait} 秒后再试。", "logout": "退出", "welcome": "欢迎使用精准",
           "welcome.sub": "从左侧选择一个模块开始。", "nav.api": "API 文档",
           "nav.overview": "概览", "nav.persons": "客户 360", "nav.tags": "标签", "nav.audiences": "人群",
           "nav.analytics": "分析", "nav.campaigns": "营销活动", "nav.leads": "销售线索", "nav.measurement": "效果评估",
           "nav.data": "数据",
           "role.admin": "管理员", "role.marketer": "营销", "role.analyst": "分析师", "role.viewer": "只读"},
    "en": {"title": "Log in", "subtitle": "Precision marketing", "username": "User name", "password": "Password",
           "submit": "Log in", "bad_login": "The user name or password is wrong, or the user is disabled.",
           "bad_form": "The log-in form expired; please try again.",
           "too_many": "Too many failed log-ins; try again in {wait} s.", "logout": "Log out",
           "welcome": "Welcome to jingzhun", "welcome.sub": "Pick a section on the left to start.",
           "nav.api": "API docs", "nav.overview": "Overview", "nav.persons": "Person 360", "nav.tags": "Tags",
           "nav.audiences": "Audiences", "nav.analytics": "Analytics", "nav.campaigns": "Campaigns", "nav.leads": "Leads",
           "nav.measurement": "Measurement", "nav.data": "Data", "role.admin": "Admin", "role.marketer": "Marketer",
           "role.analyst": "Analyst", "role.viewer": "Viewer"},
}
PAGE_HEADERS = {"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
                "Cache-Control": "no-store"}
_CSP = "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self' {inline}; " \
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"

router = APIRouter(include_in_schema=False)
templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))


def page_language(request: Request) -> str:
    """The console's language: ?lang=, then the jz_lang cookie, then Accept-Language (Chinese by default)."""
    for chosen in (request.query_params.get("lang"), request.cookies.get(LANG_COOKIE)):
        if chosen in TEXT:
            return chosen
    return language_of(request)


def page(name: str, status: int = 200, inline_styles: bool = False, **values: Any) -> HTMLResponse:
    html = templates.get_template(name).render(**values)
    csp = _CSP.format(inline="'unsafe-inline'" if inline_styles else "")
    return HTMLResponse(html, status_code=status, headers={**PAGE_HEADERS, "Content-Security-Policy": csp})


def safe_next(target: str | None) -> str:
    """Only a path on this site (never `//host` or a full URL): no open redirect after log-in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def login_page(request: Request, status: int = 200, error: str | None = None, username: str = "") -> HTMLResponse:
    """The log-in form with a fresh double-submit token (its signed twin goes in a cookie)."""
    lang = page_language(request)
    signer: CookieSigner = request.app.state.signer
    token, cookie = signer.login_csrf()
    target = safe_next(request.query_params.get("next"))
    response = page("login.html", status, inline_styles=True, lang=lang, t=TEXT[lang], error=error,
                    csrf_token=token, next=target, username=username,
                    next_query=f"&next={quote(target)}" if target != "/" else "")
    response.set_cookie(LOGIN_CSRF_COOKIE, cookie, max_age=3600, httponly=True, samesite="lax",
                        secure=cookie_secure(request), path="/login")
    if request.query_params.get("lang") in TEXT:
        response.set_cookie(LANG_COOKIE, lang, max_age=31_536_000, samesite="lax", path="/")
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> HTMLResponse:
    """The log-in page."""
    return login_page(request)


@router.post("/login")
async def login_submit(request: Request, username: Annotated[str, Form(max_length=200)] = "",
                       password: Annotated[str, Form(max_length=1000)] = "",
                       csrf_token: Annotated[str, Form(max_length=200)] = "",
                       next: Annotated[str, Form(max_length=2000)] = "/") -> Response:  # noqa: A002 — the form's name
    """Check the form's double-submit token, then the password; on success go where the user was heading."""
    lang = page_language(request)
    signer: CookieSigner = request.app.state.signer
    if not signer.login_csrf_valid(request.cookies.get(LOGIN_CSRF_COOKIE), csrf_token):
        return login_page(request, 403, TEXT[lang]["bad_form"], username)
    response = RedirectResponse(safe_next(next), status_code=303)
    try:
        await start_session(request, response, username, password)
    except ApiError as failed:
        if failed.info.status == 429:
            wait = (failed.headers or {}).get("Retry-After", "60")
            return login_page(request, 429, TEXT[lang]["too_many"].format(wait=wait), username)
        if failed.info.status == 401:
            return login_page(request, 401, TEXT[lang]["bad_login"], username)
        raise
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout_submit(request: Request, csrf_token: Annotated[str, Form(max_length=200)] = "") -> Response:
    """End the session (the form carries the session's CSRF token), back to the log-in page."""
    principal = await authenticate(request)
    if principal is not None and principal.kind == "user" and same(csrf_token, principal.csrf_token):
        client: EngineClient = request.app.state.engine
        await client.call(end_session, {}, CallContext(principal, False))
        request.app.state.auth_cache.clear()
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def _user_or_login(request: Request) -> Any:
    principal = await authenticate(request)
    if principal is None:
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
    return principal


@router.get("/", response_class=HTMLResponse)
async def shell(request: Request) -> Response:
    """The console's shell: top bar, sections, and the page area the console fills."""
    principal = await _user_or_login(request)
    if isinstance(principal, Response):
        return principal
    lang = page_language(request)
    return page("shell.html", lang=lang, t=TEXT[lang], user=principal, csrf_token=principal.csrf_token or "",
                sections=SECTIONS, messages=console_messages(TEXT))


@router.get("/docs", response_class=HTMLResponse)
async def api_docs(request: Request) -> Response:
    """The API's documentation (Swagger UI, served from this server)."""
    principal = await _user_or_login(request)
    if isinstance(principal, Response):
        return principal
    return page("docs.html", csrf_token=principal.csrf_token or "")


@router.get("/openapi.json")
async def openapi(request: Request) -> Response:
    """The OpenAPI document of the API (for logged-in users and API keys)."""
    if await authenticate(request) is None:
        return Response(status_code=303, headers={"Location": "/login?next=/docs"}) \
            if "text/html" in request.headers.get("accept", "") else _unauthorized(request)
    return Response(request.app.state.openapi_bytes, media_type="application/json")


def _unauthorized(request: Request) -> Response:
    return error_response(request, ErrorInfo(401, "not_authenticated", None, "log in, or send an API key.",
                                             "请先登录，或提供 API 密钥。"))


@router.get("/static/{path:path}")
async def static(path: str, request: Request) -> Response:
    """The console's static files, for logged-in users."""
    principal = await authenticate(request)
    if principal is None:
        return _unauthorized(request)
    target = (STATIC / path).resolve()
    if not target.is_file() or STATIC.resolve() not in target.parents:
        return Response(status_code=404)
    return FileResponse(target, headers={"Cache-Control": "private, max-age=3600",
                                         "X-Content-Type-Options": "nosniff"})
