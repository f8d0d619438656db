"""Lookalike audiences: a hand-made store where the seed differs by one trait (on DuckDB
and Spark), the request errors, and the demo's planted high-value persons found again
from a seed of 60% of them."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sqlglot import exp

from jingzhun.core import open_workspace
from jingzhun.engine import Engine, open_engine, parse_sql
from jingzhun.profiles.traits import PERSON_TRAITS
from jingzhun.schema.tables import PERSONS, TAG_DEFINITIONS, TAGS
from jingzhun.segments.feature_labels import feature_label
from jingzhun.segments.lookalike import Lookalike, LookalikeError, find_lookalikes
from tests.profiles.test_rules import arrow_rows
from tests.segments.conftest import person_truth

# ---- a hand-made store: 400 persons, the seed (P000-P059) and 40 lookalikes (P060-P099)
# watch livestreams; everything else is noise drawn the same way for everyone.

PERSON_COUNT, SEED_COUNT, LOOKALIKE_COUNT = 400, 60, 40
SEED_SQL = "SELECT person_id FROM persons WHERE person_id < 'P060'"
STARTED = datetime(2026, 1, 1, tzinfo=UTC)


def person_rows() -> list[dict]:
    rng = np.random.default_rng(7)
    watchers = np.arange(PERSON_COUNT) < SEED_COUNT + LOOKALIKE_COUNT
    livestream = np.where(watchers, rng.integers(20, 41, PERSON_COUNT), rng.integers(0, 4, PERSON_COUNT))
    return [{
        "person_id": f"P{i:03d}", "age": int(rng.integers(18, 60)),
        "orders_365d": int(rng.poisson(2)), "gmv_365d": Decimal(f"{rng.gamma(2.0, 300.0):.2f}"),
        "sessions_90d": int(rng.poisson(6)), "livestream_views_90d": int(livestream[i]),
        "gender": str(rng.choice(["F", "M"])), "province": str(rng.choice(["上海", "浙江", "广东", "四川"])),
        "member_level": str(rng.choice(["普通", "银卡", "金卡"])),
    } for i in range(PERSON_COUNT)]


def coupon_holders() -> np.ndarray:
    """Who holds the noise tag `coupon_sensitive` (30%, regardless of the seed)."""
    return np.random.default_rng(8).random(PERSON_COUNT) < 0.3


def load_store(engine: Engine) -> None:
    people = person_rows()
    noise = coupon_holders()
    tables = {
        PERSONS: [{"person_id": p["person_id"], "status": "active", "created_at": STARTED} for p in people],
        PERSON_TRAITS: people,
        TAGS: [{"person_id": p["person_id"], "tag_id": "coupon_sensitive", "tag_version": 1, "valid_from": STARTED}
               for p, held in zip(people, noise, strict=True) if held],
        TAG_DEFINITIONS: [{"tag_id": "coupon_sensitive", "version": 1, "name_zh": "优惠券敏感",
                           "name_en": "Coupon-sensitive", "category": "marketing"}],
    }
    for table, rows in tables.items():
        engine.create_table(table.name, table.columns)
        engine.write_table(table.name, arrow_rows(table, rows), mode="replace")


@pytest.fixture
def store(engine: Engine) -> Engine:
    load_store(engine)
    return engine


def test_the_one_trait_that_sets_the_seed_apart_drives_the_lookalike(store: Engine) -> None:
    result = find_lookalikes(store, SEED_SQL, top_n=LOOKALIKE_COUNT)
    top = result.drivers.iloc[0]
    assert top.feature == "livestream_views_90d"
    assert (top.name_zh, top.name_en) == ("近90天直播观看次数", "Livestream views (90 days)")
    assert top.gain_share > 0.5 and top.seed_mean > 20 and top.population_mean < 10
    # the 40 planted lookalikes are the top 40
    planted = {f"P{i:03d}" for i in range(SEED_COUNT, SEED_COUNT + LOOKALIKE_COUNT)}
    assert len(planted & set(result.ranked["person_id"])) >= 36
    assert list(result.ranked["rank"]) == list(range(1, LOOKALIKE_COUNT + 1))
    assert result.ranked["score"].is_monotonic_decreasing
    assert result.metrics["holdout_auc"] > 0.95
    assert result.metrics["holdout_recall_at_cut"] == 1.0
    assert result.metrics["seed_used"] == SEED_COUNT and result.metrics["candidates"] == PERSON_COUNT - SEED_COUNT
    assert "livestream_views_90d" in dict(result.drivers.set_index("feature")["kind"])
    assert "SELECT DISTINCT person_id" in result.sql["seed"] and "person_traits" in result.sql["portrait"]


def test_excluding_the_seed_defining_trait_leaves_only_noise(store: Engine) -> None:
    result = find_lookalikes(store, SEED_SQL, exclude=["livestream_views_90d"])
    assert "livestream_views_90d" not in set(result.drivers["feature"])
    assert result.metrics["holdout_auc"] < 0.8  # noise traits cannot tell the seed apart
    assert len(result.ranked) == PERSON_COUNT - SEED_COUNT  # no cut: every candidate, ranked


def test_threshold_population_and_reruns(store: Engine) -> None:
    population = parse_sql("SELECT person_id FROM persons WHERE person_id >= 'P030'")
    result = find_lookalikes(store, SEED_SQL, population=population, threshold=0.5)
    assert (result.ranked["similarity"] >= 0.5).all() and len(result.ranked) > 0
    ids = set(result.ranked["person_id"])
    assert all(pid >= "P060" for pid in ids)  # inside the population, outside the seed
    assert result.metrics["candidates"] == PERSON_COUNT - SEED_COUNT
    assert "P030" in result.sql["population"]
    again = find_lookalikes(store, SEED_SQL, population=population, threshold=0.5)
    assert again.ranked.equals(result.ranked)


def test_tag_and_category_features_have_readable_names(store: Engine) -> None:
    result = find_lookalikes(store, SEED_SQL, numeric=("age",), categorical=("member_level",))
    drivers = result.drivers.set_index("feature")
    assert set(drivers.index) <= {"age", "tag:coupon_sensitive", "member_level=普通", "member_level=银卡",
                                  "member_level=金卡"}
    tag = drivers.loc["tag:coupon_sensitive"]  # named from tag_definitions, means are shares
    assert (tag.name_zh, tag.name_en, tag.kind) == ("标签：优惠券敏感", "Tag: Coupon-sensitive", "share")
    held = coupon_holders()
    assert tag.seed_mean == pytest.approx(held[:SEED_COUNT].mean())
    assert tag.population_mean == pytest.approx(held[SEED_COUNT:].mean())
    assert feature_label("tag:coupon_sensitive", {"coupon_sensitive": ("优惠券敏感", "Coupon-sensitive")}) == (
        "标签：优惠券敏感", "Tag: Coupon-sensitive")
    assert feature_label("member_level=金卡") == ("会员等级 = 金卡", "Member level = 金卡")
    assert feature_label("score:churn_90d") == ("评分：90天流失风险", "Score: Churn risk (90 days)")


def test_a_seed_selected_by_one_trait_gets_a_note_to_exclude_it(store: Engine) -> None:
    rule = "SELECT person_id FROM person_traits WHERE livestream_views_90d >= 20"
    result = find_lookalikes(store, rule)
    assert result.drivers["gain_share"].iloc[0] >= 0.8
    zh, en = result.notes[-1]
    assert 'exclude=["livestream_views_90d"]' in en and "近90天直播观看次数" in zh
    assert not find_lookalikes(store, rule, exclude=["livestream_views_90d"]).notes


@pytest.mark.parametrize(("name", "request_", "field", "zh"), [
    ("empty seed", {"seed": "SELECT person_id FROM persons WHERE person_id = 'nobody'"}, "seed", "种子人群为空"),
    ("seed larger than population",
     {"population": "SELECT person_id FROM persons WHERE person_id < 'P040'"}, "seed", "不小于候选人群"),
    ("top_n and threshold", {"top_n": 10, "threshold": 0.5}, "top_n", "同时给了 top_n 和 threshold"),
    ("top_n zero", {"top_n": 0}, "top_n", "top_n 必须"),
    ("threshold above one", {"threshold": 1.5}, "threshold", "0 到 1"),
    ("holdout share", {"holdout_share": 0.9}, "holdout_share", "holdout_share"),
    ("excluded typo", {"exclude": ["tag:no_such_tag"]}, "exclude", "不存在的特征"),
    ("unknown trait", {"numeric": ("shoe_size",)}, "numeric/categorical", "未知的特征"),
    ("seed without person_id", {"seed": "SELECT age FROM person_traits"}, "seed", "person_id"),
])
def test_bad_requests_name_the_field_in_both_languages(store: Engine, name: str, request_: dict, field: str,
                                                       zh: str) -> None:
    arguments = {"seed": SEED_SQL, **request_}
    with pytest.raises(LookalikeError) as raised:
        find_lookalikes(store, **arguments)
    assert raised.value.field == field, name
    assert zh in raised.value.message_zh and raised.value.fix and raised.value.fix_zh


# ---- the demo: planted high-value persons ----------------------------------------------------

# Measured on the 1,500-person demo (seed 11): 242 person_ids belong to the 75 planted
# high-value persons (a third of them are fragments that never bought). person_ids change
# with every build of the demo, and with them the seed's and the sample's draws, so the
# lookalike was run 60 times (5 seed draws x 12 sampling seeds): AUC over every non-seed
# person min 0.785, median 0.827, max 0.868; holdout AUC (29 held-out seed members) min
# 0.721, median 0.827. Supervised trees given every true label reach 0.850 (5-fold), the
# best single trait (gmv_total) 0.706. 0.75 asks for clearly more than one trait, 0.65 for
# the noisier holdout, both below every measured run.
MIN_DEMO_AUC = 0.75
MIN_DEMO_HOLDOUT_AUC = 0.65


def demo_seed(truth, draw: int = 0) -> list[str]:
    """All person_ids of 60% of the planted high-value persons, drawn by person (a
    person's fragments on both sides of the split would leak)."""
    keys = np.sort(truth.loc[truth["is_high_value"], "person_key"].unique())
    chosen = np.random.default_rng(draw).choice(keys, round(0.6 * len(keys)), replace=False)
    return sorted(truth.index[truth["person_key"].isin(chosen)])


def test_demo_lookalike_ranks_held_out_high_value_persons_first(portrayed_demo: Path, record_property) -> None:
    with open_engine(open_workspace(portrayed_demo), read_only=True) as engine:
        truth = person_truth(engine, portrayed_demo)
        seed_ids = demo_seed(truth)
        seed = exp.select("person_id").from_("persons").where(exp.column("person_id").isin(*seed_ids))
        started = time.perf_counter()
        result: Lookalike = find_lookalikes(engine, seed)
        seconds = time.perf_counter() - started
    judged = result.ranked.set_index("person_id").join(truth["is_high_value"], how="inner")
    auc = roc_auc_score(judged["is_high_value"].astype(int), judged["score"])
    report = {"auc": round(auc, 4), "holdout_auc": round(result.metrics["holdout_auc"], 4),
              "held_out_high_value": int(judged["is_high_value"].sum()), "judged": len(judged),
              "seconds": round(seconds, 2), "top_driver": result.drivers["feature"].iloc[0]}
    print(f"\nlookalike on the demo: {json.dumps(report)}")  # noqa: T201
    record_property("lookalike_demo", json.dumps(report))
    assert auc >= MIN_DEMO_AUC
    assert result.metrics["holdout_auc"] >= MIN_DEMO_HOLDOUT_AUC
    assert not set(result.ranked["person_id"]) & set(seed_ids)
    top = result.drivers.head(5)
    assert (top["seed_mean"] != top["population_mean"]).all()
