"""Comparisons: calendar alignment as tables, and YoY/MoM/WoW/benchmark numbers on the demo
checked against pandas over the raw tables."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import chinese_calendar
import pandas as pd
import pytest

from jingzhun.analytics import (
    AnalyticsError,
    CubeQuery,
    compare_periods,
    compare_to,
    compare_with_benchmark,
    holiday_period,
    parse_period,
)
from jingzhun.analytics.calendar import find_holiday
from jingzhun.core import open_workspace
from jingzhun.engine import open_engine

TZ = "Asia/Shanghai"

# ---- the calendar, as tables ------------------------------------------------------------------

HOLIDAY_DATES = [
    # (holiday, year, date, chinese_calendar's name for that day or None for promotion days)
    ("春节", 2025, date(2025, 1, 29), "Spring Festival"),
    ("春节", 2026, date(2026, 2, 17), "Spring Festival"),
    ("端午", 2025, date(2025, 5, 31), "Dragon Boat Festival"),
    ("端午", 2026, date(2026, 6, 19), "Dragon Boat Festival"),
    ("中秋", 2025, date(2025, 10, 6), "Mid-autumn Festival"),
    ("中秋", 2026, date(2026, 9, 25), "Mid-autumn Festival"),
    ("双11", 2025, date(2025, 11, 11), None),
    ("618", 2026, date(2026, 6, 18), None),
    ("38", 2026, date(2026, 3, 8), None),
]


@pytest.mark.parametrize(("name", "year", "expected", "official"), HOLIDAY_DATES)
def test_holiday_dates(name: str, year: int, expected: date, official: str | None) -> None:
    assert find_holiday(name).on(year) == expected
    if official:  # an independent source: the State Council's holiday table in chinese_calendar
        on_holiday, holiday_name = chinese_calendar.get_holiday_detail(expected)
        assert on_holiday and holiday_name == official


PERIODS = [
    ("2026", date(2026, 1, 1), date(2026, 12, 31)),
    ("2026-Q1", date(2026, 1, 1), date(2026, 3, 31)),
    ("2026-02", date(2026, 2, 1), date(2026, 2, 28)),
    ("2026-W12", date(2026, 3, 16), date(2026, 3, 22)),
    ("2026-03-08", date(2026, 3, 8), date(2026, 3, 8)),
    ("2026-03-01..2026-03-10", date(2026, 3, 1), date(2026, 3, 10)),
    ("春节2026", date(2026, 2, 14), date(2026, 2, 20)),
    ("春节2026±7", date(2026, 2, 10), date(2026, 2, 24)),
    ("mid_autumn:2025-1+2", date(2025, 10, 5), date(2025, 10, 8)),
]


@pytest.mark.parametrize(("text", "start", "end"), PERIODS)
def test_parse_period(text: str, start: date, end: date) -> None:
    period = parse_period(text)
    assert (period.start, period.end) == (start, end)


COMPARISONS = [
    # (period, against, alignment, base start, base end)
    ("春节2026±3", "yoy", "holiday", date(2025, 1, 26), date(2025, 2, 1)),  # 春节 2026-02-17 vs 2025-01-29
    ("中秋2026", "yoy", "holiday", date(2025, 10, 3), date(2025, 10, 9)),
    ("2026-03", "yoy", "date", date(2025, 3, 1), date(2025, 3, 31)),
    ("2026-02", "yoy", "date", date(2025, 2, 1), date(2025, 2, 28)),
    ("2026-03", "mom", "date", date(2026, 2, 1), date(2026, 2, 28)),
    ("2026-W12", "yoy", "weekday", date(2025, 3, 17), date(2025, 3, 23)),  # ISO 2025-W12
    ("2026-03-07", "yoy", "weekday", date(2025, 3, 8), date(2025, 3, 8)),  # Saturday vs Saturday
    ("2026-03-07", "wow", "weekday", date(2026, 2, 28), date(2026, 2, 28)),
    ("2021-01-04..2021-01-10", "yoy", "weekday", date(2019, 12, 30), date(2020, 1, 5)),  # 2020 had 53 ISO weeks
]


@pytest.mark.parametrize(("text", "against", "align", "first", "last"), COMPARISONS)
def test_comparison_base(text: str, against: str, align: str, first: date, last: date) -> None:
    comparison = compare_to(parse_period(text), against)
    assert (comparison.align, comparison.base.start, comparison.base.end) == (align, first, last)


@pytest.mark.parametrize("text", ["2026-03-01..2026-03-31", "2026-W12", "2025-12-25..2026-01-10"])
def test_weekday_alignment_keeps_weekday_and_iso_week(text: str) -> None:
    comparison = compare_to(parse_period(text), "yoy", "weekday")
    pairs = comparison.pairs()
    assert len(pairs) == parse_period(text).days
    for base_day, current_day in pairs:
        base_iso, current_iso = base_day.isocalendar(), current_day.isocalendar()
        assert (base_iso.week, base_iso.weekday) == (current_iso.week, current_iso.weekday)
        assert base_iso.year == current_iso.year - 1


def test_spring_festival_window_lines_up_day_by_day() -> None:
    pairs = compare_to(holiday_period("春节", 2026, 2, 2), "yoy").pairs()
    assert pairs == [(date(2025, 1, 27) + timedelta(days=k), date(2026, 2, 15) + timedelta(days=k)) for k in range(5)]


@pytest.mark.parametrize(("call", "field"), [
    (lambda: parse_period("last spring"), "period"),
    (lambda: parse_period("2026-03-10..2026-03-01"), "period"),
    (lambda: parse_period("元旦2026"), "holiday"),
    (lambda: compare_to(parse_period("2026-03"), "qoq"), "against"),
    (lambda: compare_to(parse_period("春节2026"), "mom", "holiday"), "align"),
    (lambda: compare_to(parse_period("2026-03"), "yoy", "holiday"), "period"),
])
def test_bad_periods_and_comparisons_are_refused(call, field: str) -> None:
    with pytest.raises(AnalyticsError) as refused:
        call()
    assert refused.value.field == field and refused.value.fix and refused.value.message_zh


# ---- on the demo -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(portrayed_demo: Path):
    workspace = open_workspace(portrayed_demo)
    with open_engine(workspace, read_only=True) as engine:
        orders = engine.read_table("orders").to_pandas()
        benchmarks = engine.read_table("benchmarks").to_pandas()
        order_items = engine.read_table("order_items").to_pandas()
        products = engine.read_table("products").to_pandas()
        yield engine, orders, order_items, products, benchmarks


def _kept_orders(orders: pd.DataFrame) -> pd.DataFrame:
    kept = orders[~orders["status"].isin(["cancelled", "refunded"])].copy()
    kept["day"] = pd.to_datetime(kept["placed_at"], utc=True).dt.tz_convert(TZ).dt.date
    kept["net"] = kept["net_amount"].astype(float)
    return kept


def _gmv(kept: pd.DataFrame, first: date, last: date) -> float:
    return float(kept.loc[(kept["day"] >= first) & (kept["day"] <= last), "net"].sum())


def test_yoy_month_equals_pandas(demo) -> None:
    engine, orders, *_ = demo
    kept = _kept_orders(orders)
    result = compare_periods(engine, CubeQuery(measures=("gmv", "orders"), period="2026-03"), "yoy", timezone=TZ)
    row = result.frame.iloc[0]
    assert row["gmv"] == pytest.approx(_gmv(kept, date(2026, 3, 1), date(2026, 3, 31)))
    assert row["gmv_base"] == pytest.approx(_gmv(kept, date(2025, 3, 1), date(2025, 3, 31)))
    assert row["gmv_change_pct"] == pytest.approx(row["gmv"] / row["gmv_base"] - 1)
    in_base = (kept["day"] >= date(2025, 3, 1)) & (kept["day"] <= date(2025, 3, 31))
    assert row["orders_base"] == kept.loc[in_base, "order_id"].nunique()
    assert "2025-03-01..2025-03-31" in result.reading_lines("en")[0]


def test_spring_festival_by_category_equals_pandas(demo) -> None:
    engine, orders, order_items, products, _ = demo
    lines = order_items.merge(_kept_orders(orders)[["order_id", "day"]], on="order_id")
    lines = lines.merge(products.drop_duplicates("product_id")[["product_id", "category"]], on="product_id")
    lines["amount"] = lines["amount"].astype(float)
    query = CubeQuery(measures=("gmv",), by=("category",), period="春节2026±3")
    frame = compare_periods(engine, query, "yoy", timezone=TZ).frame.set_index("category")

    def by_category(first: date, last: date) -> pd.Series:
        inside = lines[(lines["day"] >= first) & (lines["day"] <= last)]
        return inside.groupby("category")["amount"].sum()

    now, then = by_category(date(2026, 2, 14), date(2026, 2, 20)), by_category(date(2025, 1, 26), date(2025, 2, 1))
    assert set(frame.index) == set(now.index) | set(then.index)
    for category in frame.index:
        assert frame.at[category, "gmv"] == pytest.approx(now.get(category, float("nan")), nan_ok=True)
        assert frame.at[category, "gmv_base"] == pytest.approx(then.get(category, float("nan")), nan_ok=True)


def test_wow_day_series_compares_each_day_with_seven_days_before(demo) -> None:
    engine, orders, *_ = demo
    kept = _kept_orders(orders)
    frame = compare_periods(engine, CubeQuery(measures=("gmv",), by=("day",), period="2026-03-01..2026-03-14"),
                            "wow", timezone=TZ).frame
    assert len(frame) == 14
    for row in frame.itertuples():
        week_before = row.day - timedelta(days=7)
        assert (row.gmv_base if pd.notna(row.gmv_base) else 0) == pytest.approx(_gmv(kept, week_before, week_before))
        assert (row.gmv if pd.notna(row.gmv) else 0) == pytest.approx(_gmv(kept, row.day, row.day))


def test_benchmark_growth_reading_matches_pandas(demo) -> None:
    engine, orders, order_items, products, benchmarks = demo
    query = CubeQuery(measures=("gmv",), by=("month",), where={"category": ("cosmetics",)}, period="2026-Q2")
    result = compare_with_benchmark(engine, query, "industry_trade_index", "industry", "美妆", timezone=TZ)
    series = benchmarks[(benchmarks["series"] == "industry_trade_index") & (benchmarks["category"] == "美妆")].copy()
    series["day"] = pd.to_datetime(series["day"]).dt.date

    def mean(first: date, last: date) -> float:
        return series.loc[(series["day"] >= first) & (series["day"] <= last), "value"].mean()

    market = mean(date(2026, 4, 1), date(2026, 6, 30)) / mean(date(2025, 4, 1), date(2025, 6, 30)) - 1
    lines = order_items.merge(_kept_orders(orders)[["order_id", "day"]], on="order_id").merge(
        products.drop_duplicates("product_id")[["product_id", "category"]], on="product_id")
    cosmetics = lines[lines["category"] == "cosmetics"]
    total = lambda a, b: cosmetics.loc[(cosmetics["day"] >= a) & (cosmetics["day"] <= b), "amount"].astype(float).sum()  # noqa: E731
    ours = total(date(2026, 4, 1), date(2026, 6, 30)) / total(date(2025, 4, 1), date(2025, 6, 30)) - 1
    reading = result.reading_lines("en")[0]
    assert f"grew {ours:+.1%}" in reading and f"grew {market:+.1%}" in reading
    assert list(result.frame["month"]) == [date(2026, 4, 1), date(2026, 5, 1), date(2026, 6, 1)]
    assert result.frame["gmv_index"].iloc[0] == pytest.approx(100) and result.frame["benchmark_index"].iloc[0] == pytest.approx(100)


def test_benchmark_that_matches_several_series_names_them(demo) -> None:
    engine, *_ = demo
    query = CubeQuery(measures=("gmv",), period="2026-Q2")
    with pytest.raises(AnalyticsError, match="matching") as refused:
        compare_with_benchmark(engine, query, "industry_trade_index", timezone=TZ)
    assert "美妆" in refused.value.fix
    with pytest.raises(AnalyticsError, match="no benchmark series") as missing:
        compare_with_benchmark(engine, query, "nope", timezone=TZ)
    assert "industry_trade_index" in missing.value.fix


def test_comparison_needs_a_period(demo) -> None:
    engine, *_ = demo
    with pytest.raises(AnalyticsError) as refused:
        compare_periods(engine, CubeQuery(measures=("gmv",)), "yoy", timezone=TZ)
    assert refused.value.field == "period"
