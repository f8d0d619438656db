"""Stock data-quality checks: one table of findings a person can act on.

Each check is one SELECT over the ledger lines (see `collect/inventory.py` for the
sign convention), the counts and the catalogue, all producing the same columns:
check, severity, location_id, product_id, barcode, detail, evidence_count. They
are unioned and materialized as `inventory_findings`.

`evidence_count` is what backs the finding, per check: stale_stock — days since the
last movement; negative_stock — movements that left the balance below zero;
invalid_barcode / unknown_barcode / unknown_movement_type / count_unknown_location —
rows carrying the problem; duplicate_movement_id — rows sharing the id;
duplicate_movement — 2 (the row and the one it repeats).
"""

from __future__ import annotations

import datetime as dt

from sqlglot import exp

from jingzhun.collect.inventory import DEFAULT_TIMEZONE, bind, lines_table, utc_instant
from jingzhun.engine import Engine, TableHandle

FINDINGS = "inventory_findings"

STALE_SQL = """
SELECT 'stale_stock' AS check, 'warning' AS severity, location_id, MAX(product_id) AS product_id,
  MAX(barcode) AS barcode,
  'on hand ' || CAST(SUM(signed_qty) AS VARCHAR) || ', no movement since '
    || STRFTIME(MAX(occurred_at), '%Y-%m-%d') AS detail,
  DATE_DIFF('day', MAX(occurred_at), :as_of) AS evidence_count
FROM {lines} WHERE occurred_at <= :as_of
GROUP BY location_id, item_key
HAVING SUM(signed_qty) > 0 AND DATE_DIFF('day', MAX(occurred_at), :as_of) >= :stale_days
"""

# RANGE frame: movements at the same instant are applied together, so the order of
# rows sharing a timestamp (arbitrary on either engine) cannot fake a dip below zero.
NEGATIVE_SQL = """
WITH running AS (
  SELECT *, SUM(signed_qty) OVER (PARTITION BY location_id, item_key ORDER BY occurred_at
      RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS balance
  FROM {lines}
)
SELECT 'negative_stock' AS check, 'error' AS severity, location_id, MAX(product_id) AS product_id,
  MAX(barcode) AS barcode,
  'stock fell to ' || CAST(MIN(balance) AS VARCHAR) || ', first below zero at '
    || STRFTIME(MIN(occurred_at), '%Y-%m-%d %H:%M:%S') || ' UTC' AS detail,
  COUNT(*) AS evidence_count
FROM running WHERE balance < 0
GROUP BY location_id, item_key
"""

BARCODE_SQL = """
WITH seen AS (
  SELECT 'inventory_movements' AS source, location_id, product_id, raw_barcode AS barcode
  FROM {lines} WHERE raw_barcode IS NOT NULL
  UNION ALL
  SELECT 'stock_counts', location_id, product_id, barcode FROM stock_counts
  WHERE barcode IS NOT NULL
),
judged AS (
  SELECT *, REGEXP_MATCHES(barcode, '^[0-9]{{13}}$') AS well_formed,
    CASE WHEN REGEXP_MATCHES(barcode, '^[0-9]{{13}}$') THEN {expected} END AS expected_digit
  FROM seen
),
known AS (SELECT DISTINCT barcode FROM products WHERE barcode IS NOT NULL)
SELECT CASE WHEN j.well_formed AND j.expected_digit = {actual} THEN 'unknown_barcode'
         ELSE 'invalid_barcode' END AS check,
  CASE WHEN j.well_formed AND j.expected_digit = {actual} THEN 'warning' ELSE 'error' END AS severity,
  j.location_id, MAX(j.product_id) AS product_id, j.barcode,
  CASE WHEN NOT j.well_formed THEN 'not 13 digits'
       WHEN j.expected_digit <> {actual} THEN 'EAN-13 check digit should be '
         || CAST(MAX(j.expected_digit) AS VARCHAR)
       ELSE 'not in products' END || ' (' || j.source || ')' AS detail,
  COUNT(*) AS evidence_count
FROM judged AS j LEFT JOIN known AS k ON j.barcode = k.barcode
WHERE k.barcode IS NULL
GROUP BY j.source, j.location_id, j.barcode, j.well_formed, j.expected_digit
"""

DUPLICATE_ID_SQL = """
SELECT 'duplicate_movement_id' AS check, 'error' AS severity, MIN(location_id) AS location_id,
  MAX(product_id) AS product_id, MAX(barcode) AS barcode,
  'movement_id ' || movement_id || ' appears ' || CAST(COUNT(*) AS VARCHAR) || ' times' AS detail,
  COUNT(*) AS evidence_count
FROM {lines} GROUP BY movement_id HAVING COUNT(*) > 1
"""

# The previous movement with the same location, barcode, type, quantity and reference
# (NULLs compare equal in PARTITION BY on both engines, unlike in a join).
DUPLICATE_SQL = """
WITH paired AS (
  SELECT *, LAG(movement_id) OVER w AS previous_id, LAG(occurred_at) OVER w AS previous_at
  FROM {lines}
  WINDOW w AS (PARTITION BY location_id, raw_barcode, movement_type, quantity, reference
               ORDER BY occurred_at, movement_id)
)
SELECT 'duplicate_movement' AS check, 'warning' AS severity, location_id, product_id, barcode,
  'movement ' || movement_id || ' repeats ' || previous_id || ' '
    || CAST(CAST(EPOCH(occurred_at) - EPOCH(previous_at) AS BIGINT) AS VARCHAR)
    || ' s later' AS detail,
  2 AS evidence_count
FROM paired
WHERE previous_id <> movement_id AND EPOCH(occurred_at) - EPOCH(previous_at) <= :window_seconds
"""

MOVEMENT_TYPE_SQL = """
SELECT 'unknown_movement_type' AS check, 'error' AS severity, location_id,
  CAST(NULL AS VARCHAR) AS product_id, CAST(NULL AS VARCHAR) AS barcode,
  'movement_type ' || COALESCE(movement_type, 'NULL') || ' is not in, out, adjust or transfer;'
    || ' counted as 0' AS detail,
  COUNT(*) AS evidence_count
FROM {lines} WHERE movement_type IS NULL OR movement_type NOT IN ('in', 'out', 'adjust', 'transfer')
GROUP BY location_id, movement_type
"""

# Known locations: the stores table plus every location the ledger has moved stock
# at (warehouses are not stores but do appear in the ledger).
COUNT_LOCATION_SQL = """
WITH known AS (
  SELECT store_id AS location_id FROM stores UNION SELECT location_id FROM {lines}
)
SELECT 'count_unknown_location' AS check, 'error' AS severity, c.location_id,
  CAST(NULL AS VARCHAR) AS product_id, CAST(NULL AS VARCHAR) AS barcode,
  'count lines at a location that is neither a store nor in the ledger' AS detail,
  COUNT(*) AS evidence_count
FROM stock_counts AS c LEFT JOIN known AS k ON c.location_id = k.location_id
WHERE k.location_id IS NULL
GROUP BY c.location_id
"""


def ean13_check_digit_sql(column: str = "barcode") -> str:
    """SQL for the EAN-13 check digit of the first 12 digits of `column`.

    Weights alternate 1, 3 from the left; the check digit brings the sum to a
    multiple of 10.

    Example:
        >>> ean13_check_digit_sql("b")[:60]
        '(10 - (TRY_CAST(SUBSTRING(b, 1, 1) AS INTEGER) * 1 + TRY_CAS'
    """
    terms = " + ".join(
        f"TRY_CAST(SUBSTRING({column}, {i}, 1) AS INTEGER) * {1 if i % 2 else 3}" for i in range(1, 13)
    )
    return f"(10 - ({terms}) % 10) % 10"


def _barcode_sql() -> str:
    expected = ean13_check_digit_sql("barcode")
    actual = "TRY_CAST(SUBSTRING(j.barcode, 13, 1) AS INTEGER)"
    return BARCODE_SQL.replace("{expected}", expected).replace("{actual}", actual)


def findings_sql(
    lines: str, as_of: dt.datetime, stale_days: int = 60, duplicate_window_seconds: int = 600
) -> exp.Expression:
    """The SELECT behind `compute_inventory_findings`: every check, as one UNION ALL.

    Example:
        >>> import datetime as dt
        >>> query = findings_sql("inventory_ledger_lines", dt.datetime(2025, 1, 1))
        >>> "'negative_stock'" in query.sql(dialect="duckdb")
        True
    """
    parts = [STALE_SQL, NEGATIVE_SQL, _barcode_sql(), DUPLICATE_ID_SQL, DUPLICATE_SQL,
             MOVEMENT_TYPE_SQL, COUNT_LOCATION_SQL]
    selects = [f"SELECT * FROM ({part.format(lines=lines)}) AS finding_{i}" for i, part in enumerate(parts)]
    return bind("\nUNION ALL\n".join(selects), as_of=utc_instant(as_of), stale_days=stale_days,
                window_seconds=duplicate_window_seconds)


def compute_inventory_findings(
    engine: Engine,
    *,
    as_of: dt.datetime | None = None,
    stale_days: int = 60,
    duplicate_window_seconds: int = 600,
    lines: TableHandle | None = None,
    timezone: str = DEFAULT_TIMEZONE,
) -> TableHandle:
    """Run every stock data-quality check; one row per finding.

    Args:
        as_of: the instant stale stock is judged at (UTC if naive; default now).
        stale_days: stock > 0 with no movement for at least this many days is stale.
        duplicate_window_seconds: two movements alike in location, barcode, type,
            quantity and reference at most this far apart are a likely double import.
        lines: an existing `compute_ledger_lines` result to reuse.

    Returns `inventory_findings`: check, severity (error | warning), location_id,
    product_id, barcode, detail, evidence_count.
    """
    source = lines_table(engine, lines, timezone)
    query = findings_sql(source, utc_instant(as_of), stale_days, duplicate_window_seconds)
    return engine.materialize(FINDINGS, query)
