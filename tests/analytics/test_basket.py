"""Related products: the engine's association rules equal mlxtend's, on the demo orders and on
the public FP-growth sample that ships inside pyspark; the planted foundation → beauty
sponge rule is recovered; cross-sell, line-up and bundles build on it; rules and TGI give
the same rows on DuckDB and Spark."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from mlxtend.frequent_patterns import apriori
from mlxtend.frequent_patterns import association_rules as mlxtend_rules

from jingzhun.analytics import (
    AnalyticsError,
    association_rules,
    bundle_suggestions,
    cross_sell,
    livestream_lineup,
)
from jingzhun.analytics.basket import (
    SEPARATOR,
    BasketSpec,
    frequent_itemsets_sql,
    order_lines_sql,
    rules_sql,
)
from jingzhun.analytics.fans import Audience, audience_members_sql, distribution_sql
from jingzhun.analytics.staging import MATERIALIZES_SHARED_CTES, query_staged, shared_ctes
from jingzhun.core import open_workspace
from jingzhun.engine import DuckDBEngine, Engine, open_engine, render
from jingzhun.engine.parity import compare_tables
from jingzhun.profiles.tags import data_as_of
from tests.cli.test_foundation import run
from tests.conftest import copy_workspace

METRICS = ("antecedent support", "consequent support", "support", "confidence", "lift", "leverage", "conviction")
OURS = {"antecedent support": "antecedent_support", "consequent support": "consequent_support"}


@pytest.fixture(scope="module")
def demo(portrayed_demo: Path) -> Iterator[Engine]:
    with open_engine(open_workspace(portrayed_demo), read_only=True) as engine:
        yield engine


def _one_hot(baskets: pd.DataFrame) -> pd.DataFrame:
    return pd.crosstab(baskets["basket_id"], baskets["item"]).astype(bool)


def _split(text: str) -> frozenset[str]:
    return frozenset(text.split(SEPARATOR))


def _reference(baskets: pd.DataFrame, min_support: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    onehot = _one_hot(baskets)
    itemsets = apriori(onehot, min_support=min_support, use_colnames=True, max_len=3)
    rules = mlxtend_rules(itemsets, num_itemsets=len(onehot), metric="confidence", min_threshold=0.0)
    return itemsets, rules


def _same(left: float, right: float) -> bool:
    return (math.isinf(left) and math.isinf(right)) or math.isclose(left, right, rel_tol=1e-9, abs_tol=1e-12)


def assert_rules_equal_mlxtend(engine: Engine, spec: BasketSpec, baskets: pd.DataFrame) -> int:
    """Itemset for itemset and rule for rule, every metric value for value."""
    itemsets, reference = _reference(baskets.drop_duplicates(["basket_id", "item"]), spec.support)
    found = engine.query(frequent_itemsets_sql(spec)).to_pandas()
    assert dict(zip(found["itemset"].map(_split), found["support"], strict=True)) == pytest.approx(
        dict(zip(itemsets["itemsets"], itemsets["support"], strict=True)), rel=1e-12)
    ours = association_rules(engine, min_support=spec.support, max_size=3, baskets=spec.baskets,
                             level=spec.level, since=spec.since, until=spec.until).frame
    mine = {(_split(r.antecedent), _split(r.consequent)): r for r in ours.itertuples(index=False)}
    theirs = {(r["antecedents"], r["consequents"]): r for _, r in reference.iterrows()}
    assert mine.keys() == theirs.keys()
    for key, row in theirs.items():
        for metric in METRICS:
            ours_value = float(getattr(mine[key], OURS.get(metric, metric)))
            assert _same(ours_value, float(row[metric])), (key, metric, ours_value, row[metric])
    return len(theirs)


def test_rules_equal_mlxtend_on_the_demo_orders(demo: Engine) -> None:
    for level, support in (("subcategory", 0.004), ("product", 0.001)):
        spec = BasketSpec(level=level, min_support=support)
        baskets = demo.query(order_lines_sql(level)).to_pandas().dropna(subset=["item"])
        compared = assert_rules_equal_mlxtend(demo, spec, baskets)
        assert compared > 20  # pairs and triples, both directions


def _public_baskets(kind: str) -> pd.DataFrame:
    """Public basket data shipped inside pyspark: Spark's FP-growth sample (6 baskets) and
    the MovieLens sample (each user's movies rated 3 or more as a basket: 30 baskets of 100 movies)."""
    import pyspark

    folder = Path(pyspark.__file__).parent / "data" / "mllib"
    if kind == "fpgrowth":
        lines = (folder / "sample_fpgrowth.txt").read_text().splitlines()
        return pd.DataFrame([(f"t{i}", item) for i, line in enumerate(lines) for item in line.split()],
                            columns=["basket_id", "item"])
    rows = [line.split("::") for line in (folder / "sample_movielens_data.txt").read_text().splitlines()]
    return pd.DataFrame([(f"u{user}", f"m{movie}") for user, movie, rating in rows if float(rating) >= 3],
                        columns=["basket_id", "item"])


@pytest.mark.parametrize(("kind", "support"), [("fpgrowth", 0.3), ("movielens", 0.1)])
def test_rules_equal_mlxtend_on_public_baskets_shipped_in_pyspark(tmp_path: Path, kind: str, support: float) -> None:
    baskets = _public_baskets(kind)
    with DuckDBEngine(tmp_path / "baskets.duckdb") as engine:
        engine.write_table("public_baskets", pa.Table.from_pandas(baskets, preserve_index=False))
        compared = assert_rules_equal_mlxtend(engine, BasketSpec(min_support=support, baskets="public_baskets"),
                                              baskets)
    assert compared >= 20


def test_the_planted_foundation_sponge_rule_is_recovered(demo: Engine, portrayed_demo: Path) -> None:
    truth = json.loads((portrayed_demo / "demo-truth" / "patterns.json").read_text())["foundation_sponge"]
    rules = association_rules(demo, level="subcategory").frame
    rule = rules[(rules["antecedent"] == "foundation") & (rules["consequent"] == "beauty_sponge")].iloc[0]
    assert rule["lift"] == pytest.approx(truth["realized"]["lift"], rel=0.1)
    assert rule["confidence"] == pytest.approx(truth["realized"]["p_sponge_given_foundation"], abs=0.04)
    assert rule["consequent_support"] == pytest.approx(truth["realized"]["p_sponge_any_order"], abs=0.01)
    # the strongest two-item rule with real support is the planted one
    pairs = rules[(rules["antecedent_items"] == 1) & (rules["consequent_items"] == 1) & (rules["baskets"] >= 30)]
    assert {pairs.iloc[0]["antecedent"], pairs.iloc[0]["consequent"]} == {"foundation", "beauty_sponge"}


def test_cross_sell_lineup_and_bundles_put_the_sponge_with_the_foundation(demo: Engine) -> None:
    suggestions = cross_sell(demo, "foundation", level="subcategory").frame
    assert suggestions.iloc[0]["suggestion"] == "beauty_sponge" and suggestions["rank"].tolist()[0] == 1
    lineup = livestream_lineup(demo, level="subcategory", slots=8).frame
    foundation = lineup.index[lineup["item"] == "foundation"][0]
    sponge = lineup.loc[foundation + 1]
    assert (sponge["item"], sponge["role"], sponge["after"]) == ("beauty_sponge", "add_on", "foundation")
    assert lineup.loc[foundation, "role"] == "driver" and "add-on" in sponge["reason_en"]
    bundles = bundle_suggestions(demo, level="subcategory").frame
    top = bundles.iloc[0]
    assert {top["trigger"], top["offer"]} == {"foundation", "beauty_sponge"}
    attach = suggestions.iloc[0]["attach_rate"]  # P(sponge | foundation)
    assert top["offer"] == "beauty_sponge" and top["attach_rate"] == pytest.approx(attach)
    assert top["kind"] == "bundle" and top["offer_base_rate"] < attach / 5


def test_bad_parameters_name_the_field(demo: Engine) -> None:
    with pytest.raises(AnalyticsError) as level:
        association_rules(demo, level="sku")
    assert level.value.field == "level"
    with pytest.raises(AnalyticsError) as support:
        association_rules(demo, min_support=1.5)
    assert support.value.field == "min_support"
    with pytest.raises(AnalyticsError) as item:
        cross_sell(demo, "no-such-product")
    assert item.value.field == "item"


def test_rule_queries_render_for_both_engines() -> None:
    for spec in (BasketSpec(level="product", max_size=2), BasketSpec(level="category")):
        for dialect in ("duckdb", "spark"):
            assert "frequent_pairs" in render(rules_sql(spec), dialect)


def test_spark_stages_the_shared_ctes_and_duckdb_runs_one_query() -> None:
    shared = shared_ctes(rules_sql(BasketSpec(level="product")))
    assert shared[:5] == ["basket_items", "basket_count", "frequent_items", "frequent_lines", "frequent_pairs"]
    assert {"triple_candidates", "frequent_triples"} <= set(shared) and "rule_counts" not in shared
    assert MATERIALIZES_SHARED_CTES.get("duckdb") and not MATERIALIZES_SHARED_CTES.get("spark")


def test_rules_report_from_the_command_line(portrayed_demo: Path, tmp_path: Path) -> None:
    workspace = copy_workspace(portrayed_demo, tmp_path / "ws")
    done = run("report", "rules", "-w", str(workspace.root), "--level", "subcategory", "--max-size", "2",
               "--format", "csv", "--output", str(tmp_path / "rules.xlsx"), "--sql")
    assert done.returncode == 0, done.stderr
    header = done.stdout.splitlines()[0]
    assert header.startswith('"rule","antecedent","consequent"') and "foundation → beauty_sponge" in done.stdout
    assert "frequent_pairs" in done.stdout and (tmp_path / "rules.xlsx").stat().st_size > 0


@pytest.mark.spark
def test_rules_and_tgi_are_the_same_on_duckdb_and_spark(pipelines_on_both) -> None:
    (duck, spark), _ = pipelines_on_both
    spark.refresh()
    rules = rules_sql(BasketSpec(level="subcategory", min_support=0.005))
    # Spark reads the shared CTEs from staged tables (analytics.staging); DuckDB runs the one query
    report = compare_tables("rules", duck.query(rules), query_staged(spark, rules))
    assert report.equal and report.left_rows > 20, report.differences
    as_of = data_as_of(duck)
    fans = audience_members_sql(duck, Audience(followers=[]), as_of, "Asia/Shanghai")
    buyers = audience_members_sql(duck, Audience(rule={"order": {"product": {"category": "cosmetics"}}}), as_of,
                                  "Asia/Shanghai")
    tgi = distribution_sql(fans, buyers, ["age_band", "gender", "member_level"])
    report = compare_tables("tgi", duck.query(tgi), query_staged(spark, tgi))
    assert report.equal and report.left_rows > 10, report.differences
