"""Features and labels for the predictive scores, as SQL the engine runs.

Every feature of a person is computed *as of* a cut-off instant T from records at
or before T only (orders, order lines, events and imported source records, each
attributed to its person through `record_persons`); labels come from the window
after T. So a model trained on features at T1 and labels in (T1, T1 + h] is tested
honestly on features at T2 = T1 + h and labels in (T2, T2 + h], and scores everyone
at the latest time with the same query.

The queries are authored in DuckDB's dialect with `:name` placeholders bound as
literals (never formatted text) and render unchanged for Spark. Every feature is
a DOUBLE computed from exact integers and decimals, so both engines return the
same bits (tests/profiles/test_scores.py compares them).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Sequence

from sqlglot import exp

from jingzhun.engine import Engine, parse_sql, to_local_time

# A purchase is an order that was not cancelled (a later refund does not undo the
# intent to buy, and refunds are a feature of their own).
PURCHASE = "COALESCE(o.status, '') <> 'cancelled'"

# The population at T: active persons with any order, event or source record at or
# before T. Ages are in days before T, from whole seconds, so both engines agree.
RECORDS_CTES = f"""
person_orders AS (
  SELECT rp.person_id, o.order_id, o.status, o.channel, o.platform, o.coupon_code,
    o.net_amount, CASE WHEN {PURCHASE} THEN 1 ELSE 0 END AS is_purchase,
    CAST(DATE_DIFF('second', o.placed_at, :cutoff) AS DOUBLE) / 86400 AS age_days
  FROM orders AS o
  JOIN record_persons AS rp ON rp.record_kind = 'order' AND rp.record_id = o.order_id
  JOIN persons AS p ON p.person_id = rp.person_id AND p.status = 'active'
  WHERE o.placed_at <= :cutoff
),
person_events AS (
  SELECT rp.person_id, e.type, e.event, e.channel,
    CAST(DATE_DIFF('second', e.timestamp, :cutoff) AS DOUBLE) / 86400 AS age_days
  FROM events AS e
  JOIN record_persons AS rp ON rp.record_kind = 'event' AND rp.record_id = e.message_id
  JOIN persons AS p ON p.person_id = rp.person_id AND p.status = 'active'
  WHERE e.timestamp <= :cutoff
),
person_records AS (
  SELECT rp.person_id, s.kind,
    CAST(DATE_DIFF('second', s.occurred_at, :cutoff) AS DOUBLE) / 86400 AS age_days
  FROM source_records AS s
  JOIN record_persons AS rp ON rp.record_kind = 'source_record' AND rp.record_id = s.record_id
  JOIN persons AS p ON p.person_id = rp.person_id AND p.status = 'active'
  WHERE s.occurred_at <= :cutoff
)
"""

# One category per product, found by product_id, else barcode (POS lines), else sku.
CATALOGUE_CTES = """
category_by_product AS (SELECT product_id, MIN(category) AS category FROM products
  WHERE product_id IS NOT NULL GROUP BY product_id),
category_by_barcode AS (SELECT barcode, MIN(category) AS category FROM products
  WHERE barcode IS NOT NULL GROUP BY barcode),
category_by_sku AS (SELECT sku, MIN(category) AS category FROM products
  WHERE sku IS NOT NULL GROUP BY sku),
person_lines AS (
  SELECT po.person_id, COALESCE(cp.category, cb.category, cs.category) AS category,
    oi.amount, oi.quantity
  FROM person_orders AS po
  JOIN order_items AS oi ON oi.order_id = po.order_id
  LEFT JOIN category_by_product AS cp ON cp.product_id = oi.product_id
  LEFT JOIN category_by_barcode AS cb ON cb.barcode = oi.barcode
  LEFT JOIN category_by_sku AS cs ON cs.sku = oi.sku
  WHERE po.is_purchase = 1
)
"""

ORDER_FEATURES = """
order_features AS (
  SELECT person_id,
    SUM(is_purchase) AS orders_total,
    SUM(CASE WHEN is_purchase = 1 AND age_days <= 30 THEN 1 ELSE 0 END) AS orders_30d,
    SUM(CASE WHEN is_purchase = 1 AND age_days <= 90 THEN 1 ELSE 0 END) AS orders_90d,
    SUM(CASE WHEN is_purchase = 1 AND age_days <= 365 THEN 1 ELSE 0 END) AS orders_365d,
    MIN(CASE WHEN is_purchase = 1 THEN age_days END) AS days_since_last_order,
    MAX(CASE WHEN is_purchase = 1 THEN age_days END) AS days_since_first_order,
    CAST(SUM(CASE WHEN is_purchase = 1 THEN net_amount END) AS DOUBLE) AS gmv_total,
    CAST(SUM(CASE WHEN is_purchase = 1 AND age_days <= 90 THEN net_amount END) AS DOUBLE) AS gmv_90d,
    CAST(SUM(CASE WHEN is_purchase = 1 AND age_days <= 365 THEN net_amount END) AS DOUBLE) AS gmv_365d,
    SUM(CASE WHEN status = 'refunded' THEN 1 ELSE 0 END) AS refunds_total,
    SUM(CASE WHEN is_purchase = 0 THEN 1 ELSE 0 END) AS cancelled_total,
    SUM(CASE WHEN is_purchase = 1 AND coupon_code IS NOT NULL THEN 1 ELSE 0 END) AS coupon_orders,
    SUM(CASE WHEN is_purchase = 1 AND channel = 'offline' THEN 1 ELSE 0 END) AS offline_orders,
    SUM(CASE WHEN is_purchase = 1 AND platform IN ('tmall', 'jd', 'douyin_shop') THEN 1 ELSE 0 END)
      AS marketplace_orders
  FROM person_orders GROUP BY person_id
)
"""

# Window sizes (days before T) for the behaviour counts.
EVENT_WINDOWS = (7, 30, 90)
# (feature stem, Segment event name) counted in every window.
TRACKED_EVENTS = (
    ("product_views", "Product Viewed"),
    ("cart_adds", "Product Added"),
    ("checkouts", "Checkout Started"),
    ("coupons_applied", "Coupon Applied"),
    ("searches", "Products Searched"),
)
EVENT_CHANNELS = ("app", "web", "miniprogram")
SOCIAL_KINDS = ("interaction", "follow", "livestream_view")


def _event_columns() -> str:
    """Counts of events, active days and tracked events per window; channel shares."""
    columns = []
    for days in EVENT_WINDOWS:
        within = f"age_days <= {days}"
        columns.append(f"SUM(CASE WHEN {within} THEN 1 ELSE 0 END) AS events_{days}d")
        columns.append(
            f"COUNT(DISTINCT CASE WHEN {within} THEN CAST(FLOOR(age_days) AS BIGINT) END) AS active_days_{days}d"
        )
        for stem, name in TRACKED_EVENTS:
            columns.append(f"SUM(CASE WHEN {within} AND event = '{name}' THEN 1 ELSE 0 END) AS {stem}_{days}d")
    columns.append("SUM(CASE WHEN type = 'identify' THEN 1 ELSE 0 END) AS logins_total")
    columns.append("SUM(CASE WHEN event = 'Livestream Viewed' THEN 1 ELSE 0 END) AS livestream_views_total")
    columns.append("MIN(age_days) AS days_since_last_event")
    columns.append("MAX(age_days) AS days_since_first_event")
    columns.append("COUNT(*) AS events_total")
    for channel in EVENT_CHANNELS:
        columns.append(f"SUM(CASE WHEN channel = '{channel}' THEN 1 ELSE 0 END) AS {channel}_events")
    return "event_features AS (SELECT person_id,\n  " + ",\n  ".join(columns) + "\nFROM person_events GROUP BY person_id)"


def _record_columns() -> str:
    """Social interactions, follows and livestream views from imported records; membership."""
    columns = [
        f"SUM(CASE WHEN kind = '{kind}' AND age_days <= 90 THEN 1 ELSE 0 END) AS {kind}s_90d"
        for kind in SOCIAL_KINDS
    ]
    columns.append("SUM(CASE WHEN kind = 'member' THEN 1 ELSE 0 END) AS member_records")
    columns.append("MAX(CASE WHEN kind = 'member' THEN age_days END) AS days_since_member_signup")
    return "record_features AS (SELECT person_id,\n  " + ",\n  ".join(columns) + "\nFROM person_records GROUP BY person_id)"


def category_slug(category: str, index: int) -> str:
    """A column-safe name for a product category (its index when not ASCII)."""
    slug = re.sub(r"[^a-z0-9]+", "_", category.lower()).strip("_")
    return slug if slug and slug.isascii() else f"c{index:02d}"


def _category_columns(categories: Sequence[str]) -> str:
    """Share of spend per category (exact decimal sums, divided once as doubles)."""
    columns = ["COUNT(DISTINCT category) AS categories_bought",
               "CAST(SUM(quantity) AS DOUBLE) AS items_total"]
    for index, category in enumerate(categories):
        literal = exp.convert(category).sql(dialect="duckdb")
        columns.append(
            f"CAST(SUM(CASE WHEN category = {literal} THEN amount ELSE 0 END) AS DOUBLE)"
            f" / NULLIF(CAST(SUM(amount) AS DOUBLE), 0) AS category_share_{category_slug(category, index)}"
        )
    return "category_features AS (SELECT person_id,\n  " + ",\n  ".join(columns) + "\nFROM person_lines GROUP BY person_id)"


def _ratio(numerator: str, denominator: str) -> str:
    return f"CAST({numerator} AS DOUBLE) / NULLIF(CAST({denominator} AS DOUBLE), 0)"


def _derived_columns(categories: Sequence[str]) -> list[tuple[str, str]]:
    """(name, expression) of every feature in the final select, in a fixed order."""
    counts = ["orders_total", "orders_30d", "orders_90d", "orders_365d", "refunds_total",
              "cancelled_total", "coupon_orders"]
    columns = [(name, f"COALESCE(o.{name}, 0)") for name in counts]
    columns += [(name, f"o.{name}") for name in ("days_since_last_order", "days_since_first_order")]
    columns += [(name, f"COALESCE(o.{name}, 0)") for name in ("gmv_total", "gmv_90d", "gmv_365d")]
    columns += [
        ("aov", _ratio("o.gmv_total", "o.orders_total")),
        ("refund_rate", _ratio("o.refunds_total", "o.orders_total")),
        ("coupon_order_share", _ratio("o.coupon_orders", "o.orders_total")),
        ("offline_order_share", _ratio("o.offline_orders", "o.orders_total")),
        ("marketplace_order_share", _ratio("o.marketplace_orders", "o.orders_total")),
        ("days_between_orders", _ratio("o.days_since_first_order - o.days_since_last_order", "o.orders_total - 1")),
    ]
    event_counts = [f"{stem}_{days}d" for days in EVENT_WINDOWS for stem in
                    ("events", "active_days", *(s for s, _ in TRACKED_EVENTS))]
    event_counts += ["logins_total", "livestream_views_total", "events_total"]
    columns += [(name, f"COALESCE(e.{name}, 0)") for name in event_counts]
    columns += [(name, f"e.{name}") for name in ("days_since_last_event", "days_since_first_event")]
    columns += [(f"{channel}_event_share", _ratio(f"e.{channel}_events", "e.events_total"))
                for channel in EVENT_CHANNELS]
    columns.append(("cart_adds_per_view_90d", _ratio("e.cart_adds_90d", "e.product_views_90d")))
    columns += [(f"{kind}s_90d", f"COALESCE(r.{kind}s_90d, 0)") for kind in SOCIAL_KINDS]
    columns.append(("is_member", "CASE WHEN COALESCE(r.member_records, 0) > 0 THEN 1 ELSE 0 END"))
    columns.append(("days_since_member_signup", "r.days_since_member_signup"))
    columns += [("categories_bought", "COALESCE(c.categories_bought, 0)"),
                ("items_total", "COALESCE(c.items_total, 0)")]
    columns += [(f"category_share_{category_slug(category, index)}", f"c.category_share_{category_slug(category, index)}")
                for index, category in enumerate(categories)]
    columns.append(("tenure_days", "GREATEST(COALESCE(o.days_since_first_order, 0), "
                                   "COALESCE(e.days_since_first_event, 0), COALESCE(r.first_record_age, 0))"))
    return columns


def feature_names(categories: Sequence[str]) -> list[str]:
    """The model's feature columns, in the order the feature query returns them."""
    return [name for name, _ in _derived_columns(categories)]


def features_sql(cutoff: dt.datetime, categories: Sequence[str]) -> exp.Expression:
    """One row per active person known at `cutoff`: person_id and every feature as DOUBLE.

    Example:
        >>> sql = features_sql(dt.datetime(2026, 1, 1, tzinfo=dt.UTC), ["home"])
        >>> "category_share_home" in sql.sql(dialect="duckdb")
        True
    """
    # Parsed once per category list: a run computes eight snapshots of this 12 kB query.
    template = _features_template(tuple(categories))
    return exp.replace_placeholders(template.copy(), cutoff=exp.convert(utc_instant(cutoff)))


@functools.lru_cache(maxsize=8)
def _features_template(categories: tuple[str, ...]) -> exp.Expression:
    """The feature query with its `:cutoff` placeholders unbound."""
    population = (
        "population AS (SELECT person_id FROM person_orders UNION SELECT person_id FROM person_events"
        " UNION SELECT person_id FROM person_records),\n"
        "record_ages AS (SELECT person_id, MAX(age_days) AS first_record_age FROM person_records GROUP BY person_id)"
    )
    ctes = ",\n".join([RECORDS_CTES.strip(), CATALOGUE_CTES.strip(), ORDER_FEATURES.strip(),
                       _event_columns(), _record_columns(), _category_columns(categories), population])
    selected = ",\n  ".join(f"CAST({expression} AS DOUBLE) AS {name}"
                            for name, expression in _derived_columns(categories))
    sql = f"""WITH {ctes}
SELECT x.person_id,
  {selected}
FROM population AS x
LEFT JOIN order_features AS o ON o.person_id = x.person_id
LEFT JOIN event_features AS e ON e.person_id = x.person_id
LEFT JOIN (SELECT f.*, a.first_record_age FROM record_features AS f
           JOIN record_ages AS a ON a.person_id = f.person_id) AS r ON r.person_id = x.person_id
LEFT JOIN category_features AS c ON c.person_id = x.person_id"""
    return parse_sql(sql)


def labels_sql(cutoff: dt.datetime, horizon_days: int) -> exp.Expression:
    """Purchases per active person in the window (cutoff, cutoff + horizon]."""
    sql = f"""SELECT rp.person_id, COUNT(*) AS purchases
FROM orders AS o
JOIN record_persons AS rp ON rp.record_kind = 'order' AND rp.record_id = o.order_id
JOIN persons AS p ON p.person_id = rp.person_id AND p.status = 'active'
WHERE o.placed_at > :cutoff AND o.placed_at <= :horizon_end AND {PURCHASE}
GROUP BY rp.person_id"""
    cutoff = utc_instant(cutoff)
    return bind(sql, cutoff=cutoff, horizon_end=cutoff + dt.timedelta(days=horizon_days))


def rfm_summary_sql(as_of: dt.datetime, timezone: str = "UTC") -> exp.Expression:
    """The RFM summary BG/NBD and Gamma-Gamma need, per buyer, in local calendar days.

    frequency = purchase days after the first (repeat purchases), recency_days = first
    to last purchase day, t_days = first purchase day to the as-of day, monetary = mean
    value of a repeat purchase day (NULL without repeats). Cancelled and refunded
    orders are not purchases here: CLV counts the money that stayed.
    """
    day = exp.cast(to_local_time(exp.column("placed_at", table="o"), timezone), "DATE")
    as_of = utc_instant(as_of)
    as_of_day = exp.cast(to_local_time(exp.convert(as_of), timezone), "DATE")
    sql = """WITH purchase_days AS (
  SELECT rp.person_id, :day AS day, SUM(o.net_amount) AS amount
  FROM orders AS o
  JOIN record_persons AS rp ON rp.record_kind = 'order' AND rp.record_id = o.order_id
  JOIN persons AS p ON p.person_id = rp.person_id AND p.status = 'active'
  WHERE o.placed_at <= :as_of AND COALESCE(o.status, '') NOT IN ('cancelled', 'refunded')
  GROUP BY rp.person_id, :day
),
marked AS (SELECT person_id, day, amount, MIN(day) OVER (PARTITION BY person_id) AS first_day
  FROM purchase_days)
SELECT person_id, CAST(COUNT(*) - 1 AS BIGINT) AS frequency,
  CAST(DATE_DIFF('day', MIN(day), MAX(day)) AS DOUBLE) AS recency_days,
  CAST(DATE_DIFF('day', MIN(day), :as_of_day) AS DOUBLE) AS t_days,
  CAST(SUM(CASE WHEN day > first_day THEN amount END) AS DOUBLE) / NULLIF(COUNT(*) - 1, 0) AS monetary
FROM marked GROUP BY person_id"""
    return exp.replace_placeholders(parse_sql(sql), day=day, as_of=exp.convert(as_of),
                                    as_of_day=as_of_day)


def latest_record_sql() -> exp.Expression:
    """The latest order or event time: the default as-of instant."""
    return parse_sql("SELECT MAX(at) AS latest FROM (SELECT MAX(placed_at) AS at FROM orders "
                     "UNION ALL SELECT MAX(timestamp) AS at FROM events) AS t")


def product_categories(engine: Engine, limit: int = 12) -> list[str]:
    """The catalogue's categories (the most common first), one share feature each."""
    rows = engine.query(parse_sql(
        "SELECT category, COUNT(*) AS n FROM products WHERE category IS NOT NULL "
        f"GROUP BY category ORDER BY n DESC, category LIMIT {int(limit)}"))
    return sorted(rows.column("category").to_pylist())


def bind(sql: str, **values: object) -> exp.Expression:
    """Parse DuckDB-dialect SQL and bind `:name` placeholders as literals (never as text)."""
    return exp.replace_placeholders(parse_sql(sql), **{k: exp.convert(v) for k, v in values.items()})


def utc_instant(instant: dt.datetime) -> dt.datetime:
    """`instant` in UTC (naive means UTC)."""
    return instant.replace(tzinfo=dt.UTC) if instant.tzinfo is None else instant.astimezone(dt.UTC)
