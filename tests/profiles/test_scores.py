"""Predictive scores: features, labels and the RFM summary by SQL, the stage end to end.

Hand-made records whose features are worked out below run on DuckDB and (with
`-m spark`) Spark; a synthetic shop with a planted signal checks that the models learn
it and that scores and model runs are stored; the feature query returns identical
rows on both engines; and the loaded demo workspace (through the real identity
stage) gets propensity, churn and CLV scores that recover the planted churners and
high-value customers.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from jingzhun.engine import Engine, render
from jingzhun.profiles.scores import (
    CLASSIFIERS,
    CLV_MODELS,
    SNAPSHOT_TABLE,
    ScoresResult,
    score_persons,
)
from jingzhun.profiles.scores_features import (
    category_slug,
    cutoffs_values,
    feature_names,
    features_sql,
    labelled_count_sql,
    labelled_rows_sql,
    labels_sql,
    rfm_summary_sql,
    sample_threshold,
    snapshot_features_sql,
    snapshot_labels_sql,
)
from jingzhun.profiles.scores_models import (
    ModelSpec,
    ScoresError,
    evaluate,
    fit_classifier,
    model_version,
    predict,
)
from jingzhun.schema import tables

UTC = dt.UTC
CUTOFF = dt.datetime(2025, 6, 1, tzinfo=UTC)
CATEGORIES = ["apparel", "cosmetics", "home"]
NEEDED = (tables.PERSONS, tables.RECORD_PERSONS, tables.ORDERS, tables.ORDER_ITEMS, tables.PRODUCTS,
          tables.EVENTS, tables.SOURCE_RECORDS, tables.SCORES, tables.MODEL_RUNS)


def before(days: float) -> dt.datetime:
    return CUTOFF - dt.timedelta(days=days)


def create_tables(engine: Engine) -> None:
    """The canonical tables scoring reads and writes (not all ~40: Spark takes seconds each)."""
    for definition in NEEDED:
        engine.create_table(definition.name, definition.columns)


def write_records(engine: Engine, orders: list[tuple], items: list[tuple], events: list[tuple],
                  records: list[tuple], persons: list[tuple], owners: list[tuple]) -> None:
    """Write rows given as tuples in the column order named below."""
    stamp = pa.timestamp("us", tz="UTC")
    o = list(zip(*orders, strict=True))  # order_id, placed_at, status, channel, platform, coupon, net
    engine.write_table("orders", pa.table({
        "order_id": pa.array(o[0]), "placed_at": pa.array(o[1], stamp), "status": pa.array(o[2]),
        "channel": pa.array(o[3]), "platform": pa.array(o[4]), "coupon_code": pa.array(o[5], pa.string()),
        "net_amount": pa.array(o[6], pa.decimal128(18, 2)), "currency": pa.array(["CNY"] * len(orders)),
    }))
    i = list(zip(*items, strict=True))  # order_id, line_no, product_id, barcode, quantity, amount
    engine.write_table("order_items", pa.table({
        "order_id": pa.array(i[0]), "line_no": pa.array(i[1], pa.int32()),
        "product_id": pa.array(i[2], pa.string()), "barcode": pa.array(i[3], pa.string()),
        "quantity": pa.array(i[4], pa.int32()), "amount": pa.array(i[5], pa.decimal128(18, 2)),
    }))
    e = list(zip(*events, strict=True))  # message_id, type, event, channel, timestamp
    engine.write_table("events", pa.table({
        "message_id": pa.array(e[0]), "type": pa.array(e[1]), "event": pa.array(e[2], pa.string()),
        "channel": pa.array(e[3]), "timestamp": pa.array(e[4], stamp), "received_at": pa.array(e[4], stamp),
    }))
    r = list(zip(*records, strict=True))  # record_id, kind, occurred_at
    engine.write_table("source_records", pa.table({
        "record_id": pa.array(r[0]), "source_id": pa.array(["crm"] * len(records)),
        "kind": pa.array(r[1]), "occurred_at": pa.array(r[2], stamp),
    }))
    p = list(zip(*persons, strict=True))  # person_id, status
    engine.write_table("persons", pa.table({
        "person_id": pa.array(p[0]), "status": pa.array(p[1]),
        "created_at": pa.array([CUTOFF] * len(persons), stamp),
    }))
    w = list(zip(*owners, strict=True))  # record_kind, record_id, person_id
    engine.write_table("record_persons", pa.table({
        "record_kind": pa.array(w[0]), "record_id": pa.array(w[1]), "person_id": pa.array(w[2]),
    }))
    engine.write_table("products", pa.table({
        "product_id": ["P1", "P2", "P3"], "sku": ["S1", "S2", "S3"], "barcode": ["B1", "B2", "B3"],
        "category": ["apparel", "cosmetics", "home"],
    }))


# Person A: a buyer (two purchases, one refunded, one cancelled order, one order after
# the cut-off), a browser, a member. B: one page view. M: merged away (not scored).
# Z: only records after the cut-off (not yet known at the cut-off).
ORDERS = [
    ("o1", before(100), "completed", "online", "tmall", "X", Decimal("100.00")),
    ("o2", before(10), "refunded", "online", "app", None, Decimal("50.50")),
    ("o3", before(5), "cancelled", "online", "app", None, Decimal("999.00")),
    ("o4", CUTOFF + dt.timedelta(days=5), "completed", "offline", "pos", None, Decimal("10.00")),
    ("o5", CUTOFF, "completed", "offline", "pos", None, Decimal("7.00")),  # at T: history
    ("o6", before(1), "completed", "online", "web", None, Decimal("5.00")),  # merged person
    ("o7", CUTOFF + dt.timedelta(days=30), "completed", "online", "web", None, Decimal("9.00")),
    ("o8", CUTOFF + dt.timedelta(days=31), "completed", "online", "web", None, Decimal("9.00")),
]
ITEMS = [
    ("o1", 1, "P1", None, 2, Decimal("100.00")),
    ("o2", 1, None, "B2", 1, Decimal("50.50")),  # a POS-style line: barcode only
    ("o3", 1, "P3", None, 9, Decimal("999.00")),  # cancelled: not in the category mix
    ("o5", 1, "P3", None, 1, Decimal("7.00")),
]
EVENTS = [
    ("e1", "track", "Product Viewed", "app", before(3)),
    ("e2", "track", "Product Added", "app", before(3)),
    ("e3", "track", "Product Viewed", "web", before(40)),
    ("e4", "track", "Product Viewed", "app", CUTOFF + dt.timedelta(days=1)),  # after T
    ("e5", "page", None, "web", before(200)),
    ("e6", "track", "Product Viewed", "app", CUTOFF + dt.timedelta(days=2)),
]
RECORDS = [("r1", "member", before(400)), ("r2", "interaction", before(20))]
PERSONS = [("A", "active"), ("B", "active"), ("M", "merged"), ("Z", "active")]
OWNERS = [("order", "o1", "A"), ("order", "o2", "A"), ("order", "o3", "A"), ("order", "o4", "A"),
          ("order", "o5", "B"), ("order", "o6", "M"), ("order", "o7", "B"), ("order", "o8", "B"),
          ("event", "e1", "A"), ("event", "e2", "A"), ("event", "e3", "A"), ("event", "e4", "A"),
          ("event", "e5", "B"), ("event", "e6", "Z"),
          ("source_record", "r1", "A"), ("source_record", "r2", "A")]


@pytest.fixture
def shop(engine: Engine) -> Engine:
    create_tables(engine)
    write_records(engine, ORDERS, ITEMS, EVENTS, RECORDS, PERSONS, OWNERS)
    return engine


def by_person(table: pa.Table) -> dict[str, dict]:
    return {row["person_id"]: row for row in table.to_pylist()}


@pytest.mark.parametrize("dialect", ["duckdb", "spark"])
def test_every_query_renders_for_both_engines(dialect: str) -> None:
    """The transpile gate for these builders (Python, not shipped .sql files)."""
    for query in (features_sql(CUTOFF, CATEGORIES), labels_sql(CUTOFF, 30),
                  snapshot_features_sql([before(30), CUTOFF], CATEGORIES), snapshot_labels_sql([CUTOFF], 90),
                  rfm_summary_sql(CUTOFF, "Asia/Shanghai"), labelled_count_sql("f", [0, 1], True),
                  labelled_rows_sql("f", "l", ["orders_total"], [0, 1], True, "8000aa")):
        assert render(query, dialect).startswith("WITH") or render(query, dialect).startswith("SELECT")


def test_features_count_only_history_of_active_persons(shop: Engine) -> None:
    features = by_person(shop.query(features_sql(CUTOFF, CATEGORIES)))
    assert set(features) == {"A", "B"}  # M merged away, Z unknown at T
    a = features["A"]
    expected = {
        "orders_total": 2.0, "orders_30d": 1.0, "orders_90d": 1.0, "orders_365d": 2.0,
        "refunds_total": 1.0, "cancelled_total": 1.0, "coupon_orders": 1.0,
        "days_since_last_order": 10.0, "days_since_first_order": 100.0,
        "gmv_total": 150.5, "gmv_90d": 50.5, "gmv_365d": 150.5, "aov": 75.25, "refund_rate": 0.5,
        "coupon_order_share": 0.5, "offline_order_share": 0.0, "marketplace_order_share": 0.5,
        "days_between_orders": 90.0,
        "product_views_7d": 1.0, "product_views_30d": 1.0, "product_views_90d": 2.0,
        "cart_adds_7d": 1.0, "cart_adds_90d": 1.0, "events_7d": 2.0, "events_total": 3.0,
        "active_days_7d": 1.0, "active_days_90d": 2.0, "days_since_last_event": 3.0,
        "days_since_first_event": 40.0, "app_event_share": 2 / 3, "web_event_share": 1 / 3,
        "cart_adds_per_view_90d": 0.5, "interactions_90d": 1.0, "is_member": 1.0,
        "days_since_member_signup": 400.0, "categories_bought": 2.0, "items_total": 3.0,
        "category_share_apparel": 100 / 150.5, "category_share_cosmetics": 50.5 / 150.5,
        "category_share_home": 0.0, "tenure_days": 400.0,
    }
    assert {name: a[name] for name in expected} == pytest.approx(expected, rel=1e-12)
    b = features["B"]
    assert (b["orders_total"], b["gmv_total"], b["days_since_last_order"], b["tenure_days"]) == (1.0, 7.0, 0.0, 200.0)
    assert (b["aov"], b["is_member"], b["events_total"]) == (7.0, 0.0, 1.0)


def test_features_without_orders_stay_missing_not_zero(shop: Engine) -> None:
    earlier = by_person(shop.query(features_sql(before(150), CATEGORIES)))
    assert set(earlier) == {"A", "B"}  # A known by the CRM record, B by the page view
    a = earlier["A"]
    assert a["orders_total"] == 0.0 and a["days_since_last_order"] is None and a["aov"] is None
    assert a["category_share_apparel"] is None and a["tenure_days"] == 250.0


# Cut-offs around the records above: before any, between them, at T, after all.
SNAPSHOTS = [before(500), before(150), before(40), before(5), CUTOFF, CUTOFF + dt.timedelta(days=3),
             CUTOFF + dt.timedelta(days=60)]


def split_snapshots(table: pa.Table, cutoffs: list[dt.datetime]) -> dict[dt.datetime, list[dict]]:
    rows = sorted(table.to_pylist(), key=lambda row: (row["snapshot"], row["person_id"]))
    return {cutoff: [{k: v for k, v in row.items() if k != "snapshot"} for row in rows if row["snapshot"] == index]
            for index, cutoff in enumerate(cutoffs)}


def test_all_snapshots_in_one_query_equal_one_query_per_snapshot(shop: Engine) -> None:
    """Windows paired with nearby cut-offs and totals added up over buckets give the same bits."""
    together = split_snapshots(shop.query(snapshot_features_sql(SNAPSHOTS, CATEGORIES)), SNAPSHOTS)
    for cutoff in SNAPSHOTS:
        alone = sorted(shop.query(features_sql(cutoff, CATEGORIES)).to_pylist(), key=lambda row: row["person_id"])
        assert together[cutoff] == alone, cutoff
    assert together[SNAPSHOTS[0]] == [] and len(together[CUTOFF]) == 2
    labels = split_snapshots(shop.query(snapshot_labels_sql(SNAPSHOTS, 30)), SNAPSHOTS)
    for cutoff in SNAPSHOTS:
        alone = sorted(shop.query(labels_sql(cutoff, 30)).to_pylist(), key=lambda row: row["person_id"])
        assert labels[cutoff] == alone, cutoff


def test_cutoffs_must_ascend() -> None:
    with pytest.raises(ValueError, match="ascending"):
        cutoffs_values([CUTOFF, before(1)])


def test_labels_take_the_window_after_the_cutoff(shop: Engine) -> None:
    labels = {row["person_id"]: row["purchases"] for row in shop.query(labels_sql(CUTOFF, 30)).to_pylist()}
    assert labels == {"A": 1, "B": 1}  # o5 at T is history, o7 at T + 30 d counts, o8 does not


def test_rfm_summary_in_local_calendar_days(engine: Engine) -> None:
    create_tables(engine)
    night = dt.datetime(2025, 1, 1, 20, tzinfo=UTC)  # 04:00 on 2 January in Shanghai
    orders = [("a1", night, "completed", "online", "app", None, Decimal("10.00")),
              ("a2", night + dt.timedelta(hours=6), "completed", "online", "app", None, Decimal("5.00")),
              ("a3", dt.datetime(2025, 1, 10, 3, tzinfo=UTC), "paid", "online", "app", None, Decimal("30.00")),
              ("a4", dt.datetime(2025, 1, 12, 3, tzinfo=UTC), "shipped", "online", "app", None, Decimal("50.00")),
              ("a5", dt.datetime(2025, 1, 13, 3, tzinfo=UTC), "refunded", "online", "app", None, Decimal("70.00")),
              ("b1", dt.datetime(2025, 1, 5, 3, tzinfo=UTC), "completed", "online", "app", None, Decimal("8.00")),
              ("b2", dt.datetime(2025, 2, 5, 3, tzinfo=UTC), "completed", "online", "app", None, Decimal("8.00"))]
    write_records(engine, orders, [("a1", 1, "P1", None, 1, Decimal("10.00"))],
                  [("e", "page", None, "web", night)], [("r", "member", night)],
                  [("A", "active"), ("B", "active")],
                  [("order", o[0], o[0][0].upper()) for o in orders])
    as_of = dt.datetime(2025, 1, 31, 12, tzinfo=UTC)
    shanghai = by_person(engine.query(rfm_summary_sql(as_of, "Asia/Shanghai")))
    assert set(shanghai) == {"A", "B"}  # B's second order comes after as_of
    a = shanghai["A"]  # days 2 Jan (15.00), 10 Jan (30.00), 12 Jan (50.00); the refund is no purchase
    assert (a["frequency"], a["recency_days"], a["t_days"], a["monetary"]) == (2, 10.0, 29.0, 40.0)
    assert (shanghai["B"]["frequency"], shanghai["B"]["monetary"], shanghai["B"]["t_days"]) == (0, None, 26.0)
    utc = by_person(engine.query(rfm_summary_sql(as_of, "UTC")))["A"]
    assert (utc["frequency"], utc["recency_days"], utc["t_days"]) == (3, 11.0, 30.0)  # 1 and 2 Jan apart


def test_category_slugs_are_column_safe() -> None:
    assert [category_slug(c, i) for i, c in enumerate(["Beauty Tools", "美妆", "home"])] == [
        "beauty_tools", "c01", "home"]
    assert "category_share_c01" in feature_names(["Beauty Tools", "美妆"])


def test_metrics_on_a_known_ranking() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    perfect = np.linspace(0.01, 0.99, 100)  # the ten positives score highest
    metrics = evaluate(labels, perfect)
    assert (metrics["auc"], metrics["top_decile_lift"], metrics["positives"]) == (1.0, 10.0, 10)
    bins = metrics["reliability"]
    assert len(bins) == 10 and sum(b["count"] for b in bins) == 100
    assert [b["observed_rate"] for b in bins] == [0.0] * 9 + [1.0]
    flat = evaluate(labels, np.full(100, 0.1))
    assert flat["brier"] == pytest.approx(flat["brier_base_rate"]) and flat["auc"] == 0.5


@pytest.mark.parametrize("estimator", ["lightgbm", "sklearn"])
@pytest.mark.parametrize("calibration", ["none", "isotonic"])
def test_each_estimator_learns_with_missing_values_and_repeats_exactly(estimator: str, calibration: str) -> None:
    rng = np.random.default_rng(5)
    recency = np.where(rng.random(3000) < 0.3, np.nan, rng.exponential(60, 3000))  # NaN: never bought
    noise = rng.normal(size=3000)
    bought = rng.random(3000) < np.where(np.isnan(recency), 0.02, 0.4 * np.exp(-np.nan_to_num(recency) / 30))
    features = np.column_stack([recency, noise])
    spec = ModelSpec("test", 30, buyers_only=False, positive_is_purchase=True, estimator=estimator,
                     calibration=calibration)
    first = predict(fit_classifier(spec, features[:2000], bought[:2000].astype(int)), features[2000:])
    again = predict(fit_classifier(spec, features[:2000], bought[:2000].astype(int)), features[2000:])
    assert evaluate(bought[2000:].astype(int), first)["auc"] > 0.75
    assert np.array_equal(first, again)


def test_an_unknown_estimator_names_the_field_and_choices() -> None:
    spec = ModelSpec("test", 30, buyers_only=False, positive_is_purchase=True, estimator="xgboost")
    with pytest.raises(ScoresError) as raised:
        fit_classifier(spec, np.zeros((60, 1)), np.arange(60) % 2)
    assert raised.value.field == "estimator" and "lightgbm" in raised.value.fix


def test_model_version_names_features_params_and_window() -> None:
    version = model_version("churn_90d", ["a", "b"], {"max_iter": 200}, {"as_of": "2026-10-31"})
    assert version == model_version("churn_90d", ["a", "b"], {"max_iter": 200}, {"as_of": "2026-10-31"})
    assert version != model_version("churn_90d", ["a", "b"], {"max_iter": 200}, {"as_of": "2026-11-30"})
    assert version != model_version("churn_90d", ["a"], {"max_iter": 200}, {"as_of": "2026-10-31"})


def test_sample_threshold_keeps_everything_up_to_the_cap() -> None:
    assert sample_threshold(10, 5) is None and sample_threshold(10, 10) is None
    assert sample_threshold(1, 2) == "800000" and sample_threshold(1, 4) == "400000"


def labelled_rows(engine: Engine, snapshots: list[int], buyers_only: bool, below: str | None) -> pa.Table:
    return engine.query(labelled_rows_sql("sample_features", "sample_labels", ["orders_total"],
                                          snapshots, buyers_only, below))


def test_training_rows_are_sampled_in_the_engine_deterministically(engine: Engine) -> None:
    """About the asked share of rows, the same rows every time, each with its own label."""
    persons = [f"p{n:05d}" for n in range(4000)]
    engine.write_table("sample_features", pa.table({
        "snapshot": [s for s in (0, 1) for _ in persons], "person_id": persons * 2,
        "orders_total": [float(n % 3) for n in range(8000)]}))
    engine.write_table("sample_labels", pa.table({"snapshot": [1] * 100, "person_id": persons[:100]}))
    full = labelled_rows(engine, [0, 1], False, None)
    assert full.num_rows == 8000 and sum(full.column("bought").to_pylist()) == 100
    count = engine.query(labelled_count_sql("sample_features", [0, 1], True)).column("n")[0].as_py()
    assert count == sum(1 for n in range(8000) if n % 3)
    below = sample_threshold(2000, 8000)
    sampled = labelled_rows(engine, [0, 1], False, below)
    assert 1800 < sampled.num_rows < 2200  # a quarter, give or take the binomial spread
    assert sampled.to_pylist() == labelled_rows(engine, [0, 1], False, below).to_pylist()
    keys = [(r["snapshot"], r["person_id"]) for r in sampled.to_pylist()]
    assert keys == sorted(keys) and set(keys) <= {(r["snapshot"], r["person_id"]) for r in full.to_pylist()}
    labelled = {(1, p) for p in persons[:100]}
    assert all(r["bought"] == ((r["snapshot"], r["person_id"]) in labelled) for r in sampled.to_pylist())
    buyers = labelled_rows(engine, [1], True, None)
    assert buyers.num_rows == sum(1 for n in range(4000, 8000) if n % 3) and min(buyers.column("orders_total").to_pylist()) > 0


# ---- a synthetic shop with a planted signal ---------------------------------------

SYNTHETIC_START = dt.datetime(2024, 1, 1, tzinfo=UTC)
SYNTHETIC_DAYS = 540


def synthetic_shop(engine: Engine, persons: int = 240, seed: int = 7) -> pd.DataFrame:
    """Persons with a purchase rate and, for half of them, a day they stop buying and browsing.

    Returns the truth: person_id, rate, stop_day (NaN for those who never stop).
    """
    rng = np.random.default_rng(seed)
    rate = rng.gamma(2.0, 1 / 60, persons)  # purchases per day, mean one a month
    stop = np.where(rng.random(persons) < 0.5, rng.uniform(60, SYNTHETIC_DAYS, persons), np.nan)
    orders, items, events, owners = [], [], [], []
    for person in range(persons):
        pid, end = f"p{person:04d}", stop[person] if not np.isnan(stop[person]) else SYNTHETIC_DAYS
        for kind, per_day in (("order", rate[person]), ("event", 3 * rate[person])):
            for n, day in enumerate(np.sort(rng.uniform(0, end, rng.poisson(per_day * end)))):
                at = SYNTHETIC_START + dt.timedelta(days=float(day))
                at = at.replace(microsecond=0)
                rid = f"{pid}-{kind[0]}{n}"
                owners.append((kind, rid, pid))
                if kind == "order":
                    amount = Decimal(int(rng.integers(20, 400)))
                    orders.append((rid, at, "completed", "online", "app", None, amount))
                    items.append((rid, 1, f"P{1 + n % 3}", None, 1, amount))
                else:
                    events.append((rid, "track", "Product Viewed", "app", at))
    write_records(engine, orders, items, events, [("r0", "member", SYNTHETIC_START)],
                  [(f"p{p:04d}", "active") for p in range(persons)], owners)
    return pd.DataFrame({"person_id": [f"p{p:04d}" for p in range(persons)], "rate": rate, "stop_day": stop})


def test_score_persons_learns_a_planted_signal_and_stores_versions(engine: Engine, workspace) -> None:
    create_tables(engine)
    truth = synthetic_shop(engine)
    as_of = SYNTHETIC_START + dt.timedelta(days=SYNTHETIC_DAYS)
    result = score_persons(workspace, engine, as_of=as_of)
    assert isinstance(result, ScoresResult)
    for spec in CLASSIFIERS:  # out-of-time AUC of a real signal, stored with the version
        assert result.metrics[spec.model]["auc"] > 0.7, spec.model
    stored = engine.query("SELECT model, COUNT(*) AS n, MIN(score) AS low, MAX(score) AS high "
                          "FROM scores GROUP BY model").to_pylist()
    counts = {row["model"]: row["n"] for row in stored}
    assert set(counts) == {spec.model for spec in CLASSIFIERS} | set(CLV_MODELS)
    assert result.tables == {"scores": sum(counts.values()), "model_runs": 3}
    assert all(0 <= row["low"] <= row["high"] <= 1 for row in stored if row["model"] != "clv_365d"
               and row["model"] != "clv_expected_purchases_365d")
    runs = engine.query("SELECT model, model_version, metrics, params, features, rows_trained FROM model_runs")
    assert runs.num_rows == 3
    propensity = next(r for r in runs.to_pylist() if r["model"] == "purchase_propensity_30d")
    assert json.loads(propensity["metrics"])["reliability"] and json.loads(propensity["features"])
    assert json.loads(propensity["params"])["random_state"] and propensity["rows_trained"] > 0

    # P(alive) should separate those who stopped long ago from those who never stop.
    alive = engine.query("SELECT person_id, score FROM scores WHERE model = 'p_alive'").to_pandas()
    alive = alive.merge(truth, on="person_id")
    stopped = alive["stop_day"] < SYNTHETIC_DAYS - 180
    assert alive.loc[stopped, "score"].mean() < alive.loc[alive["stop_day"].isna(), "score"].mean() - 0.2

    again = score_persons(workspace, engine, as_of=as_of)  # same data: same versions, rows replaced
    versions = engine.query("SELECT model, model_version FROM model_runs").to_pylist()
    assert len({(r["model"], r["model_version"]) for r in versions}) == 3
    assert engine.row_count("scores") == sum(counts.values()) and again.metrics == result.metrics
    assert not engine.table_exists(SNAPSHOT_TABLE)  # the run's scratch features are dropped


def sampled_rows(engine: Engine, cutoffs: list[dt.datetime]) -> pa.Table:
    """Both snapshots' labelled rows, half of them drawn by the md5 sample."""
    engine.materialize("sample_features", snapshot_features_sql(cutoffs, CATEGORIES))
    engine.materialize("sample_labels", snapshot_labels_sql(cutoffs, 30))
    return engine.query(labelled_rows_sql("sample_features", "sample_labels", feature_names(CATEGORIES),
                                          [0, 1], False, sample_threshold(1, 2)))


@pytest.mark.spark
def test_feature_query_is_identical_on_duckdb_and_spark(both_engines: tuple[Engine, Engine]) -> None:
    results = []
    for engine in both_engines:
        create_tables(engine)
        synthetic_shop(engine, persons=80, seed=3)
        write_records(engine, ORDERS, ITEMS, EVENTS, RECORDS, PERSONS, OWNERS)
        cutoff = SYNTHETIC_START + dt.timedelta(days=300)
        cutoffs = [cutoff - dt.timedelta(days=90), cutoff]
        results.append((engine.query(features_sql(cutoff, CATEGORIES)),
                        engine.query(rfm_summary_sql(cutoff, "Asia/Shanghai")),
                        engine.query(labels_sql(cutoff, 90)),
                        engine.query(snapshot_features_sql(cutoffs, CATEGORIES)),
                        engine.query(snapshot_labels_sql(cutoffs, 30)),
                        sampled_rows(engine, cutoffs)))
    for duck, spark in zip(*results, strict=True):  # features, RFM summary, labels, all snapshots at once
        assert duck.num_rows > 40
        order = [(name, "ascending") for name in ("snapshot", "person_id") if name in duck.column_names]
        assert duck.sort_by(order).to_pylist() == spark.sort_by(order).to_pylist()


# ---- the demo workspace, through the real identity stage ---------------------------

def test_demo_scores_recover_planted_churners_and_high_value(loaded_demo: Path, tmp_path: Path,
                                                             record_property) -> None:
    from jingzhun.engine import open_engine
    from jingzhun.identity import build_identity
    from tests.conftest import copy_workspace

    workspace = copy_workspace(loaded_demo, tmp_path / "ws")
    with open_engine(workspace) as engine:
        build_identity(workspace, engine)
        result = score_persons(workspace, engine)
        scores = engine.query("SELECT s.person_id, s.model, s.score, i.id_value AS phone FROM scores AS s "
                              "JOIN identities AS i ON i.person_id = s.person_id AND i.id_type = 'phone'"
                              ).to_pandas()
    for spec in CLASSIFIERS:
        metrics = result.metrics[spec.model]
        line = (f"{spec.model} on the demo: out-of-time AUC {metrics['auc']:.3f}, Brier {metrics['brier']:.4f} "
                f"(base rate {metrics['brier_base_rate']:.4f}), top-decile lift {metrics['top_decile_lift']:.2f}")
        print(f"\n{line}")  # noqa: T201
        record_property(spec.model, line)
        assert metrics["auc"] > 0.6
        assert metrics["brier"] < metrics["brier_base_rate"]
    truth = pd.read_parquet(loaded_demo / "demo-truth" / "persons.parquet", columns=[
        "phone", "churn_date", "is_high_value"])
    truth["phone"] = "+86" + truth["phone"]  # the truth keeps 11 digits; identities hold E.164
    joined = scores.merge(truth, on="phone").drop_duplicates(["person_id", "model"])
    holdout_start = pd.Timestamp(result.metrics["clv_365d"]["holdout"]["cutoff"]).tz_convert(None)
    churned = pd.to_datetime(joined["churn_date"]) < holdout_start  # 180+ days before the end
    alive = joined[joined["model"] == "p_alive"]
    assert alive.loc[churned, "score"].mean() < alive.loc[~churned, "score"].mean()
    value = joined[joined["model"] == "clv_365d"]
    assert value.loc[value["is_high_value"], "score"].mean() > 1.5 * value.loc[~value["is_high_value"], "score"].mean()
