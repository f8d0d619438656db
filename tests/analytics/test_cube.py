"""The cube: compiled SQL on both dialects, OLAP operations, refusals, numbers on the demo
against pandas over the raw tables, the CLI, and DuckDB/Spark parity."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from sqlglot.errors import ErrorLevel

from jingzhun.analytics import (
    AnalyticsError,
    CubeQuery,
    allowed_dimensions,
    build_cube_sql,
    compare_periods,
    pivot_frame,
    run_cube,
)
from jingzhun.analytics.calendar import compare_to, parse_period
from jingzhun.analytics.compare import build_compare_sql
from jingzhun.analytics.measures import MEASURES
from jingzhun.core import open_workspace
from jingzhun.engine import open_engine
from jingzhun.engine.dialects import RENDER_DIALECTS
from jingzhun.engine.parity import compare_tables
from tests.conftest import copy_workspace

TZ = "Asia/Shanghai"

QUERIES = [
    ("gmv_by_month", CubeQuery(measures=("gmv", "orders", "buyers", "aov"), by=("month",), period="2025")),
    ("views_by_platform_week", CubeQuery(measures=("views", "visitors"), by=("week", "platform"), period="2025-Q3")),
    ("conversion_by_category", CubeQuery(measures=("conversion",), by=("category",), where={"gender": ("F",)})),
    ("gmv_by_tag_and_audience", CubeQuery(measures=("gmv",), by=("tag:age_band", "audience"))),
    ("spend_roi_ctr_by_ad_channel", CubeQuery(measures=("spend", "roi", "ctr"), by=("ad_channel", "quarter"))),
    ("followers_by_gender", CubeQuery(measures=("followers",), by=("gender", "year"))),
    ("message_ctr_by_member_level", CubeQuery(measures=("message_ctr",), by=("member_level",))),
    ("gmv_offline_by_province_store", CubeQuery(measures=("gmv",), by=("province", "store"),
                                                where={"channel": ("offline",)})),
    ("views_and_spend_by_day", CubeQuery(measures=("views", "spend"), by=("day",), period="2025-09-20..2025-09-30")),
]


@pytest.mark.parametrize(("name", "query"), QUERIES, ids=[q[0] for q in QUERIES])
def test_every_query_renders_on_both_dialects(name: str, query: CubeQuery) -> None:
    expression = build_cube_sql(query, TZ)
    for dialect in RENDER_DIALECTS.values():
        assert "SELECT" in expression.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE)


def test_ratio_is_computed_from_its_parts_after_aggregation() -> None:
    sql = build_cube_sql(CubeQuery(measures=("aov",), by=("quarter",)), TZ).sql("duckdb")
    assert "SUM(o.net_amount) AS gmv" in sql and "COUNT(DISTINCT o.order_id) AS orders" in sql
    assert "CAST(gmv AS DOUBLE) / NULLIF(CAST(orders AS DOUBLE), 0) AS aov" in sql
    assert "AVG" not in sql  # never an average of averages


def test_only_the_joins_asked_for() -> None:
    plain = build_cube_sql(CubeQuery(measures=("views",), by=("month",)), TZ).sql("duckdb")
    assert "JOIN" not in plain  # views by month reads events alone
    by_gender = build_cube_sql(CubeQuery(measures=("views",), by=("gender",)), TZ).sql("duckdb")
    assert "record_persons" in by_gender and "person_traits" in by_gender and "products" not in by_gender


def test_olap_operations() -> None:
    query = CubeQuery(measures=("gmv",), by=("month", "category"), period="2026")
    assert query.roll_up("quarter").by == ("quarter", "category")
    assert query.roll_up("month").by == ("category",)  # the time dimension itself: removed
    assert query.roll_up("category").by == ("month",)
    assert query.drill_down("day").by == ("day", "category")
    assert query.drill_down("gender").by == ("month", "category", "gender")
    sliced = query.slice("category", "cosmetics")
    assert sliced.by == ("month",) and sliced.where == {"category": ("cosmetics",)}
    assert query.dice({"platform": ["tmall", "jd"]}).where == {"platform": ("tmall", "jd")}
    with pytest.raises(AnalyticsError):
        query.roll_up("day")  # finer than month
    with pytest.raises(AnalyticsError):
        query.roll_up("gender")  # not in the query


def test_pivot_frame_turns_a_dimension_into_columns() -> None:
    frame = pd.DataFrame({"month": ["2026-01", "2026-01", "2026-02"], "channel": ["online", "offline", "online"],
                          "gmv": [10.0, 4.0, 12.0]})
    wide = pivot_frame(frame, "channel", ["month", "channel"], ["gmv"])
    assert list(wide.columns) == ["month", "offline", "online"]
    assert wide.set_index("month").loc["2026-02", "online"] == 12.0
    assert pd.isna(wide.set_index("month").loc["2026-02", "offline"])


@pytest.mark.parametrize(("query", "field", "words"), [
    (CubeQuery(measures=("revenue",)), "measure", "gmv"),
    (CubeQuery(measures=("gmv",), by=("colour",)), "dimension", "category"),
    (CubeQuery(measures=("spend",), by=("gender",)), "dimension", "ad_channel"),
    (CubeQuery(measures=("roi",), by=("category",)), "dimension", "ad_channel"),
    (CubeQuery(measures=("gmv",), by=("month", "week")), "by", "month"),
    (CubeQuery(measures=("gmv",), where={"month": ("2026-01-01",)}), "where", "period"),
    (CubeQuery(measures=("gmv",), by=("gender:x",)), "dimension", "gender"),
    (CubeQuery(measures=("gmv",), period="someday"), "period", "2026-Q1"),
])
def test_refusals_name_the_field_and_the_fix(query: CubeQuery, field: str, words: str) -> None:
    with pytest.raises(AnalyticsError) as refused:
        build_cube_sql(query, TZ)
    assert refused.value.field == field and words in refused.value.fix and refused.value.message_zh


def test_spend_by_gender_names_both_and_what_is_allowed() -> None:
    with pytest.raises(AnalyticsError) as refused:
        build_cube_sql(CubeQuery(measures=("spend",), by=("gender",)), TZ)
    assert "'spend'" in refused.value.message and "gender" in refused.value.message
    assert refused.value.fix == f"spend can be broken down by: {', '.join(allowed_dimensions(MEASURES['spend']))}"


# ---- numbers on the demo against pandas ----------------------------------------------------------


@pytest.fixture(scope="module")
def demo(portrayed_demo: Path):
    workspace = open_workspace(portrayed_demo)
    with open_engine(workspace, read_only=True) as engine:
        tables = {name: engine.read_table(name).to_pandas() for name in
                  ("orders", "order_items", "products", "record_persons", "events", "person_traits", "ad_spend")}
        yield engine, tables


def _local_day(column: pd.Series) -> pd.Series:
    return pd.to_datetime(column, utc=True).dt.tz_convert(TZ).dt.date


def _kept(tables) -> pd.DataFrame:
    orders = tables["orders"]
    kept = orders[~orders["status"].isin(["cancelled", "refunded"])].copy()
    kept["day"] = _local_day(kept["placed_at"])
    persons = tables["record_persons"].query("record_kind == 'order'")[["record_id", "person_id"]]
    return kept.merge(persons, left_on="order_id", right_on="record_id", how="left")


def test_gmv_orders_buyers_aov_by_month_equal_pandas(demo) -> None:
    engine, tables = demo
    kept = _kept(tables)
    kept = kept[(kept["day"] >= date(2025, 1, 1)) & (kept["day"] <= date(2025, 12, 31))].copy()
    kept["month"] = [d.replace(day=1) for d in kept["day"]]
    expected = kept.groupby("month").agg(gmv=("net_amount", lambda s: s.astype(float).sum()),
                                         orders=("order_id", "nunique"), buyers=("person_id", "nunique"))
    frame = run_cube(engine, QUERIES[0][1], TZ).frame.set_index("month")
    assert list(frame.index) == list(expected.index) and len(frame) == 12
    assert frame["gmv"].to_numpy() == pytest.approx(expected["gmv"].to_numpy())
    assert list(frame["orders"]) == list(expected["orders"]) and list(frame["buyers"]) == list(expected["buyers"])
    assert frame["aov"].to_numpy() == pytest.approx((expected["gmv"] / expected["orders"]).to_numpy())
    quarters = run_cube(engine, QUERIES[0][1].roll_up("quarter"), TZ).frame  # roll-up keeps GMV additive
    assert quarters["gmv"].sum() == pytest.approx(frame["gmv"].sum())


def test_gmv_by_category_reads_order_lines_and_sums_to_the_total(demo) -> None:
    engine, tables = demo
    lines = tables["order_items"].merge(_kept(tables)[["order_id"]], on="order_id")
    lines = lines.merge(tables["products"].drop_duplicates("product_id")[["product_id", "category"]], on="product_id")
    expected = lines.groupby("category")["amount"].sum().astype(float)
    frame = run_cube(engine, CubeQuery(measures=("gmv",), by=("category",)), TZ).frame.set_index("category")
    assert frame["gmv"].to_dict() == pytest.approx(expected.to_dict())
    total = run_cube(engine, CubeQuery(measures=("gmv",)), TZ).frame["gmv"].iloc[0]
    assert frame["gmv"].sum() == pytest.approx(total)  # lines and orders agree


def test_views_by_platform_and_gender_equal_pandas(demo) -> None:
    engine, tables = demo
    events = tables["events"]
    views = events[events["event"] == "Product Viewed"].copy()
    views["day"] = _local_day(views["timestamp"])
    views = views[(views["day"] >= date(2025, 7, 1)) & (views["day"] <= date(2025, 9, 30))]
    persons = tables["record_persons"].query("record_kind == 'event'")[["record_id", "person_id"]]
    views = views.merge(persons, left_on="message_id", right_on="record_id", how="left")
    views = views.merge(tables["person_traits"][["person_id", "gender"]], on="person_id", how="left")
    expected = views.groupby(["channel", "gender"], dropna=False).size()
    query = CubeQuery(measures=("views",), by=("platform", "gender"), period="2025-Q3")
    frame = run_cube(engine, query, TZ).frame
    got = {(r.platform, None if pd.isna(r.gender) else r.gender): r.views for r in frame.itertuples()}
    assert got == {(k[0], None if pd.isna(k[1]) else k[1]): v for k, v in expected.items()}


def test_spend_and_ctr_by_ad_channel_equal_pandas(demo) -> None:
    engine, tables = demo
    ads = tables["ad_spend"]
    ads = ads[pd.to_datetime(ads["day"]).dt.year == 2026]
    expected = ads.groupby("channel").agg(spend=("spend", lambda s: s.astype(float).sum()),
                                          clicks=("clicks", "sum"), impressions=("impressions", "sum"))
    frame = run_cube(engine, CubeQuery(measures=("spend", "ctr"), by=("ad_channel",), period="2026"), TZ).frame
    frame = frame.set_index("ad_channel")
    assert frame["spend"].to_dict() == pytest.approx(expected["spend"].to_dict())
    assert frame["ctr"].to_dict() == pytest.approx((expected["clicks"] / expected["impressions"]).to_dict())


def test_slice_equals_the_cell_of_the_breakdown(demo) -> None:
    engine, _ = demo
    query = CubeQuery(measures=("gmv", "buyers"), by=("platform",), period="2026-Q1")
    broken = run_cube(engine, query, TZ).frame.set_index("platform")
    sliced = run_cube(engine, query.slice("platform", "tmall"), TZ).frame
    assert sliced["gmv"].iloc[0] == pytest.approx(broken.at["tmall", "gmv"])
    assert sliced["buyers"].iloc[0] == broken.at["tmall", "buyers"]


def test_cli_cube_prints_table_and_writes_csv(portrayed_demo: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from jingzhun.cli import app  # in process: a subprocess would spend most of the test importing

    workspace = copy_workspace(portrayed_demo, tmp_path / "ws")
    out = tmp_path / "cube.csv"
    done = CliRunner().invoke(app, ["report", "cube", "-w", str(workspace.root), "-m", "gmv", "-m", "aov", "-b",
                                    "quarter", "-b", "channel", "--period", "2026", "--pivot", "channel",
                                    "-o", str(out), "--sql"])
    assert done.exit_code == 0, done.output
    assert "online" in done.output and "SUM(o.net_amount)" in done.output
    written = pd.read_csv(out, encoding="utf-8-sig")
    assert list(written.columns) == ["quarter", "aov|offline", "aov|online", "gmv|offline", "gmv|online"]
    refused = CliRunner().invoke(app, ["report", "cube", "-w", str(workspace.root), "-m", "spend", "-b", "gender"])
    assert isinstance(refused.exception, AnalyticsError) and "ad_channel" in refused.exception.fix


# ---- the same queries on DuckDB and Spark --------------------------------------------------------


@pytest.mark.spark
def test_cube_and_comparison_parity(pipelines_on_both) -> None:
    (duck, spark), _ = pipelines_on_both
    spark.refresh()
    for name, query in QUERIES:
        sql = build_cube_sql(query, TZ)
        report = compare_tables(name, duck.query(sql), spark.query(sql))
        assert report.equal, f"{name}: {report.differences}"
    compared = CubeQuery(measures=("gmv", "aov", "conversion"), by=("day",), period="春节2026±3")
    sql = build_compare_sql(compared, compare_to(parse_period(compared.period), "yoy"), TZ)
    left = duck.query(sql)
    assert left.num_rows == 7
    report = compare_tables("spring_festival_yoy", left, spark.query(sql))
    assert report.equal, report.differences
    assert compare_periods(duck, CubeQuery(measures=("gmv",), period="2026-03"), "mom", timezone=TZ).frame.shape[0] == 1
