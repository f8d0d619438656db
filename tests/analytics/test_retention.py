"""Retention cohorts on the demo workspace, checked against pandas on the raw tables."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from jingzhun.analytics import AnalyticsError, retention, retention_sql, retention_triangle
from jingzhun.engine import render

ZONE = "Asia/Shanghai"


def _local_days(frame: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_datetime(frame[column], utc=True).dt.tz_convert(ZONE).dt.date


@pytest.fixture(scope="module")
def activity(demo) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(person, local day) of every event, and of every kept order."""
    events = demo.query("""SELECT rp.person_id, e.timestamp FROM events AS e
        JOIN record_persons AS rp ON rp.record_kind = 'event' AND rp.record_id = e.message_id""").to_pandas()
    orders = demo.query("""SELECT rp.person_id, o.placed_at, o.status FROM orders AS o
        JOIN record_persons AS rp ON rp.record_kind = 'order' AND rp.record_id = o.order_id""").to_pandas()
    orders = orders[~orders["status"].isin(["cancelled", "refunded"])]
    visits = pd.DataFrame({"person_id": events["person_id"], "day": _local_days(events, "timestamp")})
    purchases = pd.DataFrame({"person_id": orders["person_id"], "day": _local_days(orders, "placed_at")})
    return visits, purchases


def _month(day: dt.date) -> int:
    return day.year * 12 + day.month - 1


def _expected(starts: pd.DataFrame, active: pd.DataFrame) -> pd.DataFrame:
    """Per cohort month and offset: active persons and persons active then or later."""
    starts = starts.assign(cohort=starts["day"].map(_month))
    active = active.assign(period=active["day"].map(_month)).drop_duplicates(["person_id", "period"])
    joined = active.merge(starts[["person_id", "cohort"]], on="person_id")
    joined = joined[joined["period"] >= joined["cohort"]].assign(offset=lambda f: f["period"] - f["cohort"])
    counts = joined.groupby(["cohort", "offset"])["person_id"].nunique()
    last = joined.groupby(["cohort", "person_id"])["offset"].max().reset_index()
    rows = []
    final = active["period"].max()
    for cohort, size in starts.groupby("cohort").size().items():
        for offset in range(0, final - cohort + 1):
            mine = last[last["cohort"] == cohort]
            rows.append({"cohort": cohort, "cohort_size": size, "period_offset": offset,
                         "active": int(counts.get((cohort, offset), 0)),
                         "unbounded": int((mine["offset"] >= offset).sum())})
    return pd.DataFrame(rows)


def test_first_purchase_monthly_retention_matches_pandas(demo, activity) -> None:
    visits, purchases = activity
    found = retention(demo, cohort="first_purchase", period="month", activity="any", timezone=ZONE)
    starts = purchases.groupby("person_id", as_index=False)["day"].min()
    expected = _expected(starts, pd.concat([visits, purchases]))
    got = found.frame.assign(cohort=found.frame["cohort"].map(_month))
    columns = ["cohort", "cohort_size", "period_offset", "active", "unbounded"]
    pd.testing.assert_frame_equal(got[columns].reset_index(drop=True), expected[columns], check_dtype=False)
    assert len(got) > 200
    first = got[got["period_offset"] == 0]
    assert (first["retention"] == 1.0).all()  # a first purchase is activity in its own month
    assert (got["unbounded"] >= got["active"]).all()


def test_first_visit_weekly_cohorts_start_on_mondays(demo, activity) -> None:
    visits, _ = activity
    found = retention(demo, cohort="first_visit", period="week", activity="visit")
    assert {day.weekday() for day in found.frame["cohort"]} == {0}
    assert found.frame.drop_duplicates("cohort")["cohort_size"].sum() == visits["person_id"].nunique()
    first = found.frame[found.frame["period_offset"] == 0]
    assert (first["retention"] == 1.0).all()


def test_triangle_has_the_latest_cohorts_shortest(demo) -> None:
    found = retention(demo, cohort="first_purchase", period="month", activity="purchase",
                      start=dt.date(2025, 1, 1), end=dt.date(2025, 12, 31))
    triangle = retention_triangle(found.frame)
    assert list(triangle.columns[:3]) == ["cohort", "cohort_size", "0"]
    filled = triangle.iloc[:, 2:].notna().sum(axis=1).tolist()
    assert filled == sorted(filled, reverse=True) and filled[0] > filled[-1]
    assert len(triangle) == 12
    assert found.chart is not None and found.chart.kind == "heatmap"


@pytest.mark.parametrize(("kwargs", "field"), [({"cohort": "first_love"}, "cohort"),
                                                ({"period": "fortnight"}, "period"),
                                                ({"activity": "dreaming"}, "activity")])
def test_bad_retention_is_refused(demo, kwargs, field) -> None:
    with pytest.raises(AnalyticsError) as refused:
        retention(demo, **kwargs)
    assert refused.value.field == field


@pytest.mark.parametrize(("period", "spark_offset"), [("day", "DATEDIFF("), ("week", "DIV 7"), ("month", "* 12 +")])
def test_retention_sql_renders_for_spark(period, spark_offset) -> None:
    """Offsets count whole periods on Spark too (sqlglot's DATEDIFF alone would count days)."""
    assert spark_offset in render(retention_sql("registration", period, "any"), "spark")
