"""What the behaviour analyses share: who a record belongs to, a person's group, local days.

Funnels, retention, paths, seasonality and hypothesis checks all read collected records
(`events`, `orders`, `order_items`) through their owner in `record_persons`, so a
person's history follows the ID graph's merges and splits; they break results down by
the same person attributes (the portrait's gender, age band, member level, province, or
the latest snapshot of each audience); and they count calendar days in the workspace
time zone. The SQL fragments here are DuckDB-dialect text with `:name` placeholders,
bound as sqlglot literals by `bind`, never formatted from user values.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Sequence
from zoneinfo import ZoneInfo

import pandas as pd
from sqlglot import exp

from jingzhun.analytics.measures import LATEST_AUDIENCES
from jingzhun.analytics.result import AnalyticsError
from jingzhun.engine import parse_sql, to_local_time
from jingzhun.profiles.rules_compiler import literal

DEFAULT_TIMEZONE = "Asia/Shanghai"
UNKNOWN = "(unknown)"  # the group of a person whose attribute is not known

# Person attributes an analysis can break down by: a portrait column, or `audience` (one
# row per audience the person is in at its latest snapshot, so a person can count twice).
TRAIT_DIMENSIONS = ("gender", "age_band", "member_level", "province", "city", "preferred_channel")
PERSON_DIMENSIONS = (*TRAIT_DIMENSIONS, "audience")

EVENT_OWNER = ("JOIN record_persons AS rp ON rp.record_kind = 'event' "
               "AND rp.record_id = e.message_id")
ORDER_OWNER = ("JOIN record_persons AS rp ON rp.record_kind = 'order' "
               "AND rp.record_id = o.order_id")

# Each order line with its product's category: POS lines may carry only a barcode and
# online lines only a SKU, so the product is found by product_id, else barcode, else SKU
# (the catalogue has one row per SKU; a product's SKUs share its category).
LINE_CATEGORY = """order_items AS oi
LEFT JOIN (SELECT barcode, MIN(product_id) AS product_id FROM products
           WHERE barcode IS NOT NULL GROUP BY barcode) AS pb ON pb.barcode = oi.barcode
LEFT JOIN (SELECT sku, MIN(product_id) AS product_id FROM products
           WHERE sku IS NOT NULL GROUP BY sku) AS ps ON ps.sku = oi.sku
LEFT JOIN (SELECT product_id, MIN(category) AS category FROM products GROUP BY product_id) AS pc
  ON pc.product_id = COALESCE(oi.product_id, pb.product_id, ps.product_id)"""


def analytics_error(message: str, message_zh: str, field: str, fix: str, fix_zh: str) -> AnalyticsError:
    """An `AnalyticsError` naming the parameter at fault and the fix, in English and Chinese."""
    return AnalyticsError(message, field=field, fix=fix, message_zh=message_zh, fix_zh=fix_zh)


def choose(value: str, allowed: Sequence[str], field: str) -> str:
    """`value` if it is one of `allowed`; else an error that lists them (and the closest)."""
    if value in allowed:
        return value
    close = difflib.get_close_matches(str(value), list(allowed), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    hint_zh = f"（是否想用 {close[0]}？）" if close else ""
    raise analytics_error(f"unknown {field} {value!r}{hint}.", f"未知的 {field}：{value!r}{hint_zh}。", field,
                          f"use one of: {', '.join(allowed)}", f"可选：{'、'.join(allowed)}")


def bind(sql: str, **values: object) -> exp.Expression:
    """Parse DuckDB-dialect SQL and replace `:name` placeholders by literals or expressions.

    (DuckDB's dialect reads `SELECT :x` as a prefix alias: a placeholder may not open
    a SELECT list.)

    Example:
        >>> bind("SELECT x FROM t WHERE x = :n", n=3).sql()
        'SELECT x FROM t WHERE x = 3'
    """
    bound = {name: value if isinstance(value, exp.Expression) else literal(value)
             for name, value in values.items()}
    return exp.replace_placeholders(parse_sql(sql), **bound)


def local_day(column: str, timezone: str) -> str:
    """DuckDB-dialect SQL for the local calendar day of a UTC instant column."""
    return f"CAST({to_local_time(exp.column(*reversed(column.split('.'))), timezone).sql('duckdb')} AS DATE)"


def day_start(day: dt.date, timezone: str) -> dt.datetime:
    """The UTC instant at which local `day` begins in `timezone`."""
    return dt.datetime.combine(day, dt.time(), ZoneInfo(timezone)).astimezone(dt.UTC)


def check_range(first: dt.date | None, last: dt.date | None, field: str = "start") -> None:
    """A date range must not end before it starts."""
    if first is not None and last is not None and last < first:
        raise analytics_error(f"the range ends ({last}) before it starts ({first}).",
                              f"时间范围的结束日 {last} 早于开始日 {first}。", field,
                              "give the first day, then the last day", "请先给开始日，再给结束日")


def person_groups_sql(dimension: str) -> str:
    """SELECT person_id, group_value: each person's value of `dimension` (`audience`: one row
    per audience at its latest snapshot)."""
    choose(dimension, PERSON_DIMENSIONS, "dimension")
    if dimension == "audience":
        return f"SELECT person_id, segment_id AS group_value FROM ({LATEST_AUDIENCES}) AS aud"
    return (f"SELECT person_id, CAST({dimension} AS VARCHAR) AS group_value FROM person_traits "
            f"WHERE {dimension} IS NOT NULL")


def rounded(frame: pd.DataFrame, columns: Sequence[str], digits: int = 4) -> pd.DataFrame:
    """Round shares and rates for reading, in Python: SQL's ROUND of a DOUBLE differs between
    engines at the half (DuckDB rounds 0.01875 to 0.0187, Spark to 0.0188), so the SQL keeps
    full precision."""
    return frame.assign(**{name: frame[name].astype(float).round(digits) for name in columns if name in frame})


def ratio(numerator: str, denominator: str) -> str:
    """`numerator / denominator` as a DOUBLE, NULL when the denominator is 0."""
    return f"CAST({numerator} AS DOUBLE) / NULLIF({denominator}, 0)"
