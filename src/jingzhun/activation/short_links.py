"""Short tracked links for SMS: `{base}/s/{code}` instead of a 100–120 character token.

A mainland SMS is billed per 67 characters once it is over 70, signature included, so a
signed token (`/t/c/…`, tracking.py) costs the starter templates a third part. A short
link's code is 10 base62 characters derived from the delivery id and the target with an
HMAC under a key of the workspace's tracking secret: the same link of the same delivery
always gets the same code (a message rendered again after a crash links to the same
place), and nobody without the secret can compute another person's code.

The code says nothing by itself: `ShortLinks.commit` writes each new (code → delivery,
campaign, target) line to the link map (collect.collector.link_map) and fsyncs it. The
send loop commits right after rendering a batch and before any of it is handed to a
gateway, so a link that went out is on disk — whatever crashes afterwards — and the
collector resolves it without a database. Codes are unique: a link whose code another
link already holds (ten million links in the map hold such a pair with a chance of about
1 in 17,000) takes the code of its next attempt.
"""

from __future__ import annotations

import hashlib
import hmac

from jingzhun.collect.collector.link_map import (
    CODE_SPACE,
    LinkMap,
    ShortLink,
    encode_code,
    map_folder,
)
from jingzhun.core.workspace import Workspace

_KEY_LABEL = b"jingzhun short links v1"
MAX_ATTEMPTS = 8  # each further attempt is a fresh 59-bit code: eight clashes in a row do not happen


def short_link_key(secret: bytes) -> bytes:
    """The codes' own key, derived from the tracking secret (tokens and codes never share one)."""
    return hmac.new(secret, _KEY_LABEL, hashlib.sha256).digest()


def short_code(key: bytes, delivery_id: str, url: str, attempt: int = 0) -> str:
    """The code of a delivery's link: an HMAC-SHA256 of delivery, target and attempt, as
    10 base62 characters (128 bits taken modulo 62**10, so every code is about equally likely).

    Example:
        >>> short_code(b"k" * 32, "0" * 32, "https://shop.example/p/1")
        '6YwttbZG7Q'
    """
    digest = hmac.new(key, f"{delivery_id}\n{url}\n{attempt}".encode(), hashlib.sha256).digest()
    return encode_code(int.from_bytes(digest[:16], "big") % CODE_SPACE)


class ShortLinks:
    """The short links of one campaign: codes now, written to the link map at `commit`.

    Not for concurrent use: each campaign run (a thread of `run_campaigns`) has its own.
    """

    def __init__(self, workspace: Workspace, base_url: str, campaign_id: str, secret: bytes) -> None:
        self.base_url = base_url.rstrip("/")
        self.campaign_id = campaign_id
        self.map = LinkMap(map_folder(workspace))
        self._key = short_link_key(secret)
        self._pending: dict[str, ShortLink] = {}
        self._fresh = False

    def link(self, delivery_id: str, url: str) -> str:
        """`{base}/s/{code}` for the delivery's link to `url` (not resolvable before `commit`)."""
        if not self._fresh:  # what other campaigns wrote since this one began
            self.map.refresh()
            self._fresh = True
        wanted = ShortLink("", delivery_id, self.campaign_id, url)
        for attempt in range(MAX_ATTEMPTS):
            code = short_code(self._key, delivery_id, url, attempt)
            taken = self._pending.get(code) or self.map.find(code)
            if taken is None or taken.same_target(wanted):
                self._pending[code] = ShortLink(code, delivery_id, self.campaign_id, url)
                return f"{self.base_url}/s/{code}"
        raise RuntimeError(f"no free short code for delivery {delivery_id} after {MAX_ATTEMPTS} attempts")

    def commit(self) -> int:
        """Write the links made since the last commit durably (fsync'd); return how many were new.

        Call it before any message carrying them is sent. A link already in the map (the
        same message rendered again after a crash) is not written twice.
        """
        if not self._pending:
            return 0
        written = self.map.append(self.campaign_id, self._pending.values())
        self._pending.clear()
        self._fresh = False  # look at the map again before the next batch
        return written
