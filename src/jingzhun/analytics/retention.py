"""Retention cohorts: of the persons who started in a period, how many come back later.

A cohort is everyone whose first purchase, first visit or registration falls in the
same day, week (Monday to Sunday) or month, in the workspace time zone. For each
cohort and each period offset k (0 = the cohort's own period) the query counts:

* `active` — persons of the cohort active in period k exactly (N-day / N-week retention:
  "came back in week 3");
* `unbounded` — persons active in period k *or any later one* (unbounded, or "rolling",
  retention: "had not yet left by week 3"), from each person's last active offset.

Activity is any event, any purchase (an order that was not cancelled or refunded), or
either. Only offsets the data has reached appear, so the table is the usual triangle:
the latest cohorts have the fewest columns. Everything is one SELECT the engine runs;
`Analysis.sql["retention"]` reruns it as is, `retention_triangle` pivots it for reading.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from jingzhun.analytics.behaviour_common import (
    DEFAULT_TIMEZONE,
    EVENT_OWNER,
    ORDER_OWNER,
    bind,
    check_range,
    choose,
    local_day,
    ratio,
    rounded,
)
from jingzhun.analytics.result import Analysis, Chart
from jingzhun.engine import Engine

COHORTS = ("first_purchase", "first_visit", "registration")
PERIODS = ("day", "week", "month")
ACTIVITIES = ("any", "purchase", "visit")

_PURCHASE = "(o.status IS NULL OR o.status NOT IN ('cancelled', 'refunded'))"
_COHORT_NAMES = {"first_purchase": ("首次购买", "first purchase"), "first_visit": ("首次访问", "first visit"),
                 "registration": ("注册", "registration")}
_PERIOD_NAMES = {"day": ("天", "day"), "week": ("周", "week"), "month": ("月", "month")}


def _visits(timezone: str) -> str:
    return f"SELECT rp.person_id, {local_day('e.timestamp', timezone)} AS day FROM events AS e {EVENT_OWNER}"


def _purchases(timezone: str) -> str:
    return (f"SELECT rp.person_id, {local_day('o.placed_at', timezone)} AS day "
            f"FROM orders AS o {ORDER_OWNER} WHERE {_PURCHASE}")


def _start_days(cohort: str, timezone: str) -> str:
    """SELECT person_id, day: the local day each person entered their cohort."""
    if cohort == "registration":
        return (f"SELECT person_id, {local_day('member_since', timezone)} AS day FROM person_traits "
                "WHERE member_since IS NOT NULL")
    source = _purchases(timezone) if cohort == "first_purchase" else _visits(timezone)
    return f"SELECT person_id, MIN(day) AS day FROM ({source}) AS f GROUP BY person_id"


def _active_days(activity: str, timezone: str) -> str:
    if activity == "purchase":
        return _purchases(timezone)
    if activity == "visit":
        return _visits(timezone)
    return f"{_visits(timezone)}\nUNION ALL\n{_purchases(timezone)}"


def _period(day: str, period: str) -> str:
    return day if period == "day" else f"CAST(DATE_TRUNC('{period}', {day}) AS DATE)"


def _offset(cohort: str, period_start: str, period: str) -> str:
    """Whole periods from the cohort's start to a period's start (both truncated alike)."""
    return f"DATE_DIFF('{period}', {cohort}, {period_start})"


def retention_sql(cohort: str = "first_purchase", period: str = "week", activity: str = "any",
                  *, first: dt.date | None = None, last: dt.date | None = None,
                  timezone: str = DEFAULT_TIMEZONE):
    """The retention SELECT: cohort, cohort_size, period_offset, active, retention,
    unbounded, unbounded_retention (cohorts whose start day is in [first, last]).

    Example:
        >>> "DATE_TRUNC('WEEK'" in retention_sql("first_visit", "week").sql("duckdb")
        True
    """
    bounds = [*(["day >= :first"] if first else []), *(["day <= :last"] if last else [])]
    where = f"WHERE {' AND '.join(bounds)}" if bounds else ""
    sql = f"""WITH starts AS (SELECT person_id, {_period('day', period)} AS cohort
  FROM ({_start_days(cohort, timezone)}) AS s {where}),
activity AS (SELECT DISTINCT person_id, {_period('day', period)} AS period
  FROM ({_active_days(activity, timezone)}) AS a),
periods AS (SELECT DISTINCT period FROM activity),
sizes AS (SELECT cohort, COUNT(*) AS cohort_size FROM starts GROUP BY cohort),
offsets AS (SELECT c.person_id, c.cohort, {_offset('c.cohort', 'a.period', period)} AS period_offset
  FROM starts AS c JOIN activity AS a ON a.person_id = c.person_id AND a.period >= c.cohort),
active AS (SELECT cohort, period_offset, COUNT(*) AS active FROM offsets GROUP BY cohort, period_offset),
last_seen AS (SELECT cohort, person_id, MAX(period_offset) AS last_offset FROM offsets
  GROUP BY cohort, person_id),
leaving AS (SELECT cohort, last_offset, COUNT(*) AS persons FROM last_seen GROUP BY cohort, last_offset),
grid AS (SELECT s.cohort, s.cohort_size, {_offset('s.cohort', 'p.period', period)} AS period_offset
  FROM sizes AS s JOIN periods AS p ON p.period >= s.cohort),
counted AS (SELECT g.cohort, g.cohort_size, g.period_offset, COALESCE(SUM(l.persons), 0) AS unbounded
  FROM grid AS g LEFT JOIN leaving AS l ON l.cohort = g.cohort AND l.last_offset >= g.period_offset
  GROUP BY g.cohort, g.cohort_size, g.period_offset)
SELECT c.cohort, c.cohort_size, c.period_offset, COALESCE(a.active, 0) AS active,
  {ratio('COALESCE(a.active, 0)', 'c.cohort_size')} AS retention,
  CAST(c.unbounded AS BIGINT) AS unbounded, {ratio('c.unbounded', 'c.cohort_size')} AS unbounded_retention
FROM counted AS c LEFT JOIN active AS a ON a.cohort = c.cohort AND a.period_offset = c.period_offset
ORDER BY c.cohort, c.period_offset"""
    return bind(sql, **({"first": first} if first else {}), **({"last": last} if last else {}))


def retention(engine: Engine, *, cohort: str = "first_purchase", period: str = "week",
              activity: str = "any", start: dt.date | None = None, end: dt.date | None = None,
              timezone: str = DEFAULT_TIMEZONE) -> Analysis:
    """Retention by cohort and period offset, N-period and unbounded.

    Args:
        cohort: `first_purchase`, `first_visit` or `registration` (CRM sign-up).
        period: `day`, `week` or `month`, in the workspace time zone.
        activity: what counts as coming back: `any` (an event or a purchase),
            `purchase` or `visit` (any event).
        start, end: the cohorts to show, by the local day persons entered them.

    Returns:
        `Analysis` "retention": one row per cohort and period offset.
    """
    choose(cohort, COHORTS, "cohort")
    choose(period, PERIODS, "period")
    choose(activity, ACTIVITIES, "activity")
    check_range(start, end)
    query = retention_sql(cohort, period, activity, first=start, last=end, timezone=timezone)
    frame = rounded(engine.query(query).to_pandas(), ["retention", "unbounded_retention"])
    zh, en = _COHORT_NAMES[cohort]
    unit_zh, unit_en = _PERIOD_NAMES[period]
    chart = Chart(kind="heatmap", x="period_offset", y=("retention",), series="cohort",
                  title_zh=f"留存（按{zh}{unit_zh}分组）", title_en=f"Retention by {en} {unit_en}")
    params = {"cohort": cohort, "period": period, "activity": activity, "start": start, "end": end,
              "timezone": timezone}
    return Analysis(name="retention", frame=frame, sql={"retention": engine.render(query)}, chart=chart,
                    readings=retention_readings(frame, period), params=params)


def retention_triangle(frame: pd.DataFrame, column: str = "retention") -> pd.DataFrame:
    """The long retention table as a triangle: one row per cohort (with its size), one
    column per period offset; offsets the data has not reached stay empty."""
    wide = frame.pivot(index=["cohort", "cohort_size"], columns="period_offset", values=column)
    wide.columns = [str(offset) for offset in wide.columns]
    return wide.reset_index()


def retention_readings(frame: pd.DataFrame, period: str) -> list[tuple[str, str]]:
    """Cohorts and persons covered, and the persons-weighted retention at offsets 1 and 4."""
    if frame.empty:
        return [("没有符合条件的队列。", "No cohort matches.")]
    sizes = frame.drop_duplicates("cohort")
    unit_zh, unit_en = _PERIOD_NAMES[period]
    readings = [(f"{len(sizes)} 个队列，共 {int(sizes['cohort_size'].sum())} 人。",
                 f"{len(sizes)} cohorts, {int(sizes['cohort_size'].sum())} persons.")]
    early = frame.groupby("cohort")["period_offset"].min()
    if (early > 0).any():  # cohorts older than the first recorded activity
        readings.append((f"{int((early > 0).sum())} 个队列早于最早的活动记录，其前几期没有数据。",
                         f"{int((early > 0).sum())} cohorts began before the first recorded activity; "
                         "their first offsets have no data."))
    for offset in (1, 4):
        reached = frame[frame["period_offset"] == offset]
        if reached.empty:
            continue
        active = reached["active"].sum() / reached["cohort_size"].sum()
        unbounded = reached["unbounded"].sum() / reached["cohort_size"].sum()
        readings.append((f"第 {offset} {unit_zh}留存 {active:.1%}，此后仍活跃（无界留存）{unbounded:.1%}。",
                         f"{unit_en.capitalize()} {offset} retention {active:.1%}; still active then or "
                         f"later (unbounded) {unbounded:.1%}."))
    return readings
