"""The planted holiday × gender × category lift, recovered from the demo workspace.

The generator multiplies women's apparel and cosmetics shopping by 2.5 within ± 3 days of
妇女节, 618, 双11 and 春节 (`demo-truth/patterns.json` → holiday_women_apparel_cosmetics).
On the 1,500-person demo only buyers with a known gender count (CRM members and the
marketplace buyers linked to them): a few thousand lines, a few hundred inside the windows,
so the log of the difference in differences has a standard error of 0.1-0.15. The test asks
the 95% interval to contain the planted 2.5, the estimate to be within ±30% of it (about
two standard errors) and the women × {apparel, cosmetics} cell to be the top one.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jingzhun.analytics import AnalyticsError, holiday_windows, seasonality

POOL = {"apparel+cosmetics": ["apparel", "cosmetics"]}
ZONE = "Asia/Shanghai"


@pytest.fixture(scope="module")
def truth(portrayed_demo: Path) -> dict:
    patterns = json.loads((portrayed_demo / "demo-truth" / "patterns.json").read_text(encoding="utf-8"))
    return patterns["holiday_women_apparel_cosmetics"]


def test_women_apparel_cosmetics_lift_is_recovered(demo, truth) -> None:
    found = seasonality(demo, dimension="gender", categories=POOL, window_days=truth["window_days"])
    top = found.frame.iloc[0]
    assert (top["segment"], top["category"]) == (truth["applies_to"]["gender"], "apparel+cosmetics")
    planted = truth["multiplier"]
    assert top["lift_low"] <= planted <= top["lift_high"]
    assert top["lift"] == pytest.approx(planted, rel=0.30)
    assert top["p_value"] < 0.001
    assert found.readings[0][1].startswith("Strongest holiday lift: gender = F × apparel+cosmetics")


def test_top_category_cell_is_womens_apparel_or_cosmetics(demo, truth) -> None:
    found = seasonality(demo, dimension="gender")
    top = found.frame.iloc[0]
    assert top["segment"] == "F" and top["category"] in truth["applies_to"]["categories"]
    assert len(found.frame) == 8  # 2 genders × 4 categories
    assert found.chart is not None and found.chart.kind == "heatmap"


def test_windows_are_the_generators_holidays(truth) -> None:
    windows = holiday_windows(dt.date(2024, 11, 1), dt.date(2026, 10, 31), window_days=truth["window_days"])
    centres = {(name, day) for day, name in windows.items()
               if all(windows.get(day + dt.timedelta(days=k)) == name for k in range(-3, 4))}
    planted = {(h["name"], dt.date.fromisoformat(h["date"])) for h in truth["holidays"]}
    assert planted <= centres  # 春节 from the lunar calendar lands on the same days


def test_counts_match_pandas(demo) -> None:
    """The four counts of the women × pooled cell, recounted from the raw tables."""
    lines = demo.query("""SELECT o.placed_at, o.status, pt.gender, p.category FROM order_items AS oi
        JOIN orders AS o ON o.order_id = oi.order_id
        JOIN record_persons AS rp ON rp.record_kind = 'order' AND rp.record_id = o.order_id
        JOIN person_traits AS pt ON pt.person_id = rp.person_id
        JOIN (SELECT product_id, MIN(category) AS category FROM products GROUP BY product_id) AS p
          ON p.product_id = oi.product_id""").to_pandas()
    lines = lines[(lines["status"] != "cancelled") & lines["gender"].notna()]
    days = pd.to_datetime(lines["placed_at"], utc=True).dt.tz_convert(ZONE).dt.date
    windows = holiday_windows(days.min(), days.max())
    inside = days.map(lambda d: d in windows).to_numpy()
    cell = ((lines["gender"] == "F") & lines["category"].isin(POOL["apparel+cosmetics"])).to_numpy()
    a, b = int((cell & inside).sum()), int((cell & ~inside).sum())
    c, d = int((~cell & inside).sum()), int((~cell & ~inside).sum())
    row = seasonality(demo, categories=POOL).frame.iloc[0]
    assert (row["lines_inside"], row["lines_outside"], row["control_inside"], row["control_outside"]) == (a, b, c, d)
    assert row["lift"] == pytest.approx(a * d / (b * c), abs=1e-4)
    woolf = np.sqrt(1 / a + 1 / b + 1 / c + 1 / d)
    assert row["lift_high"] == pytest.approx(a * d / (b * c) * np.exp(1.959964 * woolf), abs=1e-3)


def test_per_holiday_rows(demo) -> None:
    found = seasonality(demo, dimension="age_band", per_holiday=True)
    assert set(found.frame["holiday"]) == {"all", "womens_day", "618", "double_11", "spring_festival"}
    assert found.chart is not None and found.chart.series == "row"


@pytest.mark.parametrize(("kwargs", "field"), [({"dimension": "shoe_size"}, "dimension"),
                                               ({"holidays": ["halloween"]}, "holiday"),
                                               ({"window_days": 40}, "window_days"),
                                               ({"confidence": 1.5}, "confidence")])
def test_bad_seasonality_is_refused(demo, kwargs, field) -> None:
    with pytest.raises(AnalyticsError) as refused:
        seasonality(demo, **kwargs)
    assert refused.value.field == field
