"""The SELECTs behind the traits stage, authored in DuckDB's dialect, run on any engine.

Every query reads the collected tables through `record_persons` (which person each
event, order, source record and survey response belongs to) and keeps only rows
whose EVENT time is at or before `:as_of`, so a late or replayed event changes
nothing that its timestamp does not place in the window, and a past `as_of`
rebuilds the past. Ties are broken on ids, never on arrival order, so two runs
over the same data agree row for row on DuckDB and Spark.

Placeholders (`:as_of`, `:since_30d`, `:since_90d`, `:since_365d`, `:tz`) are bound
as literals by `bind`, never formatted into the text. Intermediate tables are
named `traits_*` (see `jingzhun.profiles.traits`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlglot import exp

from jingzhun.core.errors import JingzhunError
from jingzhun.engine import parse_sql

EVENT_FACTS = "traits_event_facts"
ORDER_FACTS = "traits_order_facts"
ORDER_LINES = "traits_order_lines"
SOCIAL_FACTS = "traits_social_facts"
BASE_CANDIDATES = "traits_base_candidates"
BASE_VALUES = "traits_base_values"
ACTIVITY = "traits_activity"
PURCHASES = "traits_purchases"
PICKS = "traits_picks"
PRICE_BANDS = "traits_price_bands"
HOLIDAYS = "traits_holidays"
NEXT = "traits_next"  # the new person_traits, published after the history update

# What the stage reads: the collected tables and the identity stage's record owners.
INPUTS = ("events", "orders", "order_items", "products", "source_records", "survey_responses",
          "persons", "record_persons", "identities")

SESSION_GAP_SECONDS = 30 * 60  # a new session after 30 minutes without an event


class TraitsError(JingzhunError):
    """The traits stage cannot run as asked."""


@dataclass(frozen=True)
class TraitWindow:
    """The instant traits are computed for and the calendar they are counted in."""

    as_of: dt.datetime
    timezone: str

    def values(self) -> dict[str, object]:
        """Placeholder values for `bind`: the instant and the starts of the windows."""
        return {
            "as_of": self.as_of,
            "since_30d": self.as_of - dt.timedelta(days=30),
            "since_90d": self.as_of - dt.timedelta(days=90),
            "since_365d": self.as_of - dt.timedelta(days=365),
            "tz": self.timezone,
        }


def bind(sql: str, window: TraitWindow) -> exp.Expression:
    """Parse DuckDB-dialect SQL and bind the window's `:name` placeholders as literals.

    Example:
        >>> w = TraitWindow(dt.datetime(2025, 1, 1, tzinfo=dt.UTC), "Asia/Shanghai")
        >>> "2024-12-02" in bind("SELECT :since_30d AS x", w).sql()
        True
    """
    values = {name: exp.convert(value) for name, value in window.values().items()}
    return exp.replace_placeholders(parse_sql(sql), **values)


def utc(instant: dt.datetime | None) -> dt.datetime:
    """`instant` in UTC (naive means UTC); now (to the second) when None."""
    if instant is None:
        return dt.datetime.now(dt.UTC).replace(microsecond=0)
    return instant.replace(tzinfo=dt.UTC) if instant.tzinfo is None else instant.astimezone(dt.UTC)


def _local_day(column: str) -> str:
    """The local calendar day of a UTC instant (DuckDB: TIMESTAMPTZ AT TIME ZONE)."""
    return f"CAST(CAST({column} AS TIMESTAMPTZ) AT TIME ZONE :tz AS DATE)"


def owned(kind: str, alias: str, id_column: str) -> str:
    """Join a record to its active person through record_persons."""
    return (
        f"JOIN record_persons AS rp ON rp.record_kind = '{kind}' AND rp.record_id = {alias}.{id_column} "
        "JOIN persons AS pe ON pe.person_id = rp.person_id AND pe.status = 'active'"
    )


# ---- facts: one row per record, attributed to its person -----------------------------

# Device class per event from the user agent, which every SDK sends; the SDK's own os /
# device fields only when there is none. `context` is large (~500 bytes): it is read
# by path here and never carried through the query (carrying it cost 40% of the step).
EVENT_FACTS_SQL = f"""
WITH described AS (
  SELECT rp.person_id, e.message_id, e."timestamp" AS at, e.type, e.event, e.channel,
    COALESCE(e.anonymous_id, e.user_id) AS stream,
    e.properties->>'$.category' AS category,
    TRY_CAST(e.properties->>'$.price' AS DOUBLE) AS price,
    e.context->>'$.userAgent' AS ua,
    CASE WHEN e.context->>'$.userAgent' IS NULL
      THEN LOWER(COALESCE(e.context->>'$.os.name', e.context->>'$.device.type')) END AS os
  FROM events AS e {owned('event', 'e', 'message_id')}
  WHERE e."timestamp" <= :as_of
)
SELECT person_id, message_id, at, {_local_day('at')} AS day, type, event, channel, stream,
  category, price,
  CASE
    WHEN ua LIKE '%iPhone%' OR ua LIKE '%iPad%' OR ua LIKE '%iPod%' OR ua LIKE '%iOS%'
      OR ua LIKE '%CFNetwork%' THEN 'ios'
    WHEN ua LIKE '%Android%' OR ua LIKE '%HarmonyOS%' THEN 'android'
    WHEN ua LIKE '%Windows%' OR ua LIKE '%Macintosh%' OR ua LIKE '%X11%' OR ua LIKE '%CrOS%' THEN 'pc'
    WHEN os IN ('ios', 'ipados', 'iphone os') THEN 'ios'
    WHEN os IN ('android', 'harmonyos', 'openharmony') THEN 'android'
    WHEN os IN ('windows', 'mac os x', 'macos', 'mac os', 'linux', 'desktop') THEN 'pc'
    WHEN os IS NOT NULL OR ua IS NOT NULL THEN 'other'
  END AS device
FROM described
"""

# outcome: cancelled orders never happened for the portrait; refunded ones count only
# toward the refund rate; every other status (paid, shipped, completed, none) is kept.
ORDER_FACTS_SQL = f"""
WITH owned AS (
  SELECT rp.person_id, o.order_id, o.placed_at AS at, {_local_day('o.placed_at')} AS day,
    COALESCE(o.platform, CASE WHEN o.channel = 'offline' THEN 'pos' END, o.channel) AS platform,
    CASE WHEN o.channel = 'offline' OR (o.channel IS NULL AND o.platform = 'pos') THEN 'offline'
         ELSE 'online' END AS channel,
    o.store_id,
    CASE WHEN LOWER(o.status) = 'cancelled' THEN 'cancelled'
         WHEN LOWER(o.status) = 'refunded' THEN 'refunded' ELSE 'kept' END AS outcome,
    CAST(COALESCE(o.net_amount, o.gross_amount - COALESCE(o.discount_amount, 0), 0) AS DECIMAL(18, 2)) AS amount,
    CASE WHEN NULLIF(TRIM(o.coupon_code), '') IS NOT NULL THEN 1 ELSE 0 END AS used_coupon
  FROM orders AS o {owned('order', 'o', 'order_id')}
  WHERE o.placed_at <= :as_of
)
SELECT owned.*, CASE WHEN h.day IS NULL THEN 0 ELSE 1 END AS on_holiday
FROM owned LEFT JOIN {HOLIDAYS} AS h ON h.day = owned.day
"""

# Order lines of kept orders with the catalogue category, matched by sku, else barcode
# (POS lines carry only the EAN-13), else product_id (an SPU: several SKUs, one category).
ORDER_LINES_SQL = f"""
WITH by_sku AS (SELECT sku, MIN(category) AS category FROM products WHERE sku IS NOT NULL GROUP BY sku),
by_barcode AS (SELECT barcode, MIN(category) AS category FROM products WHERE barcode IS NOT NULL GROUP BY barcode),
by_product AS (SELECT product_id, MIN(category) AS category FROM products GROUP BY product_id)
SELECT f.person_id, f.order_id, i.line_no, f.at,
  COALESCE(s.category, b.category, p.category) AS category,
  CAST(i.unit_price AS DOUBLE) AS price, i.quantity
FROM {ORDER_FACTS} AS f
JOIN order_items AS i ON i.order_id = f.order_id
LEFT JOIN by_sku AS s ON s.sku = i.sku
LEFT JOIN by_barcode AS b ON b.barcode = i.barcode
LEFT JOIN by_product AS p ON p.product_id = i.product_id
WHERE f.outcome = 'kept'
"""

# WeChat follows (with unfollow time), Douyin/Weibo interactions, livestream visits.
SOCIAL_FACTS_SQL = f"""
SELECT rp.person_id, s.record_id, s.kind, s.occurred_at AS at, {_local_day('s.occurred_at')} AS day,
  TRY_CAST(s.attributes->>'$.unfollowed_at' AS TIMESTAMPTZ) AS unfollowed_at
FROM source_records AS s {owned('source_record', 's', 'record_id')}
WHERE s.kind IN ('follow', 'interaction', 'livestream_view')
  AND s.occurred_at IS NOT NULL AND s.occurred_at <= :as_of
"""

# ---- per-person aggregates ------------------------------------------------------------

ACTIVITY_SQL = f"""
WITH seen AS (
  SELECT person_id, at, day FROM {EVENT_FACTS}
  UNION ALL SELECT person_id, at, day FROM {ORDER_FACTS}
  UNION ALL SELECT person_id, at, day FROM {SOCIAL_FACTS}
),
span AS (
  SELECT person_id, MIN(at) AS first_seen_at, MAX(at) AS last_seen_at,
    COUNT(DISTINCT CASE WHEN at > :since_30d THEN day END) AS active_days_30d,
    COUNT(DISTINCT CASE WHEN at > :since_90d THEN day END) AS active_days_90d
  FROM seen GROUP BY person_id
),
counted AS (
  SELECT person_id, COUNT(*) AS events_total,
    COUNT(*) FILTER (WHERE at > :since_90d AND type IN ('page', 'screen')) AS page_views_90d,
    COUNT(*) FILTER (WHERE at > :since_90d AND event = 'Product Viewed') AS product_views_90d,
    COUNT(*) FILTER (WHERE at > :since_90d AND event = 'Product Added') AS cart_adds_90d,
    COUNT(*) FILTER (WHERE at > :since_90d AND event = 'Livestream Viewed') AS livestream_events_90d
  FROM {EVENT_FACTS} GROUP BY person_id
),
gaps AS (
  SELECT person_id, at, LAG(at) OVER (PARTITION BY person_id, stream ORDER BY at, message_id) AS previous_at
  FROM {EVENT_FACTS} WHERE at > :since_90d
),
sessions AS (
  SELECT person_id, SUM(CASE WHEN previous_at IS NULL
      OR EPOCH(at) - EPOCH(previous_at) > {SESSION_GAP_SECONDS} THEN 1 ELSE 0 END) AS sessions_90d
  FROM gaps GROUP BY person_id
),
social AS (
  SELECT person_id,
    COUNT(*) FILTER (WHERE kind = 'livestream_view' AND at > :since_90d) AS livestream_records_90d,
    COUNT(*) FILTER (WHERE kind = 'interaction' AND at > :since_90d) AS social_interactions_90d,
    MAX(CASE WHEN kind = 'follow' AND (unfollowed_at IS NULL OR unfollowed_at > :as_of) THEN 1 ELSE 0 END)
      AS follows
  FROM {SOCIAL_FACTS} GROUP BY person_id
)
SELECT span.*, COALESCE(c.events_total, 0) AS events_total,
  COALESCE(c.page_views_90d, 0) AS page_views_90d, COALESCE(c.product_views_90d, 0) AS product_views_90d,
  COALESCE(c.cart_adds_90d, 0) AS cart_adds_90d, COALESCE(s.sessions_90d, 0) AS sessions_90d,
  COALESCE(c.livestream_events_90d, 0) + COALESCE(so.livestream_records_90d, 0) AS livestream_views_90d,
  COALESCE(so.social_interactions_90d, 0) AS social_interactions_90d,
  COALESCE(so.follows, 0) = 1 AS follows_official_account
FROM span
LEFT JOIN counted AS c ON c.person_id = span.person_id
LEFT JOIN sessions AS s ON s.person_id = span.person_id
LEFT JOIN social AS so ON so.person_id = span.person_id
"""

# Money is summed as DECIMAL and also kept in whole cents (BIGINT), so averages and
# ratios are exact integer arithmetic on both engines (DuckDB divides decimals as doubles).
PURCHASES_SQL = f"""
SELECT person_id,
  COUNT(*) FILTER (WHERE outcome = 'kept') AS orders_total,
  COUNT(*) FILTER (WHERE outcome = 'kept' AND at > :since_365d) AS orders_365d,
  COUNT(*) FILTER (WHERE outcome = 'refunded') AS refunded_orders,
  CAST(COALESCE(SUM(amount) FILTER (WHERE outcome = 'kept'), 0) AS DECIMAL(18, 2)) AS gmv_total,
  CAST(COALESCE(SUM(amount) FILTER (WHERE outcome = 'kept' AND at > :since_365d), 0) AS DECIMAL(18, 2)) AS gmv_365d,
  CAST(COALESCE(SUM(amount * 100) FILTER (WHERE outcome = 'kept'), 0) AS BIGINT) AS gmv_cents,
  MIN(at) FILTER (WHERE outcome = 'kept') AS first_order_at,
  MAX(at) FILTER (WHERE outcome = 'kept') AS last_order_at,
  MAX(day) FILTER (WHERE outcome = 'kept') AS last_order_day,
  COUNT(*) FILTER (WHERE outcome = 'kept' AND channel = 'online') AS online_orders,
  COUNT(*) FILTER (WHERE outcome = 'kept' AND channel = 'offline') AS offline_orders,
  COUNT(*) FILTER (WHERE outcome = 'kept' AND used_coupon = 1) AS coupon_orders,
  COUNT(*) FILTER (WHERE outcome = 'kept' AND on_holiday = 1) AS holiday_orders
FROM {ORDER_FACTS}
WHERE outcome <> 'cancelled'
GROUP BY person_id
"""

# One winner per person and trait among scored candidates: highest weight, then the
# secondary score, then the most recent, then the value's name (so ties are stable).
#   favourite_category: product views 1, cart adds 2, purchased lines 3 each
#   preferred_channel:  orders on the platform (pos, tmall, jd, douyin_shop, web, app,
#                       miniprogram), then distinct days of events on that channel
#   preferred_store_id: offline orders in the store
#   device_type:        events from that device class (ios, android, pc, other)
PICKS_SQL = f"""
WITH candidates AS (
  SELECT person_id, 'favourite_category' AS trait, category AS value,
    SUM(CASE WHEN event = 'Product Added' THEN 2 ELSE 1 END) AS weight, 0 AS secondary, MAX(at) AS last_at
  FROM {EVENT_FACTS} WHERE category IS NOT NULL AND event IN ('Product Viewed', 'Product Added')
  GROUP BY person_id, category
  UNION ALL
  SELECT person_id, 'favourite_category', category, 3 * COUNT(*), 0, MAX(at)
  FROM {ORDER_LINES} WHERE category IS NOT NULL GROUP BY person_id, category
  UNION ALL
  SELECT person_id, 'preferred_channel', platform, COUNT(*), 0, MAX(at)
  FROM {ORDER_FACTS} WHERE outcome <> 'cancelled' AND platform IS NOT NULL GROUP BY person_id, platform
  UNION ALL
  SELECT person_id, 'preferred_channel', channel, 0, COUNT(DISTINCT day), MAX(at)
  FROM {EVENT_FACTS} WHERE channel IN ('web', 'app', 'miniprogram') GROUP BY person_id, channel
  UNION ALL
  SELECT person_id, 'preferred_store_id', store_id, COUNT(*), 0, MAX(at)
  FROM {ORDER_FACTS} WHERE outcome <> 'cancelled' AND channel = 'offline' AND store_id IS NOT NULL
  GROUP BY person_id, store_id
  UNION ALL
  SELECT person_id, 'device_type', device, COUNT(*), 0, MAX(at)
  FROM {EVENT_FACTS} WHERE device IS NOT NULL GROUP BY person_id, device
),
summed AS (
  SELECT person_id, trait, value, SUM(weight) AS weight, SUM(secondary) AS secondary, MAX(last_at) AS last_at
  FROM candidates GROUP BY person_id, trait, value
),
ranked AS (
  SELECT person_id, trait, value, ROW_NUMBER() OVER (
    PARTITION BY person_id, trait ORDER BY weight DESC, secondary DESC, last_at DESC, value) AS pick
  FROM summed
)
SELECT person_id,
  MAX(CASE WHEN trait = 'favourite_category' THEN value END) AS favourite_category,
  MAX(CASE WHEN trait = 'preferred_channel' THEN value END) AS preferred_channel,
  MAX(CASE WHEN trait = 'preferred_store_id' THEN value END) AS preferred_store_id,
  MAX(CASE WHEN trait = 'device_type' THEN value END) AS device_type
FROM ranked WHERE pick = 1
GROUP BY person_id
"""

# Each purchased line (else, for people who never bought, each product viewed) scores
# 0 / 1 / 2 against its category's catalogue price terciles; the person's mean score
# below 2/3 is 'low', above 4/3 'high', else 'mid' (compared in integers: 3·sum vs 2·n).
PRICE_BANDS_SQL = f"""
WITH terciles AS (
  SELECT category, QUANTILE_CONT(CAST(price AS DOUBLE), 0.3333333333333333) AS low_max,
    QUANTILE_CONT(CAST(price AS DOUBLE), 0.6666666666666666) AS high_min
  FROM products WHERE price IS NOT NULL AND category IS NOT NULL GROUP BY category
),
seen AS (
  SELECT person_id, 1 AS priority, category, price FROM {ORDER_LINES} WHERE price IS NOT NULL
  UNION ALL
  SELECT person_id, 2, category, price FROM {EVENT_FACTS}
  WHERE event = 'Product Viewed' AND price IS NOT NULL
),
scored AS (
  SELECT s.person_id, s.priority,
    CASE WHEN s.price <= t.low_max THEN 0 WHEN s.price > t.high_min THEN 2 ELSE 1 END AS score
  FROM seen AS s JOIN terciles AS t ON t.category = s.category
),
basis AS (SELECT person_id, MIN(priority) AS priority FROM scored GROUP BY person_id)
SELECT s.person_id,
  CASE WHEN 3 * SUM(s.score) < 2 * COUNT(*) THEN 'low'
       WHEN 3 * SUM(s.score) > 4 * COUNT(*) THEN 'high' ELSE 'mid' END AS price_band
FROM scored AS s JOIN basis AS b ON b.person_id = s.person_id AND b.priority = s.priority
GROUP BY s.person_id
"""
