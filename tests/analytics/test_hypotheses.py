"""Hypothesis checks on the demo's planted competitor launch.

`demo-truth/patterns_marketing.json` → benchmarks.competitor_launch: 澜蔻 launches a serum in
美妆 on the launch day; our cosmetics brands' search index drops 35% for 42 days while the
industry index does not move. Checking that drop (the 42 days before the launch against the
42 days from it), the competitor launch must rank first and the market-wide decline must
be refuted.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from jingzhun.analytics import AnalyticsError, UserHypothesis, hypothesis_checks
from jingzhun.collect.inventory import compute_stockouts
from jingzhun.engine import open_engine
from tests.conftest import copy_workspace


@pytest.fixture(scope="module")
def launch(portrayed_demo: Path) -> dict:
    truth = json.loads((portrayed_demo / "demo-truth" / "patterns_marketing.json").read_text(encoding="utf-8"))
    return truth["benchmarks"]["competitor_launch"]


@pytest.fixture(scope="module")
def demo(portrayed_demo: Path, tmp_path_factory: pytest.TempPathFactory):
    """A private copy: the stock-out check materializes the stock-out spells."""
    workspace = copy_workspace(portrayed_demo, tmp_path_factory.mktemp("hypotheses") / "ws")
    with open_engine(workspace) as engine:
        yield engine


@pytest.fixture(scope="module")
def spells(demo):
    """Stock-out spells computed once and reused by every check after the first."""
    return compute_stockouts(demo)


def _periods(launch: dict) -> dict:
    day = dt.date.fromisoformat(launch["launch_date"])
    days = dt.timedelta(days=launch["drop_days"])
    return {"baseline": (day - days, day - dt.timedelta(days=1)), "current": (day, day + days - dt.timedelta(days=1))}


@pytest.fixture(scope="module")
def checked(demo, launch):
    return hypothesis_checks(demo, kpi="search_index", category=launch["category_zh"], **_periods(launch))


def test_competitor_launch_ranks_first(checked, launch) -> None:
    first = checked.frame.iloc[0]
    assert first["hypothesis"] == "competitor_launch"
    assert first["subject"] == launch["competitor"]
    assert first["verdict"] == "supported" and first["p_value"] < 0.001
    assert first["explained_share"] >= 0.8
    assert first["driver_break"] == dt.date.fromisoformat(launch["launch_date"])
    assert checked.params["kpi_break"] == dt.date.fromisoformat(launch["launch_date"])
    assert checked.params["kpi_change"] == pytest.approx(-launch["our_search_drop"], abs=0.05)


def test_market_decline_is_refuted(checked) -> None:
    market = checked.frame.set_index("hypothesis").loc["market_decline"]
    assert market["verdict"] == "refuted" and market["explained_share"] < 0.1


def test_every_hypothesis_has_evidence_and_a_reading(checked) -> None:
    assert set(checked.frame["hypothesis"]) == {"market_decline", "competitor_launch", "ctr_drop", "spend_cut",
                                                "stockouts", "price_change"}
    assert checked.frame["p_value"].notna().all()
    assert checked.frame["test"].str.startswith("Welch").all()
    assert checked.frame["rank"].tolist() == list(range(1, 7))
    assert all(zh and en for zh, en in checked.readings)
    assert {"kpi", "market_decline", "competitor_launch", "ads", "stockouts", "price_change"} <= set(checked.sql)


def test_user_hypothesis_is_run_and_ranked(demo, launch, spells) -> None:
    mine = UserHypothesis(name="launch_search", elasticity=-0.5, sql="""
        SELECT day AS period, value FROM benchmarks WHERE series = 'search_index' AND subject = '澜蔻'""")
    found = hypothesis_checks(demo, kpi="search_index", category="cosmetics", user_hypotheses=[mine],
                              stockouts=spells, **_periods(launch))
    row = found.frame.set_index("hypothesis").loc["launch_search"]
    assert row["change"] > 0.3 and row["p_value"] < 0.001 and row["explained_share"] > 0
    assert "launch_search" in found.sql


@pytest.mark.parametrize("sql", [
    "DELETE FROM orders",
    "INSERT INTO orders (order_id) VALUES ('x')",
    "DROP TABLE orders",
    "SELECT 1 AS period, 2 AS value; DROP TABLE orders",
    "CREATE TABLE sneaky AS SELECT * FROM orders",
    "DESCRIBE orders",
])
def test_user_hypothesis_that_writes_is_refused(demo, launch, sql) -> None:
    before = demo.row_count("orders")
    with pytest.raises(AnalyticsError) as refused:
        hypothesis_checks(demo, kpi="orders", user_hypotheses=[{"name": "bad", "sql": sql}], **_periods(launch))
    assert refused.value.field == "hypotheses[0].sql"
    assert demo.row_count("orders") == before and not demo.table_exists("sneaky")


def test_gmv_of_a_category(demo, spells) -> None:
    found = hypothesis_checks(demo, kpi="gmv", category="apparel", baseline="2025-05", current="2025-06",
                              stockouts=spells)
    assert len(found.frame) == 6 and found.params["kpi_baseline"] > 0


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"kpi": "happiness"}, "kpi"),
    ({"baseline": (dt.date(2025, 5, 1), dt.date(2025, 4, 1))}, "baseline"),
    ({"current": (dt.date(2025, 3, 20), dt.date(2025, 4, 30))}, "current"),
    ({"kpi": "custom"}, "kpi_sql"),
])
def test_bad_checks_are_refused(demo, kwargs, field) -> None:
    arguments = {"baseline": (dt.date(2025, 3, 1), dt.date(2025, 3, 31)),
                 "current": (dt.date(2025, 4, 1), dt.date(2025, 4, 30)), **kwargs}
    with pytest.raises(AnalyticsError) as refused:
        hypothesis_checks(demo, **arguments)
    assert refused.value.field == field
