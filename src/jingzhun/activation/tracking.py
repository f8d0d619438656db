"""Tracked links, opens and unsubscribes, from the message out to `message_events` and back.

Out: `LinkTracker` rewrites each link of a message to the collector's `/t/c/{token}`, gives
e-mails an open pixel `/t/o/{token}.gif` and an unsubscribe link `/t/u/{token}` (in the
List-Unsubscribe header); the token is the delivery id (plus campaign and target) signed
with the workspace's tracking secret (collect.collector.tracking). Links in SMS (or on
every channel, `short_links: all`) become short links `/s/{code}` instead, whose codes
the tracker writes to the link map at `commit`, before the batch is sent (short_links.py).

Back: the collector logs each click or open as a `Link Clicked` / `Email Opened` event of
its own source (`jingzhun-tracking`), and `record_message_events`, the after-load hook the
collector's loader calls after each batch, turns them into `message_events` rows
(`clicked` / `opened` / `unsubscribed`) joined to their delivery; an unsubscribe also
withdraws the person's marketing consent on that channel in `consents`. Only events of the tracking source count:
an SDK with a write key cannot forge a click on someone else's delivery. The row id comes
from the event's messageId, so a replayed batch records nothing twice, and
`rebuild_message_events` derives the same rows from the whole `events` table.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from jingzhun.activation.channels import CHANNELS
from jingzhun.activation.delivery import DeliveryConfig
from jingzhun.activation.short_links import ShortLinks
from jingzhun.collect.collector.tracking import (
    EMAIL_OPENED,
    LINK_CLICKED,
    TRACKING_SOURCE_ID,
    UNSUBSCRIBED,
    safe_target,
    sign_token,
    tracking_secret,
)
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, parse_sql
from jingzhun.schema.tables import CONSENTS, MESSAGE_EVENTS

BATCH_TABLE = "activation_tracking_batch"
EVENT_TYPES = {LINK_CLICKED: "clicked", EMAIL_OPENED: "opened", UNSUBSCRIBED: "unsubscribed"}


@dataclass(frozen=True)
class LinkTracker:
    """Tracked URLs for the deliveries of one campaign run."""

    base_url: str
    secret: bytes
    campaign_id: str
    short: ShortLinks | None = None  # short links, for the channels in `short_channels`
    short_channels: tuple[str, ...] = ("sms",)

    def link(self, delivery_id: str, url: str, channel: str | None = None) -> str:
        """`url` behind a signed redirect, or a short link on a channel that takes them (mailto:,
        tel: and the like stay as they are). Call `commit` before sending what carries them."""
        if not safe_target(url):
            return url
        if self.short is not None and channel in self.short_channels:
            return self.short.link(delivery_id, url)
        return f"{self.base_url.rstrip('/')}/t/c/{sign_token(self.secret, delivery_id, self.campaign_id, url)}"

    def commit(self) -> None:
        """Make every short link handed out so far resolvable (written and fsync'd to the link map)."""
        if self.short is not None:
            self.short.commit()

    def pixel(self, delivery_id: str) -> str:
        return f"{self.base_url.rstrip('/')}/t/o/{sign_token(self.secret, delivery_id, self.campaign_id)}.gif"

    def unsubscribe(self, delivery_id: str) -> str:
        token = sign_token(self.secret, delivery_id, self.campaign_id, unsubscribe=True)
        return f"{self.base_url.rstrip('/')}/t/u/{token}"


def link_tracker(workspace: Workspace, config: DeliveryConfig, campaign_id: str) -> LinkTracker | None:
    """The campaign's tracker, or None when delivery.yaml names no tracking base URL."""
    if config.tracking is None:
        return None
    tracking, secret = config.tracking, tracking_secret(workspace)
    short = ShortLinks(workspace, tracking.short_url or tracking.base_url, campaign_id, secret)
    channels = tuple(CHANNELS) if tracking.short_links == "all" else ("sms",)
    return LinkTracker(tracking.base_url, secret, campaign_id, short, channels)


MESSAGE_EVENTS_SQL = """
SELECT 'ev:' || e.message_id AS message_event_id, d.delivery_id, d.campaign_id, d.person_id,
  CASE e.event WHEN 'Link Clicked' THEN 'clicked' WHEN 'Email Opened' THEN 'opened' ELSE 'unsubscribed' END
    AS event_type,
  e.timestamp AS occurred_at, e.properties
FROM tracked_events AS e
JOIN deliveries AS d ON d.delivery_id = e.properties->>'$.delivery_id'
WHERE e.source_id = :source AND e.event IN ('Link Clicked', 'Email Opened', 'Unsubscribed')
  AND NOT EXISTS (SELECT 1 FROM message_events AS m WHERE m.message_event_id = 'ev:' || e.message_id)"""

# An unsubscribe withdraws marketing consent on the delivery's channel (transactional
# messages, such as an order shipped, still go); the evidence names the delivery and event.
WITHDRAWALS_SQL = """
SELECT d.person_id, 'marketing' AS purpose, d.channel, 'withdrawn' AS status, e.timestamp AS recorded_at,
  e.source_id, '{"delivery_id": "' || d.delivery_id || '", "message_id": "' || e.message_id || '"}' AS evidence
FROM tracked_events AS e
JOIN deliveries AS d ON d.delivery_id = e.properties->>'$.delivery_id'
WHERE e.source_id = :source AND e.event = 'Unsubscribed'
  AND NOT EXISTS (SELECT 1 FROM message_events AS m WHERE m.message_event_id = 'ev:' || e.message_id)"""


def message_events_sql(source: str) -> exp.Expression:
    """The `message_events` rows for the tracking events in table `source` not yet recorded."""
    query = parse_sql(MESSAGE_EVENTS_SQL.replace("tracked_events", source))
    return exp.replace_placeholders(query, source=exp.convert(TRACKING_SOURCE_ID))


def withdrawals_sql(source: str) -> exp.Expression:
    """The `consents` withdrawals for the unsubscribes in table `source` not yet recorded."""
    query = parse_sql(WITHDRAWALS_SQL.replace("tracked_events", source))
    return exp.replace_placeholders(query, source=exp.convert(TRACKING_SOURCE_ID))


def record_message_events(workspace: Workspace, engine: Engine, events: pa.Table) -> int:
    """After-load hook: record the clicks and opens among freshly loaded `events`; return how many."""
    if not events.num_rows or "event" not in events.column_names:
        return 0
    mask = pc.and_(pc.is_in(events.column("event"), value_set=pa.array(list(EVENT_TYPES))),
                   pc.equal(events.column("source_id"), TRACKING_SOURCE_ID))
    tracked = events.filter(pc.fill_null(mask, False))
    if not tracked.num_rows:
        return 0
    engine.write_table(BATCH_TABLE, tracked.select(["message_id", "event", "timestamp", "source_id", "properties"]),
                       mode="replace")
    try:
        return _record(engine, BATCH_TABLE)
    finally:
        engine.drop_table(BATCH_TABLE)


def rebuild_message_events(engine: Engine) -> int:
    """Record every click, open and unsubscribe in `events` that `message_events` lacks (after a restore)."""
    return _record(engine, "events")


def _record(engine: Engine, source: str) -> int:
    """Withdrawals first, then the events that guard them, in one transaction: a replay finds
    the events and adds neither again."""
    with engine.transaction():
        _append(engine, CONSENTS.name, CONSENTS.column_names, withdrawals_sql(source))
        return _append(engine, MESSAGE_EVENTS.name, MESSAGE_EVENTS.column_names, message_events_sql(source))


def _append(engine: Engine, table: str, columns: list[str], rows: exp.Expression) -> int:
    """Append the rows (few: the responses of one batch) through Arrow, which every engine can write."""
    found = engine.query(exp.select(*columns).from_(rows.subquery("r")))
    if found.num_rows:
        engine.write_table(table, found)
    return found.num_rows
