"""Tracked links, open pixels and unsubscribe links: `/t/c/{token}`, `/t/o/{token}.gif`,
`/t/u/{token}` and short links `/s/{code}` on the collector.

A campaign rewrites each link of a message to `/t/c/{token}` and adds an open pixel
`/t/o/{token}.gif` to e-mails. The token is the delivery's id (with its campaign and,
for a link, the target URL) signed with the workspace's tracking secret, so the
collector needs no database to trust it: it checks the signature, writes an
`Link Clicked` or `Email Opened` event into the durable log like any Segment call (with
`delivery_id` and `campaign_id` properties; the anonymousId is the delivery id, the only
identity a click carries), and redirects to the target or returns a 1×1 GIF. An
unsubscribe link asks first (GET shows a button; a mail scanner's prefetch changes
nothing) and logs `Unsubscribed` on POST, which is also what mail clients send for RFC
8058 one-click unsubscribe. A short link (`/s/{code}`, for SMS where every character is
billed) carries no target: its code is looked up in the link map the sender wrote before
sending (link_map.py), and a click is logged exactly like `/t/c/`. The loader then moves the events into `events`, and
activation's after-load hook records them in `message_events` (and an unsubscribe as a
consent withdrawal).

Activation imports the signing half from here (a stage may import the stages to its
left); the collector never imports activation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from jingzhun.collect.collector.link_map import LinkMap, decode_code, map_folder
from jingzhun.collect.collector.log_records import request_line
from jingzhun.core.workspace import Workspace

SECRET_FILE = ".jingzhun/tracking_secret"
TRACKING_SOURCE_ID = "jingzhun-tracking"
LINK_CLICKED = "Link Clicked"
EMAIL_OPENED = "Email Opened"
UNSUBSCRIBED = "Unsubscribed"
# The smallest transparent GIF (43 bytes).
PIXEL = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c000000000100010000020144003b")
_NO_CACHE = {"Cache-Control": "no-store, max-age=0", "Pragma": "no-cache"}


def tracking_secret(workspace: Workspace) -> bytes:
    """The workspace's signing secret for tracking tokens, created on first use.

    Both the campaign process (signing) and the collector (checking) may be first: the
    file is created exclusively, so two racing creators end with one secret.
    """
    path = workspace.resolve(SECRET_FILE)
    if path.is_file():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _wait_for(path)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(secrets.token_bytes(32))
        handle.flush()
        os.fsync(handle.fileno())
    return path.read_bytes()


def _wait_for(path: Path) -> bytes:
    for _ in range(100):  # the other creator writes 32 bytes right after creating the file
        data = path.read_bytes()
        if len(data) == 32:
            return data
        time.sleep(0.01)
    return path.read_bytes()


TAG_BYTES = 12  # a 96-bit HMAC tag: forging one takes ~2**95 online guesses
_KINDS = {b"c": "click", b"o": "open", b"u": "unsubscribe"}
_SCHEMES = ("https://", "http://")


def _field(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 255:
        raise ValueError("a token field is over 255 bytes")
    return bytes([len(raw)]) + raw


def _delivery_bytes(delivery_id: str) -> bytes:
    """A 32-hex delivery id (an MD5) as its 16 bytes; anything else as text."""
    if len(delivery_id) == 32:
        try:
            return b"\x00" + bytes.fromhex(delivery_id)
        except ValueError:
            pass
    return b"\x01" + _field(delivery_id)


def _tag(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, payload, hashlib.sha256).digest()[:TAG_BYTES]


def sign_token(secret: bytes, delivery_id: str, campaign_id: str, url: str | None = None, *,
               unsubscribe: bool = False) -> str:
    """A short URL-safe token for a delivery's link (with its target), open pixel or
    unsubscribe link, with an HMAC-SHA256 tag.

    Links go into SMS where every character counts, so the token is packed bytes rather
    than JSON: the kind, the delivery id as 16 bytes, the campaign, the target without
    its scheme.

    Example:
        >>> token = sign_token(b"k" * 32, "0" * 32, "spring", "https://shop.example/p/1")
        >>> read_token(b"k" * 32, token)["u"], len(token)
        ('https://shop.example/p/1', 72)
    """
    kind = b"c" if url is not None else b"u" if unsubscribe else b"o"
    payload = kind + _delivery_bytes(delivery_id) + _field(campaign_id)
    if url is not None:
        if not safe_target(url):
            raise ValueError(f"only http(s) links are tracked, not {url[:40]!r}")
        scheme = next(i for i, prefix in enumerate(_SCHEMES) if url.lower().startswith(prefix))
        payload += bytes([scheme]) + url[len(_SCHEMES[scheme]):].encode("utf-8")
    return base64.urlsafe_b64encode(payload + _tag(secret, payload)).rstrip(b"=").decode("ascii")


def read_token(secret: bytes, token: str) -> dict[str, str] | None:
    """The token's fields (`k` kind: click | open | unsubscribe, `d` delivery id, `c` campaign,
    `u` the target of a link), or None if it was not signed with `secret` or is malformed."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, binascii.Error):
        return None
    payload, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
    if len(raw) <= TAG_BYTES + 2 or not hmac.compare_digest(tag, _tag(secret, payload)):
        return None
    try:
        return _unpack(payload)
    except (IndexError, KeyError, ValueError, UnicodeDecodeError):
        return None


def _unpack(payload: bytes) -> dict[str, str] | None:
    kind, at = payload[:1], 1
    if payload[at] == 0:
        delivery, at = payload[at + 1:at + 17].hex(), at + 17
    else:
        size = payload[at + 1]
        delivery, at = payload[at + 2:at + 2 + size].decode("utf-8"), at + 2 + size
    size = payload[at]
    fields = {"k": _KINDS[kind], "d": delivery, "c": payload[at + 1:at + 1 + size].decode("utf-8")}
    at += 1 + size
    if kind == b"c":
        fields["u"] = _SCHEMES[payload[at]] + payload[at + 1:].decode("utf-8")
    elif at != len(payload):
        return None
    return fields


def safe_target(url: object) -> bool:
    """Only http(s) targets: a signed `javascript:` URL is still a script."""
    return isinstance(url, str) and url.lower().startswith(("http://", "https://"))


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
