"""Fans vs buyers: the demo's 水光润泽系列 followers (mostly 30-39) against its buyers (mostly
under 30) give the verdict "buyers are younger than followers", with shares, TGI and tests
that check against the generator's truth and against scipy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from jingzhun.analytics import AnalyticsError, compare_audiences, fans_vs_buyers
from jingzhun.analytics.fans import AGE_BANDS, _younger_chance
from jingzhun.core import open_workspace
from jingzhun.engine import Engine, open_engine, render

ACCOUNTS = ["玉肌水光润泽", "玉肌水光润泽官方号"]
LINE = "水光润泽系列"


@pytest.fixture(scope="module")
def demo(portrayed_demo: Path) -> Iterator[Engine]:
    with open_engine(open_workspace(portrayed_demo), read_only=True) as engine:
        yield engine


@pytest.fixture(scope="module")
def truth(portrayed_demo: Path) -> dict:
    folder = portrayed_demo / "demo-truth"
    part_a = json.loads((folder / "patterns.json").read_text())["fans_vs_buyers"]
    social = json.loads((folder / "patterns_marketing.json").read_text())["social"]["fans_vs_buyers"]
    return {**part_a, **social}


def _ages(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[(frame["dimension"] == "age_band") & frame["known"]].set_index("bucket").reindex(list(AGE_BANDS))


def test_the_line_buyers_are_younger_than_its_followers(demo: Engine, truth: dict) -> None:
    analysis = fans_vs_buyers(demo, ACCOUNTS, product_line=LINE)
    tests = analysis.params["tests"].set_index("dimension")
    assert tests.loc["age_band", "verdict"] == "younger"
    assert tests.loc["age_band", "p_value"] < 0.01 and tests.loc["age_band", "js_distance"] > 0.3
    assert any(line.startswith("age band: buyers are younger than followers") for line in analysis.reading_lines("en"))
    assert any("购买者比粉丝更年轻" in line for line in analysis.reading_lines("zh"))
    ages = _ages(analysis.frame)
    # planted: fans drawn with 62% aged 30-39; buyers skewed under 30
    fans_30s = ages.loc[["30-34", "35-39"], "a_share"].sum()
    assert fans_30s == pytest.approx(sum(truth["fan_age_shares"][2:4]), abs=0.2)
    assert ages.loc[["<25", "25-29"], "b_share"].sum() > 0.5 > ages.loc[["<25", "25-29"], "a_share"].sum()


def test_line_buyers_skew_young_against_all_buyers_as_planted(demo: Engine, truth: dict) -> None:
    """Members (whose age is known) are older than all buyers, so the shares are lower than the
    truth's; the ratio of the line's under-30 share to all buyers' is what the generator sets."""
    analysis = compare_audiences(demo, {"rule": {"order": {}}, "label_en": "buyers"},
                                 {"rule": {"order": {"product": {"product_line": LINE}}}, "label_en": "line buyers"},
                                 ["age_band"])
    ages = _ages(analysis.frame)
    young = ["<25", "25-29"]
    ratio = ages.loc[young, "b_share"].sum() / ages.loc[young, "a_share"].sum()
    planted = truth["realized"]["line_buyers_share_under_30"] / truth["realized"]["all_buyers_share_under_30"]
    assert ratio == pytest.approx(planted, rel=0.2)
    assert (ages.loc[young, "b_tgi"] > 100).all()


def test_shares_tgi_and_the_younger_chance_add_up(demo: Engine) -> None:
    frame = fans_vs_buyers(demo, ACCOUNTS, product_line=LINE, dimensions=["age_band", "gender"]).frame
    known = frame[frame["known"]]
    for side in ("a", "b", "base"):
        assert known.groupby("dimension")[f"{side}_share"].sum().to_numpy() == pytest.approx([1.0, 1.0])
    with_base = known[known["base_share"] > 0]
    assert with_base["b_tgi"].to_numpy() == pytest.approx((with_base["b_share"] / with_base["base_share"] * 100).to_numpy())
    ages = _ages(frame)
    a, b = ages["a_persons"].to_numpy(np.float64), ages["b_persons"].to_numpy(np.float64)
    band = np.arange(len(AGE_BANDS))
    u = stats.mannwhitneyu(np.repeat(band, a.astype(int)), np.repeat(band, b.astype(int))).statistic
    assert _younger_chance(a, b) == pytest.approx(u / (a.sum() * b.sum()))  # B younger = A's band higher


def test_an_audience_against_itself_is_matched(demo: Engine) -> None:
    buyers = {"rule": {"order": {"product": {"category": "cosmetics"}}}}
    analysis = compare_audiences(demo, buyers, buyers, ["gender", "age_band"])
    assert set(analysis.params["tests"]["verdict"]) == {"matched"}
    assert analysis.reading_lines("en")[0] == "audience B and audience A are matched."


def test_bad_audiences_name_the_field_and_the_fix(demo: Engine) -> None:
    with pytest.raises(AnalyticsError) as account:
        fans_vs_buyers(demo, ["玉肌水光"], product_line=LINE)
    assert account.value.field == "a.followers" and "玉肌水光润泽" in account.value.fix
    with pytest.raises(AnalyticsError) as spec:
        compare_audiences(demo, {"followers": ACCOUNTS, "segment": "x"}, {"segment": "x"})
    assert spec.value.field == "a"
    with pytest.raises(AnalyticsError) as segment:
        compare_audiences(demo, {"segment": "no_such_audience"}, {"rule": {"order": {}}})
    assert segment.value.field == "a.segment"
    with pytest.raises(AnalyticsError) as empty:
        compare_audiences(demo, {"rule": {"order": {}}}, {"sql": "SELECT person_id FROM person_traits WHERE FALSE"})
    assert empty.value.field == "b"
    with pytest.raises(AnalyticsError) as dimension:
        fans_vs_buyers(demo, ACCOUNTS, product_line=LINE, dimensions=["shoe_size"])
    assert dimension.value.field == "dimensions"


def test_the_distribution_query_renders_for_spark(demo: Engine) -> None:
    sql = fans_vs_buyers(demo, ACCOUNTS, product_line=LINE).sql["distribution"]
    from jingzhun.engine import parse_sql

    assert "b_tgi" in render(parse_sql(sql), "spark")
