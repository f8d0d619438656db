"""Recommendations: exclusions and similarity on a hand-built shop, quality against the popularity
baseline on the demo, the serving API and CLI, and DuckDB-Spark parity of the served tables."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jingzhun.activation import (
    RecommendError,
    RecommendSettings,
    compute_recommendations,
    evaluate_recommender,
    recommend_for,
    related_products,
)
from jingzhun.activation.recommend_lists import (
    evaluation_sql,
    guess_sql,
    recommendations_sql,
    related_sql,
)
from jingzhun.activation.recommend_settings import load_recommend_settings
from jingzhun.activation.recommend_sql import (
    affinity_sql,
    catalogue_sql,
    cycle_days_sql,
    group_top_sql,
    interactions_sql,
    neighbours_sql,
    segments_sql,
    tastes_sql,
)
from jingzhun.collect.inventory import stock_on_hand_sql
from jingzhun.core import ConfigError, Workspace
from jingzhun.engine import Engine, open_engine, render
from jingzhun.engine.parity import compare_tables
from tests.activation import recommend_world as world
from tests.cli.test_foundation import run
from tests.conftest import copy_workspace

AS_OF = world.AS_OF


@pytest.fixture
def shop(workspace: Workspace) -> tuple[Workspace, Engine]:
    engine = open_engine(workspace)
    world.write_world(engine)
    # One test window is enough here (the shop is judged by its exclusions, not its precision).
    (workspace.definitions_dir / "recommend.yaml").write_text("evaluation: {folds: 1}\n", encoding="utf-8")
    yield workspace, engine
    engine.close()


def _lists(engine: Engine) -> pd.DataFrame:
    return engine.read_table("recommendations").to_pandas()


# ---- exclusions -------------------------------------------------------------------------------


def test_out_of_stock_owned_and_recently_bought_are_never_recommended(shop) -> None:
    workspace, engine = shop
    result = compute_recommendations(workspace, engine)
    lists = _lists(engine)
    assert set(lists["kind"]) == {"guess_you_like", "popular", "new_arrival"}
    # X1 is the best seller but the ledger says none is left anywhere.
    assert "X1" not in set(lists["product_id"])
    assert "X1" not in set(engine.read_table("related_products").to_pandas()["related_product_id"])
    # P_A bought the foundation F1 yesterday (cycle 90 days); P_C owns the dress D1.
    assert "F1" not in set(lists.loc[lists.person_id == "P_A", "product_id"])
    assert "D1" not in set(lists.loc[lists.person_id == "P_C", "product_id"])
    # P_B's only order was cancelled: D2 is not theirs, and the store's top seller F1 is offered.
    assert "F1" in set(lists.loc[(lists.person_id == "P_B") & (lists.kind == "guess_you_like"), "product_id"])
    # N1 launched 10 days ago: a new arrival for the foundation buyer, with a reason in both languages.
    new = lists[(lists.person_id == "P_A") & (lists.kind == "new_arrival")]
    assert list(new["product_id"]) == ["N1"]
    assert "新品上市" in new["reason_zh"].iloc[0] and "new in cosmetics" in new["reason_en"].iloc[0]
    assert set(lists["model_version"]) == {result.model_version}


def test_a_consumable_comes_back_after_its_cycle(shop) -> None:
    workspace, engine = shop
    compute_recommendations(workspace, engine, as_of=AS_OF + dt.timedelta(days=100))
    lists = _lists(engine)
    mine = lists[(lists.person_id == "P_A") & (lists.kind == "guess_you_like")]
    assert "F1" in set(mine["product_id"])  # 101 days after the purchase, past the 90-day cycle
    # A shorter cycle in recommend.yaml brings it back sooner; a longer one keeps it away.
    longer = RecommendSettings(cycle_days={"foundation": 200}, evaluation={"folds": 1})
    compute_recommendations(workspace, engine, as_of=AS_OF + dt.timedelta(days=100), settings=longer)
    lists = _lists(engine)
    assert "F1" not in set(lists.loc[lists.person_id == "P_A", "product_id"])


def test_reasons_name_the_item_that_led_to_the_recommendation(shop) -> None:
    workspace, engine = shop
    compute_recommendations(workspace, engine)
    lists = _lists(engine)
    similar = lists[lists.source_product_id.notna()]
    assert len(similar) > 0
    for row in similar.itertuples():
        assert f"商品{row.source_product_id}" in row.reason_zh and f"商品{row.source_product_id}" in row.reason_en
    popular = lists[lists.kind == "popular"]
    assert set(popular["reason_zh"]) == {"全店热卖"} and set(popular["reason_en"]) == {"popular across the store"}


def test_the_offline_test_ranks_test_users_as_the_served_lists_would(shop) -> None:
    """The evaluation computes 猜你喜欢 only for test users; their rows must equal the full run's."""
    from jingzhun.activation.recommend import _collect, _drop_scratch, _Run

    workspace, engine = shop
    cutoff = AS_OF - dt.timedelta(days=45)
    _collect(engine, AS_OF, workspace.config.timezone)
    run = _Run(engine, RecommendSettings(), workspace.config.timezone, cutoff)
    run.prepare()
    run.guess(10)
    full = engine.read_table("recommend_guess").to_pandas()
    run.guess(10, buyers_until=AS_OF)
    focused = engine.read_table("recommend_guess").to_pandas()
    _drop_scratch(engine)
    # Bought after the cut-off and seen before it: P01 (viewed N1 90 days ago), P08 (ordered 60 days ago).
    assert set(focused.person_id) == {"P01", "P08"}
    key = ["person_id", "rank"]
    expected = full[full.person_id.isin(focused.person_id)].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(focused.sort_values(key).reset_index(drop=True), expected)


# ---- similarity against an independent computation ---------------------------------------------


def expected_similarity(settings: RecommendSettings) -> pd.DataFrame:
    """Asymmetric cosine over time-decayed weighted interactions, computed with pandas."""
    weights = settings.action_weights.model_dump()
    rows = [(person, pid, "purchase", days) for _, person, days, status, products in world.ORDERS
            if status not in ("cancelled", "refunded") for pid in products]
    rows += [(person, pid, "cart" if event == "Product Added" else "view", days)
             for _, person, days, event, pid in world.EVENTS]
    seen = pd.DataFrame(rows, columns=["person", "product", "action", "days"])
    seen["w"] = seen["action"].map(weights) * np.power(0.5, seen["days"] / settings.similarity_half_life_days)
    affinity = seen.groupby(["person", "product"])["w"].sum().unstack(fill_value=0.0)
    bought = seen[seen.action == "purchase"].assign(one=1).pivot_table(
        index="person", columns="product", values="one", aggfunc="max", fill_value=0)
    bought = bought.reindex(index=affinity.index, columns=affinity.columns, fill_value=0)
    present = (affinity > 0).astype(int)
    dot, support, co = affinity.T @ affinity, present.T @ present, bought.T @ bought
    norm = np.sqrt(np.diag(dot))
    alpha, shrink = settings.similarity_alpha, settings.similarity_shrinkage
    score = dot / np.outer(norm ** (2 * alpha), norm ** (2 - 2 * alpha)) * support / (support + shrink)
    lift = support * len(affinity) / np.outer(present.sum(), present.sum())
    frame = pd.concat({"score": score.stack(), "support": support.stack(), "co_purchases": co.stack(),
                       "lift": lift.stack()}, axis=1)
    frame.index.names = ["product_id", "related_product_id"]
    frame = frame.reset_index()
    return frame[(frame.product_id != frame.related_product_id) & (frame.support > 0)]


def test_item_similarity_matches_an_independent_pandas_computation(shop) -> None:
    workspace, engine = shop
    settings = load_recommend_settings(workspace)
    compute_recommendations(workspace, engine)
    served = engine.read_table("related_products").to_pandas()
    similar = served[served.basis != "same_category"]
    expected = expected_similarity(settings).set_index(["product_id", "related_product_id"])
    joined = similar.join(expected, on=["product_id", "related_product_id"], rsuffix="_pandas")
    assert len(similar) >= 20 and joined["score_pandas"].notna().all()
    assert np.allclose(joined["score"], joined["score_pandas"], atol=1e-8)
    assert (joined["support"] == joined["support_pandas"]).all()
    assert (joined["co_purchases"] == joined["co_purchases_pandas"]).all()
    assert np.allclose(joined["lift"], joined["lift_pandas"], atol=1e-6)
    # Each page lists every available neighbour, best first, ties by id; then its shelf.
    available = set(world.PRODUCTS) - {"X1"}
    for product, rows in served.groupby("product_id"):
        wanted = expected.reset_index()
        wanted = wanted[(wanted.product_id == product) & wanted.related_product_id.isin(available)]
        wanted = wanted.assign(rounded=wanted.score.round(9)).sort_values(["rounded", "related_product_id"],
                                                                          ascending=[False, True])
        ranked = rows.sort_values("rank")
        assert list(ranked["related_product_id"][: len(wanted)]) == list(wanted["related_product_id"][:10])
        assert list(ranked["rank"]) == list(range(1, len(ranked) + 1))
    pair = served[(served.product_id == "F1") & (served.related_product_id == "S1")].iloc[0]
    assert pair.basis == "also_bought" and pair.co_purchases == 5 and "（5 位）" in pair.reason_zh
    assert pair.reason_en == "5 customers who bought this also bought it"


# ---- quality on the demo --------------------------------------------------------------------------


def test_recommender_beats_popularity_on_the_demo(portrayed_demo: Path, tmp_path: Path) -> None:
    """Pooled over six consecutive 60-day windows of the 1,500-person demo. Across demo seeds
    3, 7 and 11 the recommender's precision@10 was 1.14-1.19x the baseline's, its recall@10
    1.10-1.14x, its coverage 3.2-3.8x (docs/recommendations.md); the margins asserted are
    below the worst of those, since the demo's identity resolution keeps improving."""
    workspace = copy_workspace(portrayed_demo, tmp_path / "ws")
    with open_engine(workspace) as engine:
        stored = engine.query("SELECT model_version, metrics FROM model_runs WHERE model = 'recommend'").to_pylist()
        served = engine.query("SELECT DISTINCT model_version FROM recommendations").column(0).to_pylist()
        result = evaluate_recommender(workspace, engine, folds=6)
    assert served == [stored[-1]["model_version"]]  # every row traces to the stored evaluation
    assert {"recommender", "popularity", "cutoffs"} <= set(json.loads(stored[-1]["metrics"]))
    metrics = result.metrics
    print("\n" + metrics.to_string())  # noqa: T201 - the numbers behind the claim, in the test output
    ours, base = metrics.loc["recommender"], metrics.loc["popularity"]
    assert ours["users"] == base["users"] > 500
    assert ours["precision_at_10"] > 1.05 * base["precision_at_10"]
    assert ours["recall_at_10"] > 1.05 * base["recall_at_10"]
    assert ours["coverage"] > 2.5 * base["coverage"] and ours["novelty"] > base["novelty"]


# ---- serving API and CLI --------------------------------------------------------------------------


def test_recommend_for_any_identifier_and_related_products(portrayed_demo: Path) -> None:
    from jingzhun.core import open_workspace

    workspace = open_workspace(portrayed_demo)
    with open_engine(workspace, read_only=True) as engine:
        member = engine.query("SELECT i.id_value, i.person_id FROM identities AS i JOIN recommendations AS r "
                              "ON r.person_id = i.person_id WHERE i.id_type = 'member_id' "
                              "ORDER BY i.id_value LIMIT 1").to_pylist()[0]
        found = recommend_for(engine, f"member_id:{member['id_value']}", k=5, workspace=workspace)
        assert found.person_id == member["person_id"] and len(found.items) == 5
        assert list(found.items["rank"]) == [1, 2, 3, 4, 5] and found.items["name"].notna().all()
        assert found.items["reason_zh"].str.len().gt(0).all() and "recommendations" in found.sql
        every = recommend_for(engine, member["person_id"], k=3, kind="all")
        assert set(every.items["kind"]) <= {"guess_you_like", "popular", "new_arrival"}
        product = found.items["product_id"].iloc[0]
        related = related_products(engine, product, k=4)
        assert len(related.items) == 4 and product not in set(related.items["related_product_id"])
        with pytest.raises(RecommendError, match="did you mean 'popular'"):
            recommend_for(engine, member["person_id"], kind="populer")
        with pytest.raises(RecommendError, match="no product") as missing:
            related_products(engine, "P-NOPE")
        assert "商品" in missing.value.describe("zh")


def test_cli_for_related_and_evaluate(portrayed_demo: Path, tmp_path: Path) -> None:
    demo = copy_workspace(portrayed_demo, tmp_path / "ws").root
    from jingzhun.core import open_workspace

    with open_engine(open_workspace(demo), read_only=True) as engine:
        person, product = engine.query("SELECT person_id, product_id FROM recommendations "
                                       "WHERE kind = 'guess_you_like' ORDER BY person_id, rank LIMIT 1").to_pylist()[0].values()
    shown = run("recommend", "for", person, "-w", str(demo), "-k", "3", "--sql")
    assert shown.returncode == 0, shown.stderr
    assert product in shown.stdout and "FROM recommendations" in shown.stdout
    related = run("recommend", "related", product, "-w", str(demo), "-f", "json")
    assert related.returncode == 0 and len(json.loads(related.stdout)) == 10
    judged = run("recommend", "evaluate", "-w", str(demo), "--test-days", "90", "--folds", "1", "-f", "json")
    assert judged.returncode == 0, judged.stderr
    assert {row["model"] for row in json.loads(judged.stdout)} == {"recommender", "popularity"}


# ---- settings and SQL -----------------------------------------------------------------------------


def test_a_bad_setting_names_the_key_and_the_fix(workspace: Workspace) -> None:
    (workspace.definitions_dir / "recommend.yaml").write_text("k: 10\nneighbors: 20\n", encoding="utf-8")
    with pytest.raises(ConfigError) as wrong:
        load_recommend_settings(workspace)
    assert "neighbors" in str(wrong.value) and "neighbours" in str(wrong.value)
    (workspace.definitions_dir / "recommend.yaml").write_text("guess: {taste_prior: -1}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="guess.taste_prior"):
        load_recommend_settings(workspace)


def test_every_query_renders_for_spark() -> None:
    s = RecommendSettings()
    stock = stock_on_hand_sql("recommend_stock_lines", AS_OF)
    queries = [
        interactions_sql(AS_OF), catalogue_sql(stock, AS_OF, AS_OF.date(), 1e-7, cycle_days_sql(s.cycles(), 90),
                                               {k: v.model_dump() for k, v in s.labels().items()}),
        affinity_sql(AS_OF, s.action_weights.model_dump(), 1e-7, 1e-7), neighbours_sql(50, 0.5, 2.0, 30),
        segments_sql(AS_OF, 30), group_top_sql(AS_OF, 1e-7, 60), guess_sql(AS_OF, s.guess, 10), guess_sql(AS_OF, s.guess, 10, buyers_until=AS_OF),
        tastes_sql(AS_OF, "Asia/Shanghai", 1e-7),
        recommendations_sql(AS_OF, AS_OF.date(), 10, "v", AS_OF), related_sql(10, "v", AS_OF),
        evaluation_sql(AS_OF, AS_OF, 10, 70),
    ]
    for query in queries:
        assert render(query, "spark").strip()


# ---- parity ---------------------------------------------------------------------------------------


@pytest.mark.spark
def test_served_tables_match_on_duckdb_and_spark(pipelines_on_both) -> None:
    (duck, spark), results = pipelines_on_both
    spark.refresh()
    took = {name: [r.seconds for r in runs if r.stage == "recommend"] for name, runs in results.items()}
    print(f"\nrecommend stage seconds: {took}")  # noqa: T201 - how long the stage took on each engine
    for table in ("recommendations", "related_products"):
        left, right = duck.read_table(table), spark.read_table(table)
        assert left.num_rows > 1000, table
        report = compare_tables(table, left.drop_columns(["computed_at"]), right.drop_columns(["computed_at"]))
        assert report.equal, f"{table}: {report.differences}"
    runs = "SELECT model_version, metrics, features, rows_trained FROM model_runs WHERE model = 'recommend'"
    assert duck.query(runs).to_pylist() == spark.query(runs).to_pylist()
