"""Tracked links and opens, from the message out to `message_events` and back.

Out: `LinkTracker` rewrites each link of a message to the collector's `/t/c/{token}` and
gives e-mails an open pixel `/t/o/{token}.gif`; the token is the delivery id (plus campaign
and target) signed with the workspace's tracking secret (collect.collector.tracking).

Back: the collector logs each click or open as a `Link Clicked` / `Email Opened` event of
its own source (`jingzhun-tracking`), and `record_message_events`, the after-load hook the
collector's loader calls after each batch, turns them into `message_events` rows
(`clicked` / `opened`) joined to their delivery. Only events of the tracking source count:
an SDK with a write key cannot forge a click on someone else's delivery. The row id comes
from the event's messageId, so a replayed batch records nothing twice, and
`rebuild_message_events` derives the same rows from the whole `events` table.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from jingzhun.activation.delivery import DeliveryConfig
from jingzhun.collect.collector.tracking import (
    EMAIL_OPENED,
    LINK_CLICKED,
    TRACKING_SOURCE_ID,
    safe_target,
    sign_token,
    tracking_secret,
)
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, parse_sql
from jingzhun.schema.tables import MESSAGE_EVENTS

BATCH_TABLE = "activation_tracking_batch"
EVENT_TYPES = {LINK_CLICKED: "clicked", EMAIL_OPENED: "opened"}


@dataclass(frozen=True)
class LinkTracker:
    """Tracked URLs for the deliveries of one campaign run."""

    base_url: str
    secret: bytes
    campaign_id: str

    def link(self, delivery_id: str, url: str) -> str:
        """`url` behind a signed redirect (mailto:, tel: and the like stay as they are)."""
        if not safe_target(url):
            return url
        return f"{self.base_url.rstrip('/')}/t/c/{sign_token(self.secret, delivery_id, self.campaign_id, url)}"

    def pixel(self, delivery_id: str) -> str:
        return f"{self.base_url.rstrip('/')}/t/o/{sign_token(self.secret, delivery_id, self.campaign_id)}.gif"


def link_tracker(workspace: Workspace, config: DeliveryConfig, campaign_id: str) -> LinkTracker | None:
    """The campaign's tracker, or None when delivery.yaml names no tracking base URL."""
    if config.tracking is None:
        return None
    return LinkTracker(config.tracking.base_url, tracking_secret(workspace), campaign_id)


MESSAGE_EVENTS_SQL = """
SELECT 'ev:' || e.message_id AS message_event_id, d.delivery_id, d.campaign_id, d.person_id,
  CASE e.event WHEN 'Link Clicked' THEN 'clicked' ELSE 'opened' END AS event_type,
  e.timestamp AS occurred_at, e.properties
FROM tracked_events AS e
JOIN deliveries AS d ON d.delivery_id = e.properties->>'$.delivery_id'
WHERE e.source_id = :source AND e.event IN ('Link Clicked', 'Email Opened')
  AND NOT EXISTS (SELECT 1 FROM message_events AS m WHERE m.message_event_id = 'ev:' || e.message_id)"""


def message_events_sql(source: str) -> exp.Expression:
    """The `message_events` rows for the tracking events in table `source` not yet recorded."""
    query = parse_sql(MESSAGE_EVENTS_SQL.replace("tracked_events", source))
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
        return _insert(engine, message_events_sql(BATCH_TABLE))
    finally:
        engine.drop_table(BATCH_TABLE)


def rebuild_message_events(engine: Engine) -> int:
    """Record every click and open in `events` that `message_events` lacks (after a restore)."""
    return _insert(engine, message_events_sql("events"))


def _insert(engine: Engine, rows: exp.Expression) -> int:
    """Append the rows (few: the clicks and opens of one batch) through Arrow, which every
    engine can write."""
    found = engine.query(exp.select(*MESSAGE_EVENTS.column_names).from_(rows.subquery("r")))
    if found.num_rows:
        engine.write_table(MESSAGE_EVENTS.name, found)
    return found.num_rows
