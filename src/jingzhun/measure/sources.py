"""The relations every measurement reads: sends (live and imported), their responses, and orders.

- **sends**: one row per delivery decision — jingzhun's own `deliveries` (with their
  opens, clicks and unsubscribes from `message_events`) and the imported message log
  (`history_deliveries`, resolved to persons by the measure stage) — with its arm, whether
  it went and arrived, and the **anchor**: when it was sent, or for the control arm when it
  would have been (the planned time; for imported history, the campaign's first send).
- **conversion orders**: kept orders from `orders` and `Order Completed` events of the
  collector, each attributed to its person through `record_persons`; an order both
  imported and tracked counts once (the imported row wins: it has the final amount).

KPIs, lift, attribution and the closed loop all start here, so they agree on what a send,
a response and an order are. SQL is DuckDB's dialect, kept to what Spark also runs.
"""

from __future__ import annotations

from sqlglot import exp

from jingzhun.core.workspace import Workspace
from jingzhun.engine import parse_sql
from jingzhun.identity.graph import normalize_settings
from jingzhun.identity.identifiers import plain_value_sql, stored_value_sql
from jingzhun.identity.registry import DEFAULT_REGISTRY
from jingzhun.measure.settings import ConversionWindow

# The message log names channels and addresses its own way; jingzhun's channel and identifier type for each.
HISTORY_CHANNELS = {"sms": ("sms", "phone"), "wechat_template": ("wechat", "wechat_oa_openid"),
                    "app_push": ("app_push", "member_id"), "email": ("email", "email")}
RESPONSE_EVENTS = ("opened", "clicked", "unsubscribed", "bounced")


def _case(column: str, pairs: dict[str, str]) -> str:
    whens = " ".join(f"WHEN '{key}' THEN '{value}'" for key, value in pairs.items())
    return f"CASE {column} {whens} END"


def history_deliveries_sql(workspace: Workspace | None) -> exp.Expression:
    """`history_deliveries` rows: the imported log's recipients normalized like `identities`
    (E.164 phones, lower-case e-mail, salted where the workspace salts PII) and resolved to
    their person; an unresolved recipient keeps a hashed unit id so lift still counts it."""
    settings = normalize_settings(workspace)
    plain = plain_value_sql("id_type", "recipient", DEFAULT_REGISTRY, settings)
    stored = stored_value_sql("id_type", "plain_value", DEFAULT_REGISTRY, settings)
    channel = _case("channel", {k: v[0] for k, v in HISTORY_CHANNELS.items()})
    id_type = _case("channel", {k: v[1] for k, v in HISTORY_CHANNELS.items()})
    return parse_sql(f"""
WITH typed AS (
  SELECT h.*, {id_type} AS id_type, {channel} AS our_channel FROM message_history AS h
),
plain AS (SELECT typed.*, {plain} AS plain_value FROM typed),
normalized AS (SELECT plain.*, {stored} AS id_value FROM plain),
resolved AS (
  SELECT n.*, i.person_id FROM normalized AS n
  LEFT JOIN (SELECT id_type, id_value, MIN(person_id) AS person_id FROM identities GROUP BY id_type, id_value) AS i
    ON i.id_type = n.id_type AND i.id_value = n.id_value
),
first_send AS (
  SELECT campaign_id, MIN(sent_at) AS first_sent FROM message_history WHERE sent_at IS NOT NULL GROUP BY campaign_id
)
SELECT 'mh:' || MD5(r.campaign_id || ':' || r.recipient) AS delivery_id, r.campaign_id, r.our_channel AS channel,
  r.person_id, COALESCE(r.person_id, 'r:' || MD5(r.channel || ':' || r.recipient)) AS unit_id, r.arm,
  COALESCE(r.sent_at, f.first_sent) AS anchor_at, r.sent_at, r.delivered, r.opened_at, r.clicked_at,
  r.unsubscribed, r.converted_order_id
FROM resolved AS r JOIN first_send AS f ON f.campaign_id = r.campaign_id
WHERE r.our_channel IS NOT NULL""")


# One row per send decision, live and imported, in the same columns.
SENDS = """
SELECT d.delivery_id, d.campaign_id, d.channel, d.person_id, d.person_id AS unit_id,
  CASE WHEN d.status = 'held_out' OR d.variant = 'control' THEN 'control' ELSE 'treatment' END AS arm,
  CASE WHEN d.status = 'held_out' OR d.variant = 'control' THEN d.reason IS NULL
       ELSE d.status <> 'suppressed' END AS eligible,
  COALESCE(d.sent_at, d.scheduled_at, d.updated_at) AS anchor_at,
  d.status = 'sent' AS sent,
  d.status = 'sent' AND COALESCE(r.bounced, 0) = 0 AS delivered,
  d.status = 'failed' OR (d.status = 'sent' AND COALESCE(r.bounced, 0) = 1) AS failed,
  r.opened_at, r.clicked_at, COALESCE(r.unsubscribed, 0) = 1 AS unsubscribed,
  CAST(CASE WHEN d.status = 'sent' THEN COALESCE(d.cost, 0) ELSE 0 END AS DECIMAL(18, 4)) AS cost,
  d.coupon_code, CAST(NULL AS VARCHAR) AS tool_order_id, 'jingzhun' AS origin
FROM deliveries AS d
LEFT JOIN (
  SELECT delivery_id,
    MIN(CASE WHEN event_type = 'opened' THEN occurred_at END) AS opened_at,
    MIN(CASE WHEN event_type = 'clicked' THEN occurred_at END) AS clicked_at,
    MAX(CASE WHEN event_type = 'unsubscribed' THEN 1 ELSE 0 END) AS unsubscribed,
    MAX(CASE WHEN event_type = 'bounced' THEN 1 ELSE 0 END) AS bounced
  FROM message_events WHERE event_type IN ('opened', 'clicked', 'unsubscribed', 'bounced')
  GROUP BY delivery_id
) AS r ON r.delivery_id = d.delivery_id
WHERE d.campaign_id IS NOT NULL
UNION ALL
SELECT delivery_id, campaign_id, channel, person_id, unit_id, arm, TRUE AS eligible, anchor_at,
  sent_at IS NOT NULL AS sent, COALESCE(delivered, FALSE) AS delivered,
  sent_at IS NOT NULL AND NOT COALESCE(delivered, FALSE) AS failed,
  opened_at, clicked_at, COALESCE(unsubscribed, FALSE) AS unsubscribed, CAST(0 AS DECIMAL(18, 4)) AS cost,
  CAST(NULL AS VARCHAR) AS coupon_code, converted_order_id AS tool_order_id, 'import' AS origin
FROM history_deliveries"""

# Tracked orders: `Order Completed` events of `{events}` (the whole log, or a collector batch) with their person.
TRACKED_ORDERS = """
SELECT rp.person_id, e.properties->>'$.order_id' AS order_id, e.timestamp AS placed_at,
  TRY_CAST(COALESCE(e.properties->>'$.revenue', e.properties->>'$.total') AS DECIMAL(18, 2)) AS amount,
  'event' AS origin, 2 AS priority
FROM {events} AS e JOIN record_persons AS rp ON rp.record_kind = 'event' AND rp.record_id = e.message_id
WHERE e.event = 'Order Completed' AND e.properties->>'$.order_id' IS NOT NULL"""

# Kept orders with their person, imported or tracked, each once (the `conversion_orders`
# table holds these rows between measure runs; the live-KPI hook extends it).
CONVERSION_ORDERS = f"""
SELECT person_id, order_id, placed_at, amount, origin FROM (
  SELECT person_id, order_id, placed_at, amount, origin,
    ROW_NUMBER() OVER (PARTITION BY order_id ORDER BY priority, person_id) AS pick
  FROM (
    SELECT rp.person_id, o.order_id, o.placed_at, CAST(o.net_amount AS DECIMAL(18, 2)) AS amount,
      'order' AS origin, 1 AS priority
    FROM orders AS o JOIN record_persons AS rp ON rp.record_kind = 'order' AND rp.record_id = o.order_id
    WHERE o.status IS NULL OR o.status NOT IN ('cancelled', 'refunded')
    UNION ALL {TRACKED_ORDERS.format(events="events")}
  ) AS candidates
) AS ranked WHERE pick = 1"""


def sends_sql() -> exp.Expression:
    """Every send decision, live and imported (see the module docstring)."""
    return parse_sql(SENDS)


def conversion_orders_sql() -> exp.Expression:
    """Kept orders, each with its person, once."""
    return parse_sql(CONVERSION_ORDERS)


def in_window(send: str, order: str, window: ConversionWindow) -> str:
    """SQL: order `order` follows send `send` within the delivery window, or a click within the click window."""
    return (f"(({order}.placed_at >= {send}.anchor_at AND {order}.placed_at < {send}.anchor_at "
            f"+ INTERVAL {window.delivery_days} DAY) OR ({send}.clicked_at IS NOT NULL AND "
            f"{order}.placed_at >= {send}.clicked_at AND {order}.placed_at < {send}.clicked_at "
            f"+ INTERVAL {window.click_days} DAY))")


def matched_orders_sql(window: ConversionWindow, sends: str = "sends", orders: str = "conversion_orders") -> str:
    """(delivery_id, order_id, amount) for each order that followed a send in its window;
    the imported log's own conversions (the tool's attribution) count as orders of unknown amount."""
    return f"""
SELECT s.delivery_id, o.order_id, o.amount FROM {sends} AS s
JOIN {orders} AS o ON o.person_id = s.person_id AND {in_window('s', 'o', window)}
WHERE s.origin = 'jingzhun'
UNION ALL
SELECT s.delivery_id, s.tool_order_id AS order_id, CAST(NULL AS DECIMAL(18, 2)) AS amount FROM {sends} AS s
WHERE s.tool_order_id IS NOT NULL"""
