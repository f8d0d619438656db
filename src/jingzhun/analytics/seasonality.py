"""Seasonality: which groups buy which categories more around holidays (holiday × segment × category).

For each holiday window (妇女节 Mar 8, 618, 双11 Nov 11 and 春节 by the lunar calendar, from `analytics.calendar`,
± `window_days`, 3 by default) and each cell = a group of persons (by gender, age band,
audience, …) × a product category, the order lines of the cell per day inside the
windows are compared with its lines per day outside every window, and divided by the
same ratio for all other lines — a difference in differences:

    R(cell)    = (a / days inside) / (b / days outside)
    R(control) = (c / days inside) / (d / days outside)      c, d: every other line
    lift       = R(cell) / R(control) = (a · d) / (b · c)

The control ratio absorbs what lifts every line in those weeks (the windows fall in busy
months). Counts are Poisson, so the 95% interval is the log-scale (Woolf) interval
exp(ln lift ± z · √(1/a + 1/b + 1/c + 1/d)), with a two-sided Wald p-value. A lift of 2
reads "twice the usual holiday bump of everyone else".

Lines are those of orders not cancelled (a refund still shows the demand) whose buyer
has a known value of the group; each line is dated on its local day in the workspace
time zone. `categories` may pool categories into one column ("apparel+cosmetics"); the
categories not pooled are then one column "(other)". One SELECT computes every number,
the interval included; `Analysis.sql["seasonality"]` reruns it as is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import pandas as pd

from jingzhun.analytics.behaviour_common import (
    DEFAULT_TIMEZONE,
    LINE_CATEGORY,
    ORDER_OWNER,
    PERSON_DIMENSIONS,
    analytics_error,
    bind,
    check_range,
    choose,
    local_day,
    person_groups_sql,
    rounded,
)
from jingzhun.analytics.calendar import find_holiday
from jingzhun.analytics.result import Analysis, Chart
from jingzhun.engine import Engine

# The retail peaks of the planted pattern; any holiday `analytics.calendar` knows can be asked
# for (元宵, 端午, 七夕, 中秋 too), by key, Chinese name or alias.
HOLIDAYS = ("womens_day", "618", "double_11", "spring_festival")
ALL_HOLIDAYS = "all"
RATES = ("per_day_inside", "per_day_outside", "ratio", "control_ratio", "lift", "lift_low", "lift_high")
OTHER = "(other)"
DEFAULT_WINDOW_DAYS = 3


def holiday_windows(first: dt.date, last: dt.date, holidays: Sequence[str] = HOLIDAYS,
                    window_days: int = DEFAULT_WINDOW_DAYS) -> dict[dt.date, str]:
    """Every day within ± `window_days` of a holiday, from the year before `first` to the
    year after `last` (so a window straddling the range's edge is whole), with its holiday.

    Example:
        >>> days = holiday_windows(dt.date(2025, 1, 1), dt.date(2025, 12, 31), ["spring_festival"], 1)
        >>> [d.isoformat() for d in days if d.year == 2025]
        ['2025-01-28', '2025-01-29', '2025-01-30']
    """
    days: dict[dt.date, str] = {}
    for year in range(first.year - 1, last.year + 2):
        for name in holidays:
            holiday = find_holiday(name)
            centre = holiday.on(year)
            for shift in range(-window_days, window_days + 1):
                days[centre + dt.timedelta(days=shift)] = holiday.key
    return dict(sorted(days.items()))


def _category_column(categories: Mapping[str, Sequence[str]] | None) -> str:
    """The category (or pooled category) of a line, as SQL over `pc.category`."""
    if not categories:
        return "COALESCE(pc.category, '(unknown)')"
    cases = " ".join(
        f"WHEN pc.category IN ({', '.join(':cat_' + str(i) + '_' + str(j) for j in range(len(members)))}) "
        f"THEN :pool_{i}" for i, members in enumerate(categories.values()))
    return f"CASE {cases} ELSE '{OTHER}' END"


def _category_values(categories: Mapping[str, Sequence[str]] | None) -> dict[str, object]:
    values: dict[str, object] = {}
    for i, (label, members) in enumerate((categories or {}).items()):
        values[f"pool_{i}"] = label
        values |= {f"cat_{i}_{j}": member for j, member in enumerate(members)}
    return values


def seasonality_sql(dimension: str = "gender", *, windows: Mapping[dt.date, str],
                    categories: Mapping[str, Sequence[str]] | None = None,
                    first: dt.date | None = None, last: dt.date | None = None,
                    timezone: str = DEFAULT_TIMEZONE, z: float = 1.959964):
    """The lift SELECT: holiday, segment, category, the four counts, days, per-day rates,
    ratio, control_ratio, lift, lift_low, lift_high, p_value.

    Example:
        >>> days = holiday_windows(dt.date(2025, 1, 1), dt.date(2025, 12, 31))
        >>> "control_ratio" in seasonality_sql("gender", windows=days).sql("duckdb")
        True
    """
    window_rows = ", ".join(f"(:day_{i}, :holiday_{i})" for i in range(len(windows)))
    bounds = [*(["day >= :first"] if first else []), *(["day <= :last"] if last else [])]
    where = f"WHERE {' AND '.join(bounds)}" if bounds else ""
    day = local_day("o.placed_at", timezone)
    log_se = "SQRT(1.0 / a + 1.0 / b + 1.0 / c + 1.0 / d)"
    sql = f"""WITH windows AS (SELECT * FROM (VALUES {window_rows}) AS w(day, holiday)),
lines AS (SELECT * FROM (SELECT {day} AS day, g.group_value AS segment, {_category_column(categories)} AS category
  FROM {LINE_CATEGORY}
  JOIN orders AS o ON o.order_id = oi.order_id {ORDER_OWNER}
  JOIN ({person_groups_sql(dimension)}) AS g ON g.person_id = rp.person_id
  WHERE o.status IS NULL OR o.status <> 'cancelled') AS l {where}),
span AS (SELECT MIN(day) AS first_day, MAX(day) AS last_day FROM lines),
window_days AS (SELECT w.holiday, COUNT(*) AS days FROM windows AS w CROSS JOIN span AS s
  WHERE w.day BETWEEN s.first_day AND s.last_day GROUP BY w.holiday),
day_counts AS (SELECT holiday, days AS days_inside FROM window_days
  UNION ALL SELECT '{ALL_HOLIDAYS}', CAST(SUM(days) AS BIGINT) FROM window_days),
tagged AS (SELECT l.segment, l.category, w.holiday FROM lines AS l LEFT JOIN windows AS w ON w.day = l.day),
inside AS (SELECT holiday, segment, category, COUNT(*) AS a FROM tagged WHERE holiday IS NOT NULL
    GROUP BY holiday, segment, category
  UNION ALL SELECT '{ALL_HOLIDAYS}', segment, category, COUNT(*) FROM tagged WHERE holiday IS NOT NULL
    GROUP BY segment, category),
outside AS (SELECT segment, category, COUNT(*) AS b FROM tagged WHERE holiday IS NULL GROUP BY segment, category),
grid AS (SELECT k.holiday, k.days_inside, o.segment, o.category, COALESCE(i.a, 0) AS a, o.b
  FROM day_counts AS k CROSS JOIN outside AS o
  LEFT JOIN inside AS i ON i.holiday = k.holiday AND i.segment = o.segment AND i.category = o.category
  WHERE k.days_inside > 0),
cells AS (SELECT g.*, CAST(SUM(a) OVER (PARTITION BY holiday) - a AS BIGINT) AS c,
    CAST(SUM(b) OVER (PARTITION BY holiday) - b AS BIGINT) AS d,
    CAST(DATE_DIFF('day', s.first_day, s.last_day) + 1 - t.days_inside AS BIGINT) AS days_outside
  FROM grid AS g CROSS JOIN span AS s
  CROSS JOIN (SELECT days_inside FROM day_counts WHERE holiday = '{ALL_HOLIDAYS}') AS t),
rated AS (SELECT *, CAST(a AS DOUBLE) / days_inside AS per_day_inside, CAST(b AS DOUBLE) / days_outside
    AS per_day_outside, (CAST(a AS DOUBLE) / days_inside) / (CAST(b AS DOUBLE) / days_outside) AS ratio,
    (CAST(c AS DOUBLE) / days_inside) / NULLIF(CAST(d AS DOUBLE) / days_outside, 0) AS control_ratio,
    CASE WHEN a > 0 AND c > 0 AND d > 0 THEN LN((CAST(a AS DOUBLE) * d) / (CAST(b AS DOUBLE) * c)) END AS log_lift,
    CASE WHEN a > 0 AND c > 0 AND d > 0 THEN {log_se} END AS log_se
  FROM cells)
SELECT holiday, segment, category, a AS lines_inside, b AS lines_outside, c AS control_inside,
  d AS control_outside, days_inside, days_outside, per_day_inside, per_day_outside, ratio, control_ratio,
  ratio / NULLIF(control_ratio, 0) AS lift, EXP(log_lift - :z * log_se) AS lift_low,
  EXP(log_lift + :z * log_se) AS lift_high, log_lift / log_se AS z_score
FROM rated ORDER BY CASE WHEN holiday = '{ALL_HOLIDAYS}' THEN 0 ELSE 1 END, holiday, lift DESC, segment, category"""
    values: dict[str, object] = {"z": z, **_category_values(categories)}
    for i, (day_, holiday) in enumerate(windows.items()):
        values[f"day_{i}"], values[f"holiday_{i}"] = day_, holiday
    return bind(sql, **values, **({"first": first} if first else {}), **({"last": last} if last else {}))


def seasonality(engine: Engine, *, dimension: str = "gender", holidays: Sequence[str] = HOLIDAYS,
                window_days: int = DEFAULT_WINDOW_DAYS,
                categories: Mapping[str, Sequence[str]] | None = None, per_holiday: bool = False,
                start: dt.date | None = None, end: dt.date | None = None, confidence: float = 0.95,
                timezone: str = DEFAULT_TIMEZONE) -> Analysis:
    """Holiday lift of order lines per group × category, against all other lines.

    Args:
        dimension: the person groups: gender, age_band, member_level, province, city,
            preferred_channel or audience.
        holidays: the holidays whose windows count (keys, Chinese names or aliases:
            womens_day / 妇女节, 618, double_11 / 双11, spring_festival / 春节, mid_autumn …).
        window_days: days on each side of the holiday (0-15).
        categories: pooled columns, e.g. {"apparel+cosmetics": ["apparel", "cosmetics"]};
            other categories become "(other)". Default: each category its own column.
        per_holiday: also one row per holiday per cell (besides all holidays pooled).
        start, end: local days of the lines used (default: all).
        confidence: level of the lift interval.

    Returns:
        `Analysis` "seasonality": one row per (holiday,) segment × category, best lift first.
    """
    from scipy.stats import norm  # imported by the analysis, not by every jingzhun process

    _check(dimension, holidays, window_days, confidence)
    check_range(start, end)
    bounds = _line_days(engine, timezone) if start is None or end is None else (start, end)
    windows = holiday_windows(start or bounds[0], end or bounds[1], holidays, window_days)
    z = float(norm.ppf(0.5 + confidence / 2))
    query = seasonality_sql(dimension, windows=windows, categories=categories, first=start, last=end,
                            timezone=timezone, z=z)
    frame = rounded(engine.query(query).to_pandas(), RATES)
    frame["p_value"] = [float(f"{p:.3g}") for p in 2 * norm.sf(frame["z_score"].abs())]
    frame = frame.drop(columns="z_score")
    if not per_holiday:
        frame = frame[frame["holiday"] == ALL_HOLIDAYS].reset_index(drop=True)
    else:  # the heatmap's rows: holiday · segment
        frame["row"] = frame["holiday"] + " · " + frame["segment"]
    params = {"dimension": dimension, "holidays": [find_holiday(h).key for h in holidays], "window_days": window_days,
              "categories": dict(categories or {}), "start": start, "end": end,
              "confidence": confidence, "timezone": timezone}
    chart = Chart(kind="heatmap", x="category", y=("lift",), series="row" if per_holiday else "segment",
                  title_zh=f"节日提升（{dimension} × 品类）", title_en=f"Holiday lift ({dimension} × category)")
    return Analysis(name="seasonality", frame=frame, sql={"seasonality": engine.render(query)}, chart=chart,
                    readings=seasonality_readings(frame, dimension, confidence), params=params)


def _line_days(engine: Engine, timezone: str) -> tuple[dt.date, dt.date]:
    """The first and last local day with orders, to know which years' holidays to list."""
    day = local_day("placed_at", timezone)
    found = engine.query(f"SELECT MIN({day}) AS first_day, MAX({day}) AS last_day FROM orders").to_pylist()[0]
    today = dt.date.today()
    return found["first_day"] or today, found["last_day"] or today


def _check(dimension: str, holidays: Sequence[str], window_days: int, confidence: float) -> None:
    choose(dimension, PERSON_DIMENSIONS, "dimension")
    if not holidays:
        raise analytics_error("no holiday chosen.", "没有选择节日。", "holidays",
                              f"choose from {', '.join(HOLIDAYS)}", f"从 {'、'.join(HOLIDAYS)} 中选择")
    for holiday in holidays:
        find_holiday(holiday)
    if not 0 <= window_days <= 15:
        raise analytics_error(f"window_days {window_days} is out of range.", f"窗口天数 {window_days} 超出范围。",
                              "window_days", "use 0 to 15 days on each side", "每侧 0 到 15 天")
    if not 0.5 <= confidence < 1:
        raise analytics_error(f"confidence {confidence} is out of range.", f"置信水平 {confidence} 超出范围。",
                              "confidence", "use a level such as 0.9, 0.95 or 0.99", "请用 0.9、0.95 或 0.99 等")


def seasonality_readings(frame: pd.DataFrame, dimension: str, confidence: float) -> list[tuple[str, str]]:
    """The strongest significant lift, and how many cells are significantly up or down."""
    pooled = frame[frame["holiday"] == ALL_HOLIDAYS].dropna(subset=["lift_low"])
    if pooled.empty:
        return [("节日窗口内外的订单行太少，无法比较。", "Too few order lines inside and outside the windows to compare.")]
    top = pooled.sort_values("lift", ascending=False).iloc[0]
    level = f"{confidence:.0%}"
    readings = [(f"节日前后提升最大：{dimension} = {top['segment']} × {top['category']}，为其余订单行的 "
                 f"{top['lift']:.2f} 倍（{level} 区间 {top['lift_low']:.2f}–{top['lift_high']:.2f}）。",
                 f"Strongest holiday lift: {dimension} = {top['segment']} × {top['category']}, "
                 f"{top['lift']:.2f}× the rest ({level} interval {top['lift_low']:.2f}-{top['lift_high']:.2f}).")]
    alpha = 1 - confidence
    up = int(((pooled["p_value"] < alpha) & (pooled["lift"] > 1)).sum())
    down = int(((pooled["p_value"] < alpha) & (pooled["lift"] < 1)).sum())
    readings.append((f"{len(pooled)} 个格子中 {up} 个显著高于、{down} 个显著低于其余订单行的节日变化。",
                     f"Of {len(pooled)} cells, {up} rise and {down} fall significantly more than the rest."))
    return readings
