"""The stock ledger: stock on hand, daily stock levels, stock-outs and count reconciliation.

Everything is SQL over the canonical `inventory_movements`, `stock_counts` and
`products` tables, authored in DuckDB's dialect and run by the engine on DuckDB or
Spark; each result is materialized under an `inventory_…` name with its SQL kept
beside it (`TableHandle.sql`), so every stock figure can be traced and rerun.

Sign convention (how a movement changes the stock of its location):

* `in`: `+ABS(quantity)`; `out`: `-ABS(quantity)` — the type carries the direction,
  so a file that stores outbound quantities as positive numbers or as negative ones
  gives the same ledger;
* `adjust`: `quantity` as signed (盘盈 +, 盘亏 −);
* `transfer`: `quantity` signed by the location of the row — a transfer is two rows
  sharing a reference, `−n` at the sending location and `+n` at the receiving one;
* any other type: 0 (and reported by `compute_inventory_findings`).

An item is a SKU (the catalogue has one row per SKU; shades and sizes may share a
product_id), keyed by `item_key`: the catalogue SKU found by barcode, else by sku,
else by product_id plus the barcode's first 12 digits, else by a single-SKU
product_id; failing all, the row's own sku, barcode or product_id. So a barcode
with a wrong check digit still lands on the right SKU.
"""

from __future__ import annotations

import datetime as dt

from sqlglot import exp

from jingzhun.engine import Engine, TableHandle, parse_sql, to_local_time

DEFAULT_TIMEZONE = "Asia/Shanghai"
LINES = "inventory_ledger_lines"
ON_HAND = "inventory_stock_on_hand"
DAILY = "inventory_daily_stock"
STOCKOUTS = "inventory_stockouts"
RECONCILIATION = "inventory_reconciliation"

# The catalogue has one row per SKU (several SKUs, e.g. shades or sizes, may share a
# product_id). An item is resolved to its SKU by barcode, else by sku, else by
# product_id and the barcode's first 12 digits (a wrong check digit), else by a
# product_id that has a single SKU. One row per key, so duplicates cannot fan out.
CATALOGUE_CTES = """
skus AS (SELECT sku, MIN(product_id) AS product_id, MIN(barcode) AS barcode, MIN(cost) AS cost
         FROM products WHERE sku IS NOT NULL GROUP BY sku),
by_barcode AS (SELECT barcode, MIN(sku) AS sku FROM products
               WHERE barcode IS NOT NULL AND sku IS NOT NULL GROUP BY barcode),
by_prefix AS (SELECT product_id, SUBSTRING(barcode, 1, 12) AS prefix, MIN(sku) AS sku
              FROM products WHERE barcode IS NOT NULL AND sku IS NOT NULL
              GROUP BY product_id, SUBSTRING(barcode, 1, 12) HAVING COUNT(DISTINCT sku) = 1),
by_product AS (SELECT product_id, MIN(sku) AS sku FROM products WHERE sku IS NOT NULL
               GROUP BY product_id HAVING COUNT(DISTINCT sku) = 1)
"""

RESOLVE_SQL = """
SELECT r.*, COALESCE(b.sku, s.sku, x.sku, p.sku) AS resolved_sku
FROM ({source}) AS r
LEFT JOIN by_barcode AS b ON r.barcode = b.barcode
LEFT JOIN skus AS s ON r.sku = s.sku
LEFT JOIN by_prefix AS x ON r.product_id = x.product_id AND SUBSTRING(r.barcode, 1, 12) = x.prefix
LEFT JOIN by_product AS p ON r.product_id = p.product_id
"""

# The item key: the catalogue SKU, else whatever identifies the item in the row.
ITEM_KEY = "COALESCE(c.sku, r.sku, r.barcode, r.product_id)"

LINES_SQL = f"""
WITH {CATALOGUE_CTES},
resolved AS ({RESOLVE_SQL.format(source="SELECT * FROM inventory_movements")})
SELECT r.movement_id, r.occurred_at, CAST(:local_time AS DATE) AS day, r.location_id,
  {ITEM_KEY} AS item_key, COALESCE(c.product_id, r.product_id) AS product_id,
  COALESCE(c.sku, r.sku) AS sku, COALESCE(c.barcode, r.barcode) AS barcode,
  r.barcode AS raw_barcode, r.movement_type, r.quantity,
  CASE r.movement_type WHEN 'in' THEN ABS(r.quantity) WHEN 'out' THEN -ABS(r.quantity)
    WHEN 'adjust' THEN r.quantity WHEN 'transfer' THEN r.quantity ELSE 0 END AS signed_qty,
  r.reason, r.reference
FROM resolved AS r LEFT JOIN skus AS c ON r.resolved_sku = c.sku
"""

ON_HAND_SQL = """
SELECT location_id, item_key, MAX(product_id) AS product_id, MAX(sku) AS sku,
  MAX(barcode) AS barcode, CAST(SUM(signed_qty) AS BIGINT) AS on_hand,
  COUNT(*) AS movements, MAX(occurred_at) AS last_movement_at, :as_of AS as_of
FROM {lines} WHERE occurred_at <= :as_of
GROUP BY location_id, item_key
"""

# Change points: one row per item x location x day with movements, the closing stock
# that day, and the next day with movements (the stock holds until then).
CHANGES_CTE = """
daily AS (
  SELECT location_id, item_key, MAX(product_id) AS product_id, MAX(sku) AS sku,
    MAX(barcode) AS barcode, day, CAST(SUM(signed_qty) AS BIGINT) AS net_change
  FROM {lines} WHERE day <= :until GROUP BY location_id, item_key, day
),
changes AS (
  SELECT *, CAST(SUM(net_change) OVER (PARTITION BY location_id, item_key ORDER BY day
      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS BIGINT) AS closing_stock,
    COALESCE(LEAD(day) OVER (PARTITION BY location_id, item_key ORDER BY day) - 1, :until)
      AS held_until
  FROM daily
)
"""

DAILY_SQL = f"""
WITH {CHANGES_CTE}
SELECT c.location_id, c.item_key, c.product_id, c.sku, c.barcode, CAST(d.day AS DATE) AS day,
  CASE WHEN CAST(d.day AS DATE) = c.day THEN c.net_change ELSE 0 END AS net_change,
  c.closing_stock, c.closing_stock <= 0 AS stocked_out
FROM changes AS c
CROSS JOIN UNNEST(GENERATE_SERIES(c.day, c.held_until, INTERVAL 1 DAY)) AS d(day)
"""

STOCKOUTS_SQL = f"""
WITH {CHANGES_CTE},
flagged AS (
  SELECT *, closing_stock <= 0 AS is_out,
    LAG(closing_stock) OVER (PARTITION BY location_id, item_key ORDER BY day) AS previous_stock
  FROM changes
),
spells AS (
  SELECT *, SUM(CASE WHEN is_out AND COALESCE(previous_stock, 1) > 0 THEN 1 ELSE 0 END)
    OVER (PARTITION BY location_id, item_key ORDER BY day
          ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS spell
  FROM flagged
)
SELECT location_id, item_key, MAX(product_id) AS product_id, MAX(sku) AS sku,
  MAX(barcode) AS barcode, MIN(day) AS first_day, MAX(held_until) AS last_day,
  DATE_DIFF('day', MIN(day), MAX(held_until)) + 1 AS days,
  MIN(closing_stock) AS lowest_stock, MAX(held_until) = :until AS ongoing
FROM spells WHERE is_out
GROUP BY location_id, item_key, spell
"""

# Each count joins the movement stream as a zero-quantity row sorted after every
# movement at the same instant, so its running sum is the ledger "up to counted_at".
RECONCILIATION_SQL = f"""
WITH {CATALOGUE_CTES},
resolved AS ({RESOLVE_SQL.format(source="SELECT *, CAST(NULL AS VARCHAR) AS sku FROM stock_counts")}),
counts AS (
  SELECT r.*, {ITEM_KEY} AS item_key, COALESCE(c.product_id, r.product_id) AS resolved_id
  FROM resolved AS r LEFT JOIN skus AS c ON r.resolved_sku = c.sku
),
stream AS (
  SELECT location_id, item_key, occurred_at AS at, 0 AS is_count, signed_qty AS qty,
    CAST(NULL AS VARCHAR) AS product_id, CAST(NULL AS VARCHAR) AS barcode,
    CAST(NULL AS VARCHAR) AS sku,
    CAST(NULL AS INTEGER) AS counted_qty, CAST(NULL AS INTEGER) AS system_qty
  FROM {{lines}}
  UNION ALL
  SELECT location_id, item_key, counted_at, 1, 0, resolved_id, barcode, resolved_sku, counted_qty, system_qty
  FROM counts
),
balances AS (
  SELECT *, CAST(SUM(qty) OVER (PARTITION BY location_id, item_key ORDER BY at, is_count
      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS BIGINT) AS ledger_qty
  FROM stream
)
SELECT b.location_id, b.product_id, b.sku, b.barcode, b.at AS counted_at, b.counted_qty,
  b.system_qty, b.ledger_qty, b.counted_qty - b.ledger_qty AS difference,
  c.cost AS unit_cost, (b.counted_qty - b.ledger_qty) * c.cost AS value_at_cost,
  CASE WHEN b.counted_qty IS NULL THEN 'uncounted' WHEN b.counted_qty = b.ledger_qty THEN 'match'
       WHEN b.counted_qty > b.ledger_qty THEN 'over' ELSE 'short' END AS status,
  b.counted_qty - b.system_qty AS system_difference,
  b.ledger_qty = b.system_qty AS ledger_matches_system
FROM balances AS b LEFT JOIN skus AS c ON b.sku = c.sku
WHERE b.is_count = 1
"""


def bind(sql: str, **values: object) -> exp.Expression:
    """Parse DuckDB-dialect SQL and bind `:name` placeholders as literals (never as text)."""
    return exp.replace_placeholders(parse_sql(sql), **{k: exp.convert(v) for k, v in values.items()})


def utc_instant(instant: dt.datetime | None) -> dt.datetime:
    """`instant` in UTC (naive means UTC); now when None, fixed once so engines agree."""
    if instant is None:
        return dt.datetime.now(dt.UTC).replace(microsecond=0)
    return instant.replace(tzinfo=dt.UTC) if instant.tzinfo is None else instant.astimezone(dt.UTC)


def ledger_lines_sql(timezone: str = DEFAULT_TIMEZONE) -> exp.Expression:
    """The SELECT behind `compute_ledger_lines` (no engine needed).

    Example:
        >>> "ABS(r.quantity)" in ledger_lines_sql("UTC").sql(dialect="duckdb")
        True
    """
    local = to_local_time(exp.column("occurred_at", table="r"), timezone)
    return exp.replace_placeholders(parse_sql(LINES_SQL), local_time=local)


def stock_on_hand_sql(lines: str, as_of: dt.datetime) -> exp.Expression:
    """The SELECT behind `compute_stock_on_hand`, over the ledger lines table `lines`."""
    return bind(ON_HAND_SQL.format(lines=lines), as_of=utc_instant(as_of))


def daily_stock_sql(lines: str, until: dt.date) -> exp.Expression:
    """The SELECT behind `compute_daily_stock`, over the ledger lines table `lines`."""
    return bind(DAILY_SQL.format(lines=lines), until=until)


def stockouts_sql(lines: str, until: dt.date) -> exp.Expression:
    """The SELECT behind `compute_stockouts`, over the ledger lines table `lines`."""
    return bind(STOCKOUTS_SQL.format(lines=lines), until=until)


def reconciliation_sql(lines: str) -> exp.Expression:
    """The SELECT behind `compute_reconciliation`, over the ledger lines table `lines`."""
    return parse_sql(RECONCILIATION_SQL.format(lines=lines))


def compute_ledger_lines(engine: Engine, timezone: str = DEFAULT_TIMEZONE) -> TableHandle:
    """Every movement with its item key, catalogue identifiers, local day and signed quantity.

    The base of every other inventory table: the sign convention and the SKU
    resolution live here once. `day` is the local calendar day in `timezone`
    (stores close their day in local time).

    Returns `inventory_ledger_lines`: movement_id, occurred_at, day, location_id,
    item_key, product_id, sku, barcode, raw_barcode, movement_type, quantity,
    signed_qty, reason, reference.
    """
    return engine.materialize(LINES, ledger_lines_sql(timezone))


def lines_table(engine: Engine, lines: TableHandle | None, timezone: str) -> str:
    """The ledger lines to read: the given handle, or freshly computed in `timezone`.

    A given handle keeps the time zone it was computed in (`timezone` is then unused).
    """
    return (lines or compute_ledger_lines(engine, timezone)).logical_name


def compute_stock_on_hand(
    engine: Engine,
    as_of: dt.datetime | None = None,
    *,
    lines: TableHandle | None = None,
    timezone: str = DEFAULT_TIMEZONE,
) -> TableHandle:
    """Stock on hand per item x location at `as_of` (default now), movements up to it included.

    Args:
        as_of: the instant (UTC if naive); movements at exactly `as_of` count.
        lines: an existing `compute_ledger_lines` result to reuse.

    Returns `inventory_stock_on_hand`: location_id, item_key, product_id, sku, barcode,
    on_hand, movements, last_movement_at, as_of.
    """
    source = lines_table(engine, lines, timezone)
    return engine.materialize(ON_HAND, stock_on_hand_sql(source, utc_instant(as_of)))


def _until(engine: Engine, source: str, until: dt.date | None) -> dt.date:
    """The last day of the series: `until`, or the day of the latest movement."""
    if until is not None:
        return until
    latest = engine.query(f"SELECT MAX(day) AS day FROM {source}").column("day")[0].as_py()
    return latest or dt.date.today()


def compute_daily_stock(
    engine: Engine,
    until: dt.date | None = None,
    *,
    lines: TableHandle | None = None,
    timezone: str = DEFAULT_TIMEZONE,
) -> TableHandle:
    """Closing stock per item x location x local day, every day from its first movement.

    Days without movements repeat the previous closing stock, so a stock-out shows
    as a run of days with `stocked_out`, not as a gap.

    Returns `inventory_daily_stock`: location_id, item_key, product_id, sku, barcode,
    day, net_change, closing_stock, stocked_out (closing_stock <= 0).
    """
    source = lines_table(engine, lines, timezone)
    return engine.materialize(DAILY, daily_stock_sql(source, _until(engine, source, until)))


def compute_stockouts(
    engine: Engine,
    until: dt.date | None = None,
    *,
    lines: TableHandle | None = None,
    timezone: str = DEFAULT_TIMEZONE,
) -> TableHandle:
    """Stock-out spells: runs of consecutive days closing with stock <= 0.

    Computed from the days with movements (not the dense daily series), so it stays
    cheap on long histories.

    Returns `inventory_stockouts`: location_id, item_key, product_id, sku, barcode,
    first_day, last_day, days, lowest_stock, ongoing (still out on `until`).
    """
    source = lines_table(engine, lines, timezone)
    return engine.materialize(STOCKOUTS, stockouts_sql(source, _until(engine, source, until)))


def compute_reconciliation(
    engine: Engine, *, lines: TableHandle | None = None, timezone: str = DEFAULT_TIMEZONE
) -> TableHandle:
    """Each cycle-count line against the ledger's stock at `counted_at`.

    `difference` = counted − ledger (status `over` / `short` / `match`, or
    `uncounted` when the sheet has no counted quantity), valued at the catalogue
    cost; `system_difference` compares with the count sheet's own `system_qty`, and
    `ledger_matches_system` says whether our ledger and the sheet's system agree
    (they should: a mismatch is a missing, extra or mis-keyed movement).

    Returns `inventory_reconciliation`: location_id, product_id, sku, barcode,
    counted_at, counted_qty, system_qty, ledger_qty, difference, unit_cost,
    value_at_cost, status, system_difference, ledger_matches_system.
    """
    source = lines_table(engine, lines, timezone)
    return engine.materialize(RECONCILIATION, reconciliation_sql(source))
