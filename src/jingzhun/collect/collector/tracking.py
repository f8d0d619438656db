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
left); the collector never imports activation. The routes are in `tracking_routes`, so
signing a link does not import FastAPI.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from jingzhun.core.workspace import Workspace

SECRET_FILE = ".jingzhun/tracking_secret"
TRACKING_SOURCE_ID = "jingzhun-tracking"
LINK_CLICKED = "Link Clicked"
EMAIL_OPENED = "Email Opened"
UNSUBSCRIBED = "Unsubscribed"


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
