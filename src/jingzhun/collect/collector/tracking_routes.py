"""The collector's routes for tracked links, open pixels, unsubscribe links and short links
(`/t/c/{token}`, `/t/o/{token}.gif`, `/t/u/{token}`, `/s/{code}`); what they do and how
tokens are signed is described in `tracking`, which keeps the signing half free of FastAPI.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from jingzhun.collect.collector.link_map import LinkMap, decode_code, map_folder
from jingzhun.collect.collector.log_records import request_line
from jingzhun.collect.collector.tracking import (
    EMAIL_OPENED,
    LINK_CLICKED,
    TRACKING_SOURCE_ID,
    UNSUBSCRIBED,
    read_token,
    safe_target,
    tracking_secret,
)
from jingzhun.core.workspace import Workspace

# The smallest transparent GIF (43 bytes).
PIXEL = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c000000000100010000020144003b")
_NO_CACHE = {"Cache-Control": "no-store, max-age=0", "Pragma": "no-cache"}


def tracking_message(event: str, payload: dict[str, str], request: Request) -> dict[str, Any]:
    """The Segment track message for a click or an open."""
    properties = {"delivery_id": payload["d"], "campaign_id": payload.get("c")}
    if "u" in payload:
        properties["url"] = payload["u"]
    context = {"userAgent": request.headers.get("user-agent"),
               "ip": request.client.host if request.client else None,
               "library": {"name": "jingzhun-tracking", "version": "1"}}
    return {"type": "track", "event": event, "anonymousId": payload["d"], "messageId": str(uuid.uuid4()),
            "timestamp": datetime.now(UTC).isoformat(), "properties": properties,
            "context": {key: value for key, value in context.items() if value is not None}}


async def log_tracking_event(request: Request, message: dict[str, Any]) -> None:
    """Append the event to the durable log (acknowledged once fsync'd, like any call)."""
    body = orjson.dumps({"batch": [message], "sentAt": None})
    line = request_line(time.time_ns() // 1000, TRACKING_SOURCE_ID, "server", "track", body)
    await request.app.state.collector.committer.append(line)


def add_tracking_routes(app: FastAPI, workspace: Workspace) -> None:
    """Register the click, short link, open and unsubscribe routes; the secret is read once, at the
    first request, and the link map's index when the first short link is clicked."""
    keys: dict[str, bytes] = {}

    def secret() -> bytes:
        if "secret" not in keys:
            keys["secret"] = tracking_secret(workspace)
        return keys["secret"]

    def token_of(token: str, kind: str) -> dict[str, str] | None:
        payload = read_token(secret(), token)
        return payload if payload is not None and payload["k"] == kind else None

    @app.get("/t/c/{token}", name="tracked_click", include_in_schema=False)
    async def click(token: str, request: Request) -> Response:
        """A tracked link: log `Link Clicked`, then redirect to the link's target."""
        payload = token_of(token, "click")
        if payload is None:
            return Response("unknown link / 链接无效", status_code=404, media_type="text/plain; charset=utf-8")
        await log_tracking_event(request, tracking_message(LINK_CLICKED, payload, request))
        return RedirectResponse(payload["u"], status_code=302, headers=_NO_CACHE)

    links = LinkMap(map_folder(workspace))

    @app.get("/s/{code}", name="short_link", include_in_schema=False)
    async def short_link(code: str, request: Request) -> Response:
        """A short link: found in the link map (read again when the code is new to the index), logged
        as `Link Clicked` like `/t/c/`, then redirected to its target; an unknown code gets a 404 page."""
        found = links.find(code)
        if found is None and decode_code(code) is not None:
            await run_in_threadpool(links.refresh)  # a new tail may be large: off the event loop
            found = links.find(code)
        if found is None or not safe_target(found.url):
            return _page(UNKNOWN_LINK_PAGE, 404)
        payload = {"d": found.delivery_id, "c": found.campaign_id, "u": found.url}
        await log_tracking_event(request, tracking_message(LINK_CLICKED, payload, request))
        return RedirectResponse(found.url, status_code=302, headers=_NO_CACHE)

    @app.get("/t/o/{token}.gif", name="tracked_open", include_in_schema=False)
    async def open_pixel(token: str, request: Request) -> Response:
        """An open pixel: log `Email Opened`, return a transparent 1×1 GIF (even for a bad token)."""
        payload = token_of(token, "open")
        if payload is not None:
            await log_tracking_event(request, tracking_message(EMAIL_OPENED, payload, request))
        return Response(PIXEL, media_type="image/gif", headers=_NO_CACHE)

    @app.get("/t/u/{token}", name="unsubscribe_page", include_in_schema=False)
    async def unsubscribe_page(token: str) -> Response:
        """Ask before unsubscribing: mail scanners open every link, and a GET must not withdraw consent."""
        if token_of(token, "unsubscribe") is None:
            return _page(UNKNOWN_PAGE, 404)
        return _page(CONFIRM_PAGE)

    @app.post("/t/u/{token}", name="unsubscribe", include_in_schema=False)
    async def unsubscribe(token: str, request: Request) -> Response:
        """Unsubscribe (the page's button, or a mail client's RFC 8058 one-click POST): log `Unsubscribed`."""
        payload = token_of(token, "unsubscribe")
        if payload is None:
            return _page(UNKNOWN_PAGE, 404)
        await log_tracking_event(request, tracking_message(UNSUBSCRIBED, payload, request))
        return _page(DONE_PAGE)


_PAGE = ('<!doctype html><html lang="zh"><head><meta charset="utf-8"><meta name="viewport" '
         'content="width=device-width, initial-scale=1"><title>退订 Unsubscribe</title></head>'
         '<body style="font-family:sans-serif;max-width:32em;margin:3em auto;padding:0 1em">{}</body></html>')
CONFIRM_PAGE = _PAGE.format('<p>不再接收此渠道的营销消息？</p><p>Stop marketing messages on this channel?</p>'
                            '<form method="post"><button type="submit">退订 Unsubscribe</button></form>')
DONE_PAGE = _PAGE.format("<p>已退订，您将不再收到此渠道的营销消息。</p>"
                         "<p>You are unsubscribed from marketing messages on this channel.</p>")
UNKNOWN_PAGE = _PAGE.format("<p>链接无效。</p><p>This link is not valid.</p>")
UNKNOWN_LINK_PAGE = _PAGE.replace("退订 Unsubscribe</title>", "链接无效 Link not found</title>").format(
    "<p>链接无效：请确认打开的是短信中的完整链接。</p>"
    "<p>This link is not valid: check that the whole link from the message was opened.</p>")


def _page(html: str, status: int = 200) -> Response:
    return Response(html, status_code=status, media_type="text/html; charset=utf-8", headers=_NO_CACHE)
