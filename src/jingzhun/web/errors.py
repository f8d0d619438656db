"""One error shape for the whole API: `{"error": {"code", "field", "message", "fix"}}`.

Messages are in the caller's language (`Accept-Language`; Chinese by default, like the
CLI). A `JingzhunError` raised by a stage keeps its field and its zh/en message and
fix; FastAPI's own errors (validation, unknown path, wrong method) are reshaped the
same way, so a client handles one format.
"""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from jingzhun.core.errors import JingzhunError
from jingzhun.web.serialize import ErrorInfo, error_info

log = logging.getLogger(__name__)


class ResourceNotFound(JingzhunError):
    """The API was asked for an object that does not exist (answered 404)."""


class ResourceConflict(JingzhunError):
    """The object to create exists already (answered 409)."""


def not_found(kind: str, key: str, listing: str, kind_zh: str) -> ResourceNotFound:
    return ResourceNotFound(f"unknown {kind} {key!r}.", field=f"{kind.replace(' ', '_')}_id",
                            fix=f"list them with GET {listing}", message_zh=f"未知{kind_zh} {key!r}。",
                            fix_zh=f"用 GET {listing} 查看")


class ApiError(Exception):
    """An error the API answers with (raised by routes and dependencies)."""

    def __init__(self, info: ErrorInfo, headers: dict[str, str] | None = None) -> None:
        super().__init__(info.message_en)
        self.info, self.headers = info, headers


def api_error(status: int, code: str, message_en: str, message_zh: str, *, field: str | None = None,
              fix_en: str = "", fix_zh: str = "", headers: dict[str, str] | None = None) -> ApiError:
    return ApiError(ErrorInfo(status, code, field, message_en, message_zh, fix_en, fix_zh), headers)


def language_of(request: Request) -> str:
    """`zh` unless the caller prefers English (Accept-Language, highest quality first)."""
    header = request.headers.get("accept-language", "")
    best, best_q = "zh", -1.0
    for part in header.split(","):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        base = tag.strip().lower()[:2]
        if base in ("zh", "en") and quality > best_q:
            best, best_q = base, quality
    return best


def error_response(request: Request, info: ErrorInfo, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(info.body(language_of(request))), status_code=info.status, headers=headers,
                    media_type="application/json")


_STATUS_TEXT = {
    401: ("not_authenticated", "log in, or send an API key.", "请先登录，或提供 API 密钥。"),
    403: ("forbidden", "your role may not do this.", "您的角色无权执行此操作。"),
    404: ("not_found", "there is nothing at this address.", "此地址没有内容。"),
    405: ("method_not_allowed", "this address does not accept this method.", "此地址不支持该请求方法。"),
}


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error in the one shape."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, error: ApiError) -> Response:
        return error_response(request, error.info, error.headers)

    @app.exception_handler(JingzhunError)
    async def _stage(request: Request, error: JingzhunError) -> Response:
        return error_response(request, error_info(error))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> Response:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path"))
        message = str(first.get("msg", "invalid request"))
        info = ErrorInfo(422, "invalid_request", field or None, f"{field or 'request'}: {message}.",
                         f"{field or '请求'}：{message}。", "see the endpoint's parameters in /docs",
                         "请在 /docs 查看该接口的参数")
        return error_response(request, info)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> Response:
        code, en, zh = _STATUS_TEXT.get(error.status_code, ("http_error", str(error.detail), str(error.detail)))
        return error_response(request, ErrorInfo(error.status_code, code, None, en, zh), getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, error_info(error))
