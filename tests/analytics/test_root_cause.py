"""Root cause: the demo's planted livestream spike is one recent item; Adtributor's scoring on
small tables of known answers; refusals."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlglot.errors import ErrorLevel

from jingzhun.analytics import AnalyticsError, Thresholds, find_root_cause, parse_period
from jingzhun.analytics.measures import MEASURES
from jingzhun.analytics.root_cause import (
    TOTAL,
    build_breakdown_sql,
    candidate_sets,
    drill,
    score_level,
)
from jingzhun.core import open_workspace
from jingzhun.engine import open_engine
from jingzhun.engine.dialects import RENDER_DIALECTS

TZ = "Asia/Shanghai"


@pytest.fixture(scope="module")
def spike_cause(portrayed_demo: Path):
    """The drill-down of product views on the planted spike day against the 14 days before."""
    truth = json.loads((portrayed_demo / "demo-truth" / "patterns.json").read_text(encoding="utf-8"))["livestream_spike"]
    day = date.fromisoformat(truth["date"])
    base = f"{day - timedelta(days=14)}..{day - timedelta(days=1)}"
    with open_engine(open_workspace(portrayed_demo), read_only=True) as engine:
        return truth, find_root_cause(engine, "views", truth["date"], base, timezone=TZ)


def test_spike_is_one_item_not_the_whole_account(spike_cause) -> None:
    truth, result = spike_cause
    first = result.frame[(result.frame["level"] == 1) & result.frame["in_explanation"]]
    top = first.iloc[0]
    assert (top["dimension"], top["value"]) == ("product", truth["product_id"])
    assert top["explanatory_power"] > 0.6  # the item alone explains most of the jump
    assert top["share_actual"] == pytest.approx(truth["realized"]["spike_product_share_on_day"], abs=0.05)
    verdict = result.reading_lines("en")[1]
    assert verdict.startswith("Not the whole account but one item") and truth["product_id"] in verdict
    assert "不是整个账号" in result.reading_lines("zh")[1]


def test_spike_item_is_recent_by_its_launch_date(spike_cause) -> None:
    truth, result = spike_cause
    item = result.frame[(result.frame["dimension"] == "product") & (result.frame["value"] == truth["product_id"])].iloc[0]
    launched = date.fromisoformat(truth["launch_date"])
    assert item["launch_date"] == launched
    assert item["days_since_launch"] == (date.fromisoformat(truth["date"]) - launched).days == 9
    age = result.reading_lines("en")[2]
    assert "a recent item (hot topic), not long-tail" in age and truth["launch_date"] in age
    assert "近期新品" in result.reading_lines("zh")[2]


def test_spike_drill_goes_into_the_item(spike_cause) -> None:
    truth, result = spike_cause
    assert result.frame["level"].max() == 2
    assert set(result.frame.loc[result.frame["level"] == 2, "within"]) == {f"product={truth['product_id']}"}
    assert {"level_1", "level_2", "products"} <= set(result.sql)
    assert "GROUPING SETS" in result.sql["level_1"]


def test_breakdown_renders_on_both_dialects() -> None:
    sql = build_breakdown_sql(MEASURES["conversion"], ["platform", "category", "gender"], {"channel": "online"},
                              parse_period("2026-03"), parse_period("2026-02"), TZ)
    for dialect in RENDER_DIALECTS.values():
        assert "GROUPING SETS" in sql.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE)


# ---- Adtributor on tables of known answers -------------------------------------------------------


def _table(rows: dict[str, dict[str, tuple[float, float]]], measure: str = "views") -> pd.DataFrame:
    """{dimension: {value: (base, current)}} as the breakdown query's rows (total from the first dimension)."""
    records = []
    for dimension, values in rows.items():
        for value, (base, current) in values.items():
            records += [(dimension, value, "base", base), (dimension, value, "current", current)]
    first = next(iter(rows.values()))
    records += [("(total)", TOTAL, "base", sum(b for b, _ in first.values())),
                ("(total)", TOTAL, "current", sum(c for _, c in first.values()))]
    return pd.DataFrame(records, columns=["dimension", "value", "side", measure])


def test_scores_follow_the_paper() -> None:
    table = _table({"platform": {"app": (50, 150), "web": (50, 50)}})
    scores, expected, actual = score_level(table, MEASURES["views"], 1.0)
    app = scores.set_index("value").loc["app"]
    assert (expected, actual) == (100, 200)
    assert app["explanatory_power"] == pytest.approx(1.0)  # (150 - 50) / (200 - 100)
    p, q = 0.5, 0.75  # app's share before and after; its Jensen-Shannon term:
    m = (p + q) / 2
    assert app["surprise"] == pytest.approx(0.5 * (p * math.log(p / m) + q * math.log(q / m)))


def test_ratio_explanatory_power_changes_only_the_elements_parts() -> None:
    table = pd.DataFrame([
        ("store", "a", "base", 100.0, 10), ("store", "a", "current", 100.0, 20),
        ("store", "b", "base", 100.0, 10), ("store", "b", "current", 100.0, 10),
        ("(total)", TOTAL, "base", 200.0, 20), ("(total)", TOTAL, "current", 200.0, 30),
    ], columns=["dimension", "value", "side", "gmv", "orders"])
    scores, expected, actual = score_level(table, MEASURES["aov"], 1.0)
    assert (expected, actual) == (10, pytest.approx(200 / 30))
    a = scores.set_index("value").loc["a"]
    assert a["explanatory_power"] == pytest.approx((200 / 30 - 10) / (200 / 30 - 10))  # only a's orders moved


def test_whole_account_growth_has_no_cause() -> None:
    table = _table({"platform": {"app": (60, 120), "web": (40, 80)}, "gender": {"F": (70, 140), "M": (30, 60)}})
    result = drill(MEASURES["views"], ["platform", "gender"], parse_period("2026-03-02"), parse_period("2026-03-01"),
                   lambda filters, dims: (table, "sql"))
    candidates = result.levels[0].candidates
    assert all(c["surprise"] < Thresholds().min_surprise for c in candidates)
    assert len(result.levels) == 1  # nothing to drill into


def test_succinct_sets_only() -> None:
    even = {f"p{i}": (10, 20) for i in range(8)}  # eight products each explain 1/8: not succinct
    scores, *_ = score_level(_table({"product": even, "platform": {"app": (40, 140), "web": (40, 20)}}),
                             MEASURES["views"], 1.0)
    dimensions = [c["dimension"] for c in candidate_sets(scores, Thresholds())]
    assert dimensions == ["platform"]


# ---- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"measure": "traffic", "period": "2025-09-27"}, "measure"),
    ({"measure": "views", "period": "yesterday"}, "period"),
    ({"measure": "views", "period": "2025-09-27", "dimensions": ["colour"]}, "dimension"),
    ({"measure": "spend", "period": "2025-09-27", "dimensions": ["gender"]}, "dimension"),
    ({"measure": "views", "period": "2025-09-27", "dimensions": ["month"]}, "dimension"),
])
def test_refusals(portrayed_demo: Path, kwargs: dict, field: str) -> None:
    with open_engine(open_workspace(portrayed_demo), read_only=True) as engine, \
            pytest.raises(AnalyticsError) as refused:
        find_root_cause(engine, timezone=TZ, **kwargs)
    assert refused.value.field == field and refused.value.fix
