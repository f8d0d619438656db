"""Funnels on the demo workspace, checked against an independent pandas computation on the
raw tables (events, orders, record_persons); the engines' parity for funnels, retention and
seasonality."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from jingzhun.analytics import (
    AnalyticsError,
    funnel,
    funnel_sql,
    parse_step,
    retention_sql,
    seasonality_sql,
)
from jingzhun.analytics.seasonality import holiday_windows
from jingzhun.engine import render
from jingzhun.engine.parity import compare_tables

WINDOW = dt.timedelta(days=1)
STEPS = ["Product Viewed", "Product Added", "order"]


@pytest.fixture(scope="module")
def records(demo) -> pd.DataFrame:
    """Every step record (person, instant, step number) of STEPS, straight from the tables."""
    events = demo.query("""SELECT rp.person_id, e.timestamp AS ts, e.event FROM events AS e
        JOIN record_persons AS rp ON rp.record_kind = 'event' AND rp.record_id = e.message_id
        WHERE e.event IN ('Product Viewed', 'Product Added')""").to_pandas()
    events["step"] = events["event"].map({"Product Viewed": 1, "Product Added": 2})
    orders = demo.query("""SELECT rp.person_id, o.placed_at AS ts, o.status FROM orders AS o
        JOIN record_persons AS rp ON rp.record_kind = 'order' AND rp.record_id = o.order_id""").to_pandas()
    orders = orders[~orders["status"].isin(["cancelled", "refunded"])].assign(step=3)
    both = pd.concat([events[["person_id", "ts", "step"]], orders[["person_id", "ts", "step"]]])
    return both.drop_duplicates().sort_values(["person_id", "ts"]).reset_index(drop=True)


def _strict(times: dict[int, np.ndarray], window: float) -> tuple[int, list[float]]:
    """Steps reached from the best entry (greedy next step, earliest entry among equals)."""
    best: tuple[int, list[float]] = (0, [])
    for start in times.get(1, []):
        chain = [start]
        for step in (2, 3):
            later = times.get(step, np.array([]))
            later = later[(later > chain[-1]) & (later - start <= window)]
            if len(later) == 0:
                break
            chain.append(later.min())
        if len(chain) > best[0]:
            best = (len(chain), chain)
    return best[0], [b - a for a, b in zip(best[1], best[1][1:], strict=False)]


def _expected_strict(records: pd.DataFrame) -> tuple[list[int], list[float]]:
    persons, gaps = [0, 0, 0], [[], []]
    seconds = records.assign(t=records["ts"].map(lambda v: v.timestamp()))
    for _, rows in seconds.groupby("person_id"):
        times = {step: np.unique(part["t"].to_numpy()) for step, part in rows.groupby("step")}
        depth, chain_gaps = _strict(times, WINDOW.total_seconds())
        for k in range(depth):
            persons[k] += 1
        for k, gap in enumerate(chain_gaps):
            gaps[k].append(gap)
    return persons, [float(np.median(g)) for g in gaps]


def test_strict_funnel_matches_pandas(demo, records) -> None:
    found = funnel(demo, STEPS, window="24h")
    persons, medians = _expected_strict(records)
    assert found.frame["persons"].tolist() == persons
    assert persons[0] > 500 and persons[2] > 50  # the demo gives the funnel real numbers
    assert found.frame["median_seconds"].iloc[1:].tolist() == pytest.approx(medians, abs=0.06)
    assert found.frame["conversion"].iloc[2] == pytest.approx(persons[2] / persons[0], abs=1e-4)
    assert "funnel" in found.sql and found.readings


def test_any_order_funnel_matches_pandas(demo, records) -> None:
    found = funnel(demo, STEPS, window="24h", order="any")
    seconds = records.assign(t=records["ts"].map(lambda v: v.timestamp()))
    reached = []
    for _, rows in seconds.groupby("person_id"):
        t, step = rows["t"].to_numpy(), rows["step"].to_numpy()
        reached.append(max(len(set(step[(t >= s) & (t <= s + WINDOW.total_seconds())])) for s in t))
    reached = np.array(reached)
    assert found.frame["persons"].tolist() == [int((reached >= k).sum()) for k in (1, 2, 3)]
    assert found.frame["step_name"].tolist() == ["any 1 of 3", "any 2 of 3", "any 3 of 3"]


def test_breakdown_splits_the_entrants(demo) -> None:
    overall = funnel(demo, STEPS, window="7d")
    by_gender = funnel(demo, STEPS, window="7d", breakdown="gender")
    by_channel = funnel(demo, STEPS, window="7d", breakdown="channel")
    for split in (by_gender, by_channel):
        totals = split.frame.groupby("step")["persons"].sum().tolist()
        assert totals == overall.frame["persons"].tolist()
    assert set(by_channel.frame["channel"]) == {"web", "app", "miniprogram"}
    assert {"F", "M"} <= set(by_gender.frame["gender"])


def test_property_and_date_filters(demo) -> None:
    step = {"event": "Product Viewed", "where": [{"property": "category", "op": "=", "value": "cosmetics"}]}
    found = funnel(demo, [step, {"order": {"product": {"category": "cosmetics"}}}], window="7d",
                   start=dt.date(2025, 7, 1), end=dt.date(2025, 12, 31))
    expected = demo.query("""SELECT COUNT(DISTINCT rp.person_id) AS n FROM events AS e
        JOIN record_persons AS rp ON rp.record_kind = 'event' AND rp.record_id = e.message_id
        WHERE e.event = 'Product Viewed' AND e.properties->>'$.category' = 'cosmetics'
          AND CAST(e.timestamp AT TIME ZONE 'Asia/Shanghai' AS DATE) BETWEEN DATE '2025-07-01' AND DATE '2025-12-31'
    """).column("n")[0].as_py()
    assert found.frame["persons"].iloc[0] == expected > 0
    assert 0 < found.frame["persons"].iloc[1] < expected


@pytest.mark.parametrize(("steps", "kwargs", "field"), [
    (["Product Viewed"], {}, "steps"),
    (["Product Viewed", {"order": {"event": "x"}}], {}, "steps[1]"),
    (["Product Viewed", 3], {}, "steps[1]"),
    (STEPS, {"window": "soon"}, "window"),
    (STEPS, {"order": "sideways"}, "order"),
    (STEPS, {"breakdown": "shoe_size"}, "breakdown"),
])
def test_bad_funnels_are_refused(demo, steps, kwargs, field) -> None:
    with pytest.raises(AnalyticsError) as refused:
        funnel(demo, steps, **kwargs)
    assert refused.value.field == field
    assert refused.value.message_zh != refused.value.message


def test_funnel_sql_renders_for_both_engines() -> None:
    steps = [parse_step(s) for s in ("Products Searched", "Product Viewed", "Product Added", "order")]
    for order in ("strict", "any"):
        query = funnel_sql(steps, window=dt.timedelta(hours=2), order=order, breakdown="audience",
                           start=dt.datetime(2025, 1, 1, tzinfo=dt.UTC), end=dt.datetime(2025, 6, 1, tzinfo=dt.UTC))
        assert "UNIX_MICROS" in render(query, "spark")


@pytest.mark.spark
def test_funnel_retention_seasonality_parity(pipelines_on_both) -> None:
    """The three analyses' SQL gives the same rows on DuckDB and Spark."""
    (duck, spark), _ = pipelines_on_both
    spark.refresh()
    steps = [parse_step(s) for s in STEPS]
    queries = {
        "funnel_strict": funnel_sql(steps, window=dt.timedelta(days=1), breakdown="gender"),
        "funnel_any": funnel_sql(steps, window=dt.timedelta(days=1), order="any", breakdown="channel"),
        "retention": retention_sql("first_purchase", "week", "any"),
        "seasonality": seasonality_sql("gender", windows=holiday_windows(dt.date(2024, 11, 1),
                                                                          dt.date(2026, 10, 31))),
    }
    for name, query in queries.items():
        report = compare_tables(name, duck.query(query), spark.query(query))
        assert report.left_rows > 0, name
        assert report.equal, f"{name}: {report.differences}"
