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
from dataclasses import dataclass

from sqlglot import exp

from jingzhun.engine import Engine, parse_sql, to_local_time

# A purchase is an order that was not cancelled (a later refund does not undo the
# intent to buy, and refunds are a feature of their own).
PURCHASE = "COALESCE(o.status, '') <> 'cancelled'"

# The records of active persons, each with its person. Every feature at a cut-off T
# counts the records at or before T; ages are in days before T, from whole seconds, so
# both engines agree.
ATTRIBUTED_CTES = f"""
attributed_orders AS (
  SELECT rp.person_id, o.order_id, o.status, o.channel, o.platform, o.coupon_code, o.net_amount,
    CASE WHEN {PURCHASE} THEN 1 ELSE 0 END AS is_purchase, o.placed_at
  FROM orders AS o
  JOIN record_persons AS rp ON rp.record_kind = 'order' AND rp.record_id = o.order_id
  JOIN persons AS p ON p.person_id = rp.person_id AND p.status = 'active'
),
attributed_events AS (
  SELECT rp.person_id, e.type, e.event, e.channel, e.timestamp
  FROM events AS e
  JOIN record_persons AS rp ON rp.record_kind = 'event' AND rp.record_id = e.message_id
  JOIN persons AS p ON p.person_id = rp.person_id AND p.status = 'active'
),
attributed_records AS (
  SELECT rp.person_id, s.kind, s.occurred_at
  FROM source_records AS s
  JOIN record_persons AS rp ON rp.record_kind = 'source_record' AND rp.record_id = s.record_id
  JOIN persons AS p ON p.person_id = rp.person_id AND p.status = 'active'
)
"""

# One category per product, found by product_id, else barcode (POS lines), else sku.
CATALOGUE_CTES = """
category_by_product AS (SELECT product_id, MIN(category) AS category FROM products
  WHERE product_id IS NOT NULL GROUP BY product_id),
category_by_barcode AS (SELECT barcode, MIN(category) AS category FROM products
  WHERE barcode IS NOT NULL GROUP BY barcode),
category_by_sku AS (SELECT sku, MIN(category) AS category FROM products
  WHERE sku IS NOT NULL GROUP BY sku)
"""

# Window sizes (days before T) for the order and behaviour counts.
ORDER_WINDOWS = (30, 90, 365)
EVENT_WINDOWS = (7, 30, 90)
RECORD_WINDOW = 90
# The lower edge of the first cut-off's bucket: before any plausible record.
EARLIEST = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
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


@dataclass(frozen=True)
class _Split:
    """How the features of one kind of record are computed at every cut-off at once.

    Pairing every record with every later cut-off would multiply the rows by the number
    of cut-offs, so the work is split: windowed counts pair each record only with the
    cut-offs less than `window_days` after it; everything else is first summed per
    *bucket* (the records between two cut-offs, each counted once) and then added up
    over the buckets up to each cut-off. Sums, minima and maxima add up exactly; ages
    come from the earliest or latest time (an age falls as the time rises).
    """

    kind: str  # orders | events | records: reads attributed_<kind>
    time: str  # the record's time column
    window_days: int  # the longest window; rows are paired a day further back
    windowed: tuple[str, ...]  # aggregates over `age_days` of the paired rows, "... AS name"
    sums: tuple[tuple[str, str], ...]  # (total, expression per row)
    ages: tuple[tuple[str, str, str], ...]  # (feature, MIN | MAX, time expression per row)

    def ctes(self) -> str:
        return ",\n".join([self._recent(), self._buckets(), self._totals(), self._features()])

    def _recent(self) -> str:
        age = f"CAST(DATE_DIFF('second', a.{self.time}, c.cutoff) AS DOUBLE) / 86400"
        return f"""recent_{self.kind} AS (
  SELECT c.snapshot, a.*, {age} AS age_days
  FROM attributed_{self.kind} AS a
  JOIN cutoffs AS c ON a.{self.time} <= c.cutoff AND a.{self.time} > c.back_{self.window_days + 1}d
),
{self.kind}_windows AS (SELECT snapshot, person_id,
  {", ".join(self.windowed)}
  FROM recent_{self.kind} GROUP BY snapshot, person_id)"""

    def _buckets(self) -> str:
        columns = [f"SUM({expression}) AS {name}" for name, expression in self.sums]
        columns += [f"{agg}({expression}) AS {name}_at" for name, agg, expression in self.ages]
        return f"""{self.kind}_buckets AS (
  SELECT c.snapshot AS bucket, a.person_id, {", ".join(columns)}
  FROM attributed_{self.kind} AS a
  JOIN cutoffs AS c ON a.{self.time} <= c.cutoff AND a.{self.time} > c.previous_cutoff
  GROUP BY c.snapshot, a.person_id)"""

    def _totals(self) -> str:
        columns = [f"SUM(b.{name}) AS {name}" for name, _ in self.sums]
        columns += [f"CAST(DATE_DIFF('second', {agg}(b.{name}_at), c.cutoff) AS DOUBLE) / 86400 AS {name}"
                    for name, agg, _ in self.ages]
        return f"""{self.kind}_totals AS (
  SELECT c.snapshot, b.person_id, {", ".join(columns)}
  FROM {self.kind}_buckets AS b
  JOIN cutoffs AS c ON b.bucket <= c.snapshot
  GROUP BY c.snapshot, c.cutoff, b.person_id)"""

    def _features(self) -> str:
        windowed = ", ".join(f"w.{column.rsplit(' AS ', 1)[1]}" for column in self.windowed)
        return f"""{self.kind}_features AS (
  SELECT t.*, {windowed}
  FROM {self.kind}_totals AS t
  LEFT JOIN {self.kind}_windows AS w ON w.snapshot = t.snapshot AND w.person_id = t.person_id)"""


def _count(condition: str) -> str:
    return f"CASE WHEN {condition} THEN 1 ELSE 0 END"


def _orders() -> _Split:
    """Purchases, spend, refunds, cancellations, coupons and channels."""
    windowed = tuple(f"SUM({_count(f'is_purchase = 1 AND age_days <= {days}')}) AS orders_{days}d"
                     for days in ORDER_WINDOWS)
    windowed += tuple(f"SUM(CASE WHEN is_purchase = 1 AND age_days <= {days} THEN net_amount END) AS gmv_{days}d"
                      for days in ORDER_WINDOWS[1:])
    sums = (("orders_total", "is_purchase"),
            ("gmv_total", "CASE WHEN is_purchase = 1 THEN net_amount END"),
            ("refunds_total", _count("status = 'refunded'")),
            ("cancelled_total", _count("is_purchase = 0")),
            ("coupon_orders", _count("is_purchase = 1 AND coupon_code IS NOT NULL")),
            ("offline_orders", _count("is_purchase = 1 AND channel = 'offline'")),
            ("marketplace_orders", _count("is_purchase = 1 AND platform IN ('tmall', 'jd', 'douyin_shop')")))
    purchased_at = "CASE WHEN is_purchase = 1 THEN placed_at END"
    ages = (("days_since_last_order", "MAX", purchased_at), ("days_since_first_order", "MIN", purchased_at))
    return _Split("orders", "placed_at", max(ORDER_WINDOWS), windowed, sums, ages)


def _events() -> _Split:
    """Counts of events, active days and tracked events per window; totals and channels."""
    windowed = []
    for days in EVENT_WINDOWS:
        within = f"age_days <= {days}"
        windowed.append(f"SUM({_count(within)}) AS events_{days}d")
        windowed.append(
            f"COUNT(DISTINCT CASE WHEN {within} THEN CAST(FLOOR(age_days) AS BIGINT) END) AS active_days_{days}d")
        windowed += [f"SUM({_count(f'{within} AND event = {chr(39)}{name}{chr(39)}')}) AS {stem}_{days}d"
                     for stem, name in TRACKED_EVENTS]
    sums = (("events_total", "1"), ("logins_total", _count("type = 'identify'")),
            ("livestream_views_total", _count("event = 'Livestream Viewed'")),
            *((f"{channel}_events", _count(f"channel = '{channel}'")) for channel in EVENT_CHANNELS))
    ages = (("days_since_last_event", "MAX", "timestamp"), ("days_since_first_event", "MIN", "timestamp"))
    return _Split("events", "timestamp", max(EVENT_WINDOWS), tuple(windowed), sums, ages)


def _records() -> _Split:
    """Social interactions, follows and livestream views from imported records; membership."""
    windowed = tuple(f"SUM({_count(f'kind = {chr(39)}{kind}{chr(39)} AND age_days <= {RECORD_WINDOW}')})"
                     f" AS {kind}s_{RECORD_WINDOW}d" for kind in SOCIAL_KINDS)
    sums = (("member_records", _count("kind = 'member'")),)
    ages = (("days_since_member_signup", "MIN", "CASE WHEN kind = 'member' THEN occurred_at END"),
            ("first_record_age", "MIN", "occurred_at"))
    return _Split("records", "occurred_at", RECORD_WINDOW, windowed, sums, ages)


SPLITS = (_orders(), _events(), _records())


def category_slug(category: str, index: int) -> str:
    """A column-safe name for a product category (its index when not ASCII)."""
    slug = re.sub(r"[^a-z0-9]+", "_", category.lower()).strip("_")
    return slug if slug and slug.isascii() else f"c{index:02d}"


def _category_ctes(categories: Sequence[str]) -> str:
    """Share of spend per category (exact decimal sums, divided once as doubles), from
    purchased lines summed per bucket, category and person (see `_Split`)."""
    columns = ["COUNT(DISTINCT category) AS categories_bought",
               "CAST(SUM(quantity) AS DOUBLE) AS items_total"]
    for index, category in enumerate(categories):
        literal = exp.convert(category).sql(dialect="duckdb")
        columns.append(
            f"CAST(SUM(CASE WHEN category = {literal} THEN amount ELSE 0 END) AS DOUBLE)"
            f" / NULLIF(CAST(SUM(amount) AS DOUBLE), 0) AS category_share_{category_slug(category, index)}"
        )
    return f"""purchased_lines AS (
  SELECT c.snapshot AS bucket, a.person_id, COALESCE(cp.category, cb.category, cs.category) AS category,
    oi.amount, oi.quantity
  FROM attributed_orders AS a
  JOIN cutoffs AS c ON a.placed_at <= c.cutoff AND a.placed_at > c.previous_cutoff
  JOIN order_items AS oi ON oi.order_id = a.order_id
  LEFT JOIN category_by_product AS cp ON cp.product_id = oi.product_id
  LEFT JOIN category_by_barcode AS cb ON cb.barcode = oi.barcode
  LEFT JOIN category_by_sku AS cs ON cs.sku = oi.sku
  WHERE a.is_purchase = 1),
line_buckets AS (
  SELECT bucket, person_id, category, SUM(amount) AS amount, SUM(quantity) AS quantity
  FROM purchased_lines GROUP BY bucket, person_id, category),
category_features AS (
  SELECT c.snapshot, l.person_id,
  {", ".join(columns)}
  FROM line_buckets AS l
  JOIN cutoffs AS c ON l.bucket <= c.snapshot
  GROUP BY c.snapshot, l.person_id)"""


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
    names = ["person_id", *feature_names(categories)]
    return exp.select(*names).from_(snapshot_features_sql([cutoff], categories).subquery("f"))


def snapshot_features_sql(cutoffs: Sequence[dt.datetime], categories: Sequence[str]) -> exp.Expression:
    """`features_sql` at several cut-offs in one query: a row per snapshot and person.

    `snapshot` is the cut-off's position in `cutoffs` (ascending). One query instead of
    one per cut-off: records are attributed to persons (three joins on string keys) once,
    and each record is paired only with the cut-offs that need it (see `_Split`), so eight
    snapshots of the 100,000-person demo cost about two thirds of the CPU of eight
    single-snapshot queries, with the same rows to the bit.
    """
    query = _features_template(tuple(categories)).copy()
    placeholder = next(table for table in query.find_all(exp.Table) if table.name == "snapshot_cutoffs")
    placeholder.replace(cutoffs_values(cutoffs))
    return query


def cutoffs_values(cutoffs: Sequence[dt.datetime]) -> exp.Values:
    """An inline table of the cut-offs (ascending), numbered: snapshot, cutoff, the
    previous cut-off (a bucket's lower edge) and the edges of the windows (back_<n>d)."""
    ordered = [utc_instant(cutoff) for cutoff in cutoffs]
    if ordered != sorted(set(ordered)):
        raise ValueError("cut-offs must be distinct and ascending")
    backs = sorted({split.window_days + 1 for split in SPLITS})
    rows = [(index, cutoff, ordered[index - 1] if index else EARLIEST,
             *(cutoff - dt.timedelta(days=days) for days in backs)) for index, cutoff in enumerate(ordered)]
    return exp.values([tuple(exp.convert(v) for v in row) for row in rows], alias="v",
                      columns=["snapshot", "cutoff", "previous_cutoff", *(f"back_{days}d" for days in backs)])


@functools.lru_cache(maxsize=8)
def _features_template(categories: tuple[str, ...]) -> exp.Expression:
    """The feature query over a placeholder table `snapshot_cutoffs` (parsed once: 15 kB)."""
    # Everyone with a record at or before the cut-off: the union of the per-kind totals.
    population = "population AS (" + " UNION ".join(
        f"SELECT snapshot, person_id FROM {split.kind}_totals" for split in SPLITS) + ")"
    ctes = ",\n".join(["cutoffs AS (SELECT * FROM snapshot_cutoffs)", ATTRIBUTED_CTES.strip(),
                       CATALOGUE_CTES.strip(), *(split.ctes() for split in SPLITS),
                       _category_ctes(categories), population])
    selected = ",\n  ".join(f"CAST({expression} AS DOUBLE) AS {name}"
                            for name, expression in _derived_columns(categories))
    on = "ON {0}.snapshot = x.snapshot AND {0}.person_id = x.person_id"
    sql = f"""WITH {ctes}
SELECT x.snapshot, x.person_id,
  {selected}
FROM population AS x
LEFT JOIN orders_features AS o {on.format("o")}
LEFT JOIN events_features AS e {on.format("e")}
LEFT JOIN records_features AS r {on.format("r")}
LEFT JOIN category_features AS c {on.format("c")}"""
    return parse_sql(sql)


def labels_sql(cutoff: dt.datetime, horizon_days: int) -> exp.Expression:
    """Purchases per active person in the window (cutoff, cutoff + horizon]."""
    names = ["person_id", "purchases"]
    return exp.select(*names).from_(snapshot_labels_sql([cutoff], horizon_days).subquery("l"))


def snapshot_labels_sql(cutoffs: Sequence[dt.datetime], horizon_days: int) -> exp.Expression:
    """`labels_sql` after several cut-offs in one query: snapshot (position in `cutoffs`),
    person_id and purchases in (cutoff, cutoff + horizon]."""
    rows = [(index, utc_instant(cutoff), utc_instant(cutoff) + dt.timedelta(days=horizon_days))
            for index, cutoff in enumerate(cutoffs)]
    windows = exp.values([tuple(exp.convert(v) for v in row) for row in rows], alias="w",
                         columns=["snapshot", "cutoff", "horizon_end"])
    sql = f"""SELECT w.snapshot, rp.person_id, COUNT(*) AS purchases
FROM orders AS o
JOIN record_persons AS rp ON rp.record_kind = 'order' AND rp.record_id = o.order_id
JOIN persons AS p ON p.person_id = rp.person_id AND p.status = 'active'
JOIN label_windows AS w ON o.placed_at > w.cutoff AND o.placed_at <= w.horizon_end
WHERE {PURCHASE}
GROUP BY w.snapshot, rp.person_id"""
    query = parse_sql(sql)
    next(table for table in query.find_all(exp.Table) if table.name == "label_windows").replace(windows)
    return query


SAMPLE_DIGITS = 6  # hex digits of md5 compared: a sampling grain of 1 / 16**6


def sample_threshold(wanted: int, available: int) -> str | None:
    """The md5 prefix below which a row is kept to keep about `wanted` of `available`
    rows; None when every row is kept."""
    if available <= wanted:
        return None
    return format(int(wanted / available * 16**SAMPLE_DIGITS), f"0{SAMPLE_DIGITS}x")


def labelled_rows_sql(features_table: str, labels_table: str, features: Sequence[str],
                      snapshots: Sequence[int], buyers_only: bool, below: str | None) -> exp.Expression:
    """Feature rows of some snapshots with their label (`bought`: a purchase in the
    horizon after the cut-off), ordered by snapshot and person.

    `buyers_only` keeps persons who bought before the cut-off (churn's population).
    `below` samples the rows in the engine: a row is kept when the first hex digits of
    md5(person_id/snapshot) sort below it, which both engines compute alike, so the
    same rows are drawn on DuckDB and Spark and on every run, and Python only ever
    receives the sample.
    """
    if not snapshots:
        raise ValueError("labelled_rows_sql needs at least one snapshot")
    key = "SUBSTR(MD5(CONCAT(f.person_id, '/', CAST(f.snapshot AS VARCHAR))), 1, :digits)"
    sql = f"""SELECT f.snapshot, f.person_id, {", ".join(f"f.{name}" for name in features)},
  CASE WHEN l.person_id IS NULL THEN 0 ELSE 1 END AS bought
FROM {features_table} AS f
LEFT JOIN {labels_table} AS l ON l.snapshot = f.snapshot AND l.person_id = f.person_id
WHERE f.snapshot IN ({", ".join(str(int(s)) for s in snapshots)})
  {"AND f.orders_total > 0" if buyers_only else ""}
  {f"AND {key} < :below" if below is not None else ""}
ORDER BY f.snapshot, f.person_id"""
    return bind(sql, digits=SAMPLE_DIGITS, **({"below": below} if below is not None else {}))


def labelled_count_sql(features_table: str, snapshots: Sequence[int], buyers_only: bool) -> exp.Expression:
    """How many rows `labelled_rows_sql` would return unsampled."""
    return parse_sql(f"""SELECT COUNT(*) AS n FROM {features_table} AS f
WHERE f.snapshot IN ({", ".join(str(int(s)) for s in snapshots)})
  {"AND f.orders_total > 0" if buyers_only else ""}""")


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
