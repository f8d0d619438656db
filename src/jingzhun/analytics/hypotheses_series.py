"""The series behind hypothesis checks, and the statistics that compare them.

Each builder returns one SELECT of daily values (day, value) over a range of local days —
the KPI, the industry index, competitor and own-brand search, ad spend and clicks, unit
prices, stock-out exposure — which `hypotheses` runs and keeps in `Analysis.sql`. The
statistics (Welch's t test, Hedges' g, the day a series breaks) work on those few hundred
daily values in Python.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sqlglot import exp

from jingzhun.analytics.behaviour_common import LINE_CATEGORY, bind, local_day
from jingzhun.analytics.calendar import Period

SEARCH_SERIES = "search_index"  # competitor_search import: one series per brand keyword
INDUSTRY_SUBJECT = "industry"
INDUSTRY_SERIES = {"search": "industry_search_popularity", "trade": "industry_trade_index"}
# Catalogue category codes and the names market-index exports (生意参谋) give them.
CATEGORY_ALIASES = {"apparel": "服饰", "cosmetics": "美妆", "beauty_tools": "美容工具", "home": "家居"}
KEPT = "(o.status IS NULL OR o.status NOT IN ('cancelled', 'refunded'))"
_MIN_SIDE = 5  # days on each side of a break


# ---- series SQL -------------------------------------------------------------------------------


def category_aliases(category: str | None) -> list[str]:
    """The category as the catalogue and the market exports may spell it."""
    if category is None:
        return []
    names = {category, CATEGORY_ALIASES.get(category, category)}
    names |= {code for code, name in CATEGORY_ALIASES.items() if name == category}
    return sorted(names)


def _in(column: str, values: Sequence[str], prefix: str) -> tuple[str, dict[str, object]]:
    """`column IN (:prefix_0, …)` and its values; TRUE when there is nothing to filter."""
    if not values:
        return "TRUE", {}
    names = [f"{prefix}_{i}" for i in range(len(values))]
    return f"{column} IN ({', '.join(':' + n for n in names)})", dict(zip(names, values, strict=True))


def _day_grid() -> str:
    return ("SELECT CAST(d AS DATE) AS day FROM UNNEST(GENERATE_SERIES(:first, :last, INTERVAL 1 DAY)) "
            "AS grid(d)")


def kpi_sql(kpi: str, aliases: Sequence[str], first: dt.date, last: dt.date, timezone: str) -> exp.Expression:
    """SELECT day, value: the KPI per local day (GMV and orders: 0 on days without orders).

    Example:
        >>> "SUM(oi.amount)" in kpi_sql("gmv", ["cosmetics"], dt.date(2025, 1, 1), dt.date(2025, 1, 31),
        ...                             "Asia/Shanghai").sql("duckdb")
        True
    """
    if kpi == "search_index":
        return brand_search_sql(aliases, first, last, ours=True)
    where, values = _in("pc.category", aliases, "cat")
    measure = "SUM(oi.amount)" if kpi == "gmv" else "COUNT(DISTINCT o.order_id)"
    day = local_day("o.placed_at", timezone)
    sql = f"""WITH sold AS (SELECT {day} AS day, {measure} AS value
  FROM {LINE_CATEGORY} JOIN orders AS o ON o.order_id = oi.order_id
  WHERE {KEPT} AND {where} GROUP BY {day})
SELECT g.day, CAST(COALESCE(s.value, 0) AS DOUBLE) AS value FROM ({_day_grid()}) AS g
LEFT JOIN sold AS s ON s.day = g.day ORDER BY g.day"""
    return bind(sql, first=first, last=last, **values)


def brand_search_sql(aliases: Sequence[str], first: dt.date, last: dt.date, *, ours: bool) -> exp.Expression:
    """Daily search index of our brands (summed), or of each competitor brand (by subject)."""
    where, values = _in("category", aliases, "cat")
    brands = "SELECT DISTINCT brand FROM products WHERE brand IS NOT NULL"
    mine = f"subject IN ({brands})" if ours else f"subject NOT IN ({brands}) AND subject <> :industry"
    subject = "" if ours else "subject, "
    sql = f"""SELECT day, {subject}SUM(value) AS value FROM benchmarks
WHERE series = :series AND {mine} AND {where} AND day BETWEEN :first AND :last
GROUP BY day{', subject' if not ours else ''} ORDER BY day"""
    return bind(sql, series=SEARCH_SERIES, first=first, last=last, industry=INDUSTRY_SUBJECT, **values)


def industry_sql(series: str, aliases: Sequence[str], first: dt.date, last: dt.date) -> exp.Expression:
    """SELECT day, value: the industry index of the category (all categories summed if none)."""
    where, values = _in("category", aliases, "cat")
    sql = f"""SELECT day, SUM(value) AS value FROM benchmarks
WHERE series = :series AND subject = :industry AND {where} AND day BETWEEN :first AND :last
GROUP BY day ORDER BY day"""
    return bind(sql, series=series, industry=INDUSTRY_SUBJECT, first=first, last=last, **values)


def ads_sql(first: dt.date, last: dt.date) -> exp.Expression:
    """SELECT day, channel, spend, impressions, clicks, conversions, conversion_value."""
    return bind("""SELECT day, channel, CAST(SUM(spend) AS DOUBLE) AS spend,
  CAST(SUM(impressions) AS DOUBLE) AS impressions, CAST(SUM(clicks) AS DOUBLE) AS clicks,
  CAST(SUM(conversions) AS DOUBLE) AS conversions, CAST(SUM(conversion_value) AS DOUBLE) AS conversion_value
FROM ad_spend WHERE day BETWEEN :first AND :last GROUP BY day, channel ORDER BY day, channel""",
                first=first, last=last)


def price_sql(aliases: Sequence[str], first: dt.date, last: dt.date, timezone: str) -> exp.Expression:
    """SELECT day, value: the quantity-weighted unit price of kept order lines of the category."""
    where, values = _in("pc.category", aliases, "cat")
    day = local_day("o.placed_at", timezone)
    sql = f"""SELECT * FROM (SELECT {day} AS day,
  CAST(SUM(oi.unit_price * oi.quantity) AS DOUBLE) / NULLIF(SUM(oi.quantity), 0) AS value
FROM {LINE_CATEGORY} JOIN orders AS o ON o.order_id = oi.order_id
WHERE {KEPT} AND {where} AND oi.quantity > 0 AND oi.unit_price IS NOT NULL GROUP BY {day}) AS p
WHERE day BETWEEN :first AND :last ORDER BY day"""
    return bind(sql, first=first, last=last, **values)


def stockout_sql(aliases: Sequence[str], first: dt.date, last: dt.date, weights_from: Period,
                 timezone: str, stockouts: str, ledger: str) -> exp.Expression:
    """SELECT day, value: Σ over SKU × locations out of stock that day of the SKU's share of
    the category's order lines in `weights_from` ÷ the locations that carry the SKU."""
    where, values = _in("pc.category", aliases, "cat")
    day = local_day("o.placed_at", timezone)
    sql = f"""WITH days AS ({_day_grid()}),
weights AS (SELECT sku, CAST(COUNT(*) AS DOUBLE) / SUM(COUNT(*)) OVER () AS weight FROM (
    SELECT COALESCE(oi.sku, bs.sku) AS sku FROM {LINE_CATEGORY}
    LEFT JOIN (SELECT barcode, MIN(sku) AS sku FROM products GROUP BY barcode) AS bs ON bs.barcode = oi.barcode
    JOIN orders AS o ON o.order_id = oi.order_id
    WHERE {KEPT} AND {where} AND {day} BETWEEN :w_first AND :w_last) AS l
  WHERE sku IS NOT NULL GROUP BY sku),
carried AS (SELECT item_key, COUNT(DISTINCT location_id) AS locations FROM {ledger} GROUP BY item_key),
gone AS (SELECT d.day, s.item_key, COUNT(*) AS locations_out FROM {stockouts} AS s
  JOIN days AS d ON d.day BETWEEN s.first_day AND s.last_day GROUP BY d.day, s.item_key)
SELECT d.day, COALESCE(SUM(w.weight * g.locations_out / c.locations), 0) AS value FROM days AS d
LEFT JOIN gone AS g ON g.day = d.day LEFT JOIN weights AS w ON w.sku = g.item_key
LEFT JOIN carried AS c ON c.item_key = g.item_key GROUP BY d.day ORDER BY d.day"""
    return bind(sql, first=first, last=last, w_first=weights_from.start, w_last=weights_from.end, **values)


# ---- statistics -------------------------------------------------------------------------------


def welch(base: np.ndarray, current: np.ndarray) -> tuple[float | None, float | None, float | None]:
    """Welch's t, its two-sided p-value and Hedges' g of current vs baseline (None when a side
    has fewer than two values or neither varies)."""
    base, current = base[~np.isnan(base)], current[~np.isnan(current)]
    if len(base) < 2 or len(current) < 2 or (np.std(base) == 0 and np.std(current) == 0):
        return None, None, None
    from scipy import stats  # imported by the test that needs it, not by every jingzhun process

    result = stats.ttest_ind(current, base, equal_var=False)
    pooled = np.sqrt(((len(base) - 1) * np.var(base, ddof=1) + (len(current) - 1) * np.var(current, ddof=1))
                     / (len(base) + len(current) - 2))
    correction = 1 - 3 / (4 * (len(base) + len(current)) - 9)
    g = (current.mean() - base.mean()) / pooled * correction if pooled > 0 else None
    return float(result.statistic), float(result.pvalue), None if g is None else float(g)


def break_day(days: Sequence[dt.date], values: np.ndarray) -> dt.date | None:
    """The first day after the split with the largest Welch t between before and after."""
    order = np.argsort(np.asarray(days))
    x = np.asarray(values, dtype=float)[order]
    ordered = [days[i] for i in order]
    best, found = 0.0, None
    for split in range(_MIN_SIDE, len(x) - _MIN_SIDE + 1):
        before, after = x[:split], x[split:]
        spread = np.sqrt(before.var(ddof=1) / len(before) + after.var(ddof=1) / len(after))
        score = abs(after.mean() - before.mean()) / spread if spread > 0 else 0.0
        if score > best:
            best, found = score, ordered[split]
    return found


def evaluate(frame: pd.DataFrame, column: str = "value") -> dict[str, object]:
    """Means per period, the Welch test and the break day of one daily series."""
    base = frame.loc[frame["period"] == "baseline", column].to_numpy(dtype=float)
    current = frame.loc[frame["period"] == "current", column].to_numpy(dtype=float)
    statistic, p_value, effect = welch(base, current)
    days = frame["day"].tolist() if "day" in frame else []
    return {"baseline": float(np.nanmean(base)) if len(base) else float("nan"),
            "current": float(np.nanmean(current)) if len(current) else float("nan"),
            "statistic": statistic, "p_value": p_value, "effect_size": effect,
            "driver_break": break_day(days, frame[column].to_numpy(dtype=float)) if days else None}
