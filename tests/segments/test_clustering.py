"""Clustering: k by silhouette, readable descriptions, clear errors, and the demo's planted
personas recovered (adjusted Rand index printed with `-s` and recorded as a property).

Hand-made stores run on DuckDB and, under `-m spark`, on Spark; the demo test reads the
session's portrayed demo (1,500 persons, pipeline run) read-only.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from jingzhun.core import open_workspace
from jingzhun.engine import Engine, open_engine, parse_sql, render
from jingzhun.schema.tables import (
    EVENTS,
    ORDER_ITEMS,
    ORDERS,
    PERSON_TRAITS,
    PERSONS,
    PRODUCTS,
    RECORD_PERSONS,
)
from jingzhun.segments import clustering
from jingzhun.segments.clustering import (
    DEFAULT_TRAITS,
    ClusteringError,
    category_mix_sql,
    cluster_audience,
    cluster_frame,
    engaged_population_sql,
    feature_label,
    fit_clusters,
)
from tests.profiles.test_rules import arrow_rows
from tests.segments.conftest import person_truth

# Three kinds of customer, eight each: (gender, age, aov, category, touched how).
BLOBS = {
    "young_beauty": ("F", 23, 120.0, "cosmetics", "view"),
    "home_men": ("M", 46, 900.0, "home", "order"),
    "fashion_women": ("F", 34, 400.0, "apparel", "both"),
}
PER_BLOB = 8
PRODUCTS_BY_CATEGORY = {"cosmetics": "P1", "home": "P2", "apparel": "P3"}
AT = datetime(2026, 1, 1, tzinfo=UTC)


def _person_rows() -> tuple[list[dict], dict[str, str]]:
    """person_traits rows with a little spread inside each blob, and each person's blob."""
    rows, blob_of = [], {}
    for blob, (gender, age, aov, _, _) in BLOBS.items():
        for i in range(PER_BLOB):
            person = f"{blob}_{i}"
            value = Decimal(f"{aov * (1 + 0.02 * (i % 3)):.2f}")
            rows.append(dict(person_id=person, gender=gender, age=age + i % 3 - 1, aov=value,
                             orders_total=2, gmv_total=2 * value))
            blob_of[person] = blob
    return rows, blob_of


def _touch_rows(blob_of: dict[str, str]) -> dict:
    """Three product views and/or two bought lines per person in their blob's category."""
    events, orders, items, owners = [], [], [], []
    for person, blob in blob_of.items():
        category, how = BLOBS[blob][3], BLOBS[blob][4]
        if how in ("view", "both"):
            for j in range(3):
                message = f"e-{person}-{j}"
                events.append(dict(message_id=message, type="track", event="Product Viewed",
                                   timestamp=AT, received_at=AT, properties=json.dumps({"category": category})))
                owners.append(dict(record_kind="event", record_id=message, person_id=person))
        if how in ("order", "both"):
            order = f"o-{person}"
            orders.append(dict(order_id=order, status="completed", channel="online", placed_at=AT,
                               currency="CNY"))
            items += [dict(order_id=order, line_no=n, sku=f"SKU-{PRODUCTS_BY_CATEGORY[category]}",
                           quantity=1) for n in (1, 2)]
            owners.append(dict(record_kind="order", record_id=order, person_id=person))
    return {EVENTS: events, ORDERS: orders, ORDER_ITEMS: items, RECORD_PERSONS: owners}


def load_blobs(engine: Engine) -> dict[str, str]:
    """A small store of three obvious groups; returns each person's group."""
    people, blob_of = _person_rows()
    products = [dict(product_id=p, sku=f"SKU-{p}", category=c) for c, p in PRODUCTS_BY_CATEGORY.items()]
    persons = [dict(person_id=p, status="active", created_at=AT) for p in blob_of]
    store = {PERSONS: persons, PERSON_TRAITS: people,
             PRODUCTS: products, **_touch_rows(blob_of)}
    for table, rows in store.items():
        engine.create_table(table.name, table.columns)
        engine.write_table(table.name, arrow_rows(table, rows), mode="replace")
    return blob_of


# ---- hand-made data ------------------------------------------------------------------------


def test_k_is_chosen_by_silhouette_on_obvious_blobs(engine: Engine) -> None:
    blob_of = load_blobs(engine)
    result = cluster_audience(engine, ["age", "aov", "gender", "category_mix"])
    assert result.k == 3
    assert list(result.silhouettes["k"]) == list(range(2, 9))
    assert result.silhouette == result.silhouettes["silhouette"].max()
    truth = result.assignments["person_id"].map(blob_of)
    assert adjusted_rand_score(truth, result.assignments["cluster"]) == 1.0
    assert list(result.clusters["size"]) == [PER_BLOB] * 3
    assert result.clusters["share"].sum() == pytest.approx(1.0)
    assert set(result.sql) == {"portrait", "category_mix"}
    again = cluster_audience(engine, ["age", "aov", "gender", "category_mix"])
    pd.testing.assert_frame_equal(again.assignments, result.assignments)


def test_descriptions_name_what_sets_each_cluster_apart(engine: Engine) -> None:
    blob_of = load_blobs(engine)
    result = cluster_audience(engine, ["age", "aov", "gender", "category_mix"], k=3)
    described = result.assignments.assign(blob=result.assignments["person_id"].map(blob_of))
    cluster_of = described.groupby("blob")["cluster"].first()
    beauty, home = cluster_of["young_beauty"], cluster_of["home_men"]
    assert "美妆占浏览和购买的 100%（整体 33%）" in result.describe(beauty, "zh")
    assert "cosmetics 100% of views and purchases (overall 33%)" in result.describe(beauty, "en")
    assert "男性占 100%（整体 33%）" in result.describe(home, "zh")
    assert "100% men (overall 33%)" in result.describe(home, "en")
    top = result.distinguishing[result.distinguishing["cluster"] == home]
    assert {"gender=M", "category_share:home"} <= set(top["feature"])
    assert top["std_diff"].abs().is_monotonic_decreasing
    assert (top["std_diff"].abs() >= clustering.MIN_DIFFERENCE).all()


def test_a_described_profile_reads_like_a_marketer_would_say_it() -> None:
    index = pd.Index([f"p{i}" for i in range(20)], name="person_id")
    women = np.arange(20) < 10
    frame = pd.DataFrame({"age": np.where(women, 25.0, 45.0) + np.tile([-1.0, 0.0, 1.0, 0.0], 5),
                          "gender=F": women.astype(float), "gender=M": (~women).astype(float)}, index=index)
    result = cluster_frame(frame, ["gender"], k=2)
    young = result.assignments.set_index("person_id").loc["p0", "cluster"]
    assert result.describe(young, "zh") == "女性占 100%（整体 50%），平均年龄 25 岁（整体 35 岁）"
    assert result.describe(young, "en") == "100% women (overall 50%), average age 25 (overall 35)"
    assert feature_label("favourite_category=cosmetics") == ("最常买品类：美妆", "favourite category: cosmetics")


def test_category_shares_count_only_persons_with_a_value() -> None:
    """A person without a gender is unknown, not a third gender: shares are among the known."""
    rng = np.random.default_rng(3)
    known = rng.random(300) < 0.5
    female = rng.random(300) < 0.5
    frame = pd.DataFrame({"gender=F": np.where(known & female, 1.0, 0.0),
                          "gender=M": np.where(known & ~female, 1.0, 0.0),
                          "age": rng.normal(35, 8, 300)})
    result = cluster_frame(frame, ["gender"], k=2)
    gender = result.profile[result.profile["feature"] == "gender=F"]
    assert gender["overall_value"].iloc[0] == pytest.approx((known & female).sum() / known.sum())


def test_the_sampled_path_for_large_audiences_finds_the_blobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above SELECTION_ROWS, k is chosen on a sample and the final fit runs on every row."""
    monkeypatch.setattr(clustering, "SELECTION_ROWS", 600)
    monkeypatch.setattr(clustering, "SILHOUETTE_ROWS", 200)
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 4, 3_000)
    matrix = rng.normal(0, 6, (4, 5))[truth] + rng.normal(0, 1, (3_000, 5))
    fit = fit_clusters(matrix)
    assert fit.k == 4
    assert adjusted_rand_score(truth, fit.labels) == 1.0
    assert list(np.bincount(fit.labels)) == sorted(np.bincount(fit.labels), reverse=True)


# ---- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "field", "en", "zh"), [
    (dict(traits=["age", "shoe_size"]), "traits", "shoe_size", "shoe_size"),
    (dict(traits=["age", "category_share:toys"]), "traits", "category_share:toys", "未知的细分特征"),
    (dict(traits=[]), "traits", "No traits", "没有选择"),
    (dict(k=1), "k", "at least 2", "至少为 2"),
    (dict(k=25), "k", "more than the audience's 24 persons", "超过了人群的 24 位客户"),
    (dict(k_range=(1, 4)), "k_range", "2 <= low <= high", "下限"),
    (dict(population="SELECT person_id FROM persons WHERE status = 'gone'"), "population",
     "audience is empty", "人群为空"),
])
def test_errors_name_the_field_in_both_languages(engine: Engine, kwargs: dict, field: str, en: str,
                                                 zh: str) -> None:
    load_blobs(engine)
    with pytest.raises(ClusteringError) as raised:
        cluster_audience(engine, **({"traits": ["age", "aov"]} | kwargs))
    assert raised.value.field == field
    assert en in raised.value.describe("en")
    assert zh in raised.value.describe("zh")
    assert raised.value.fix and raised.value.fix_zh


def test_too_few_distinct_profiles_for_k_is_an_error() -> None:
    frame = pd.DataFrame({"age": [30.0] * 5 + [40.0] * 5})
    with pytest.raises(ClusteringError, match="2 distinct profiles") as raised:
        cluster_frame(frame, k=3)
    assert raised.value.field == "k"


# ---- SQL ------------------------------------------------------------------------------------


def test_shipped_queries_render_for_both_engines() -> None:
    population = parse_sql("SELECT person_id FROM segment_members WHERE segment_id = 'vip'")
    for query in (category_mix_sql(["apparel", "美妆"], population), engaged_population_sql(5)):
        for dialect in ("duckdb", "spark"):
            assert "record_persons" in render(query, dialect)
    assert "'美妆'" in render(category_mix_sql(["美妆"]), "duckdb")  # bound, not formatted


# ---- the demo ------------------------------------------------------------------------------


def _ari(result: clustering.Clustering, truth: pd.DataFrame) -> tuple[float, int]:
    joined = result.assignments.set_index("person_id").join(truth, how="inner")
    return adjusted_rand_score(joined["persona"], joined["cluster"]), len(joined)


def test_demo_clusters_recover_the_planted_personas(portrayed_demo: Path, record_property) -> None:
    """Persons with at least 5 product touches (views, cart adds, bought lines): below that
    a category mix is a guess, and the demo's identity graph leaves ~2 profiles per
    customer, most with a few records of one channel. Measured (seed 11, 693 persons, 667
    with an answer key): k = 5 chosen, ARI 0.33; without the category mix 0.06; with
    every trait and the mix 0.02; a supervised classifier (5-fold) reaches ~0.5. The
    bargain hunters (an even category mix by design) and some premium loyalists are what
    no clustering separates. 0.25 fails if the mix, the weighting or the preparation breaks."""
    with open_engine(open_workspace(portrayed_demo), read_only=True) as engine:
        started = time.perf_counter()
        result = cluster_audience(engine, population=engaged_population_sql(5))
        seconds = time.perf_counter() - started
        truth = person_truth(engine, portrayed_demo)
        without_mix = cluster_audience(engine, [t for t in DEFAULT_TRAITS if t != "category_mix"],
                                       population=engaged_population_sql(5))
    ari, persons = _ari(result, truth)
    ari_without_mix, _ = _ari(without_mix, truth)
    print(f"\ndemo clustering: {len(result.assignments)} persons ({persons} with an answer key), "  # noqa: T201
          f"k={result.k}, ARI={ari:.3f} (without category mix {ari_without_mix:.3f}), {seconds:.2f} s")
    print(result.clusters[["cluster", "size", "description_zh", "description_en"]].to_string())  # noqa: T201
    record_property("ari", round(ari, 4))
    record_property("ari_without_category_mix", round(ari_without_mix, 4))
    record_property("seconds", round(seconds, 2))
    assert ari >= 0.25
    assert ari >= ari_without_mix + 0.15
    assert 3 <= result.k <= 8
    joined = result.assignments.set_index("person_id").join(truth, how="inner")
    home = joined[joined["persona"] == "home_maker"]["cluster"].mode()[0]
    fashion = joined[joined["persona"] == "fashion_trendsetter"]["cluster"].mode()[0]
    assert "家居" in result.describe(home, "zh") and "home goods" in result.describe(home, "en")
    assert "服饰" in result.describe(fashion, "zh") and "apparel" in result.describe(fashion, "en")


@pytest.mark.skipif(not os.environ.get("JINGZHUN_CLUSTER_1M"),
                    reason="set JINGZHUN_CLUSTER_1M=1 to time clustering 1,000,000 x 20")
def test_time_a_million_persons(record_property) -> None:
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 6, 1_000_000)
    values = rng.normal(0, 2, (6, 20))[truth] + rng.normal(0, 1, (1_000_000, 20))
    frame = pd.DataFrame(values, columns=[f"x{i}" for i in range(20)])
    started = time.perf_counter()
    result = cluster_frame(frame)
    seconds = time.perf_counter() - started
    print(f"\n1,000,000 x 20: k={result.k} in {seconds:.1f} s, "  # noqa: T201
          f"ARI vs the blobs {adjusted_rand_score(truth, result.assignments['cluster']):.3f}")
    record_property("seconds_1m", round(seconds, 1))
