"""Traits: hand-computed values on a small world, history, event-time invariance, parity,
and the loaded demo against its answer key and an independent pandas computation."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from sqlglot.errors import ErrorLevel

from jingzhun.engine import Engine, open_engine, parse_sql, render
from jingzhun.engine.parity import compare_tables
from jingzhun.profiles import PERSON_TRAITS, RFM_CLASSES, compute_traits
from jingzhun.profiles import traits_sql as q
from jingzhun.profiles.traits import STEPS, person_traits_sql
from jingzhun.profiles.traits_base import base_candidates_sql, base_values_sql
from jingzhun.profiles.traits_calendar import is_holiday
from jingzhun.profiles.traits_history import (
    REBUILT_SQL,
    TraitsHistoryError,
    changed_persons_sql,
    diff_sql,
)
from tests.conftest import copy_workspace, make_engine
from tests.profiles.traits_world import AS_OF, EXPECTED, _rows, at, write_world

log = logging.getLogger(__name__)
WINDOW = q.TraitWindow(AS_OF, "Asia/Shanghai")


def _wide(engine: Engine) -> pa.Table:
    """person_traits without the wall-clock column, for comparisons between runs."""
    return engine.read_table("person_traits").drop_columns(["computed_at"])


def _by_person(table: pa.Table) -> dict[str, dict]:
    return {row["person_id"]: row for row in table.to_pylist()}


def _trait_rows(engine: Engine, person: str, trait: str) -> list[dict]:
    rows = engine.read_table("traits").to_pylist()
    return sorted((r for r in rows if r["person_id"] == person and r["trait"] == trait),
                  key=lambda r: r["valid_from"])


# ---- the small world, computed once per engine ------------------------------------------

@pytest.fixture(scope="module", params=["duckdb", pytest.param("spark", marks=pytest.mark.spark)])
def computed(request, tmp_path_factory, traits_workspace) -> dict[str, object]:
    engine = make_engine(request.param, tmp_path_factory.mktemp(f"traits-{request.param}"), request)
    try:
        write_world(engine)
        result = compute_traits(traits_workspace, engine, as_of=AS_OF)
        return {"result": result, "wide": engine.read_table("person_traits"),
                "long": engine.read_table("traits"), "tables": engine.list_tables()}
    finally:
        engine.close()


@pytest.fixture(scope="module")
def traits_workspace(tmp_path_factory):
    from jingzhun.core import WorkspaceConfig, init_workspace

    return init_workspace(tmp_path_factory.mktemp("traits-ws") / "ws", WorkspaceConfig(name="画像测试"))


def test_one_row_per_active_person(computed) -> None:
    people = sorted(computed["wide"].column("person_id").to_pylist())
    assert people == ["P_A", "P_B", "P_C", "P_D", "P_E", "P_F", "P_G", "P_H", "P_N"]  # not P_M (merged)
    assert computed["result"].tables["person_traits"] == 9


@pytest.mark.parametrize("person", sorted(EXPECTED))
def test_hand_computed_traits(computed, person: str) -> None:
    row = _by_person(computed["wide"])[person]
    for trait, expected in EXPECTED[person].items():
        actual = row[trait]
        if isinstance(expected, float):
            assert actual == pytest.approx(expected), trait
        elif isinstance(expected, Decimal):
            assert Decimal(str(actual)) == expected, trait
        elif isinstance(expected, dt.datetime):
            assert actual is not None and actual.astimezone(dt.UTC) == expected, trait
        else:
            assert actual == expected, trait


def test_person_traits_follows_its_table_definition(computed) -> None:
    wide = computed["wide"]
    assert wide.column_names == PERSON_TRAITS.column_names
    assert pa.types.is_decimal(wide.schema.field("gmv_total").type)
    assert pa.types.is_timestamp(wide.schema.field("last_order_at").type)
    assert pa.types.is_boolean(wide.schema.field("has_phone").type)
    assert wide.schema.field("rfm_r").type == pa.int32()
    assert not [name for name in computed["tables"] if name.startswith("traits_")]  # intermediates dropped


def test_long_table_spells_values_alike_and_names_sources(computed) -> None:
    rows = {(r["person_id"], r["trait"]): r for r in computed["long"].to_pylist()}
    expected = {
        ("P_A", "city"): ("杭州市", "string", "crm"),
        ("P_A", "income_band"): ("1万-2万", "string", "survey"),
        ("P_A", "job"): ("公司职员", "string", "survey"),
        ("P_B", "gender"): ("M", "string", "social"),
        ("P_A", "member_id"): ("JZ9", "string", "crm"),
        ("P_A", "gmv_total"): ("430.50", "number", "orders"),
        ("P_A", "refund_rate"): ("0.2500", "number", "orders"),
        ("P_A", "orders_total"): ("3", "number", "orders"),
        ("P_A", "last_order_at"): ("2025-10-01 04:00:00Z", "timestamp", "orders"),
        ("P_A", "birth_date"): ("1990-06-15", "date", "crm"),
        ("P_A", "follows_official_account"): ("true", "boolean", "social"),
        ("P_A", "rfm_class"): ("general_value", "string", "rfm"),
        ("P_A", "device_type"): ("pc", "string", "behaviour"),
        ("P_N", "has_phone"): ("false", "boolean", "identities"),
    }
    for key, (value, value_type, source) in expected.items():
        row = rows[key]
        assert (row["value"], row["value_type"], row["source"]) == (value, value_type, source), key
        assert row["valid_to"] is None and row["valid_from"].astimezone(dt.UTC) == AS_OF
    assert ("P_A", "days_since_last_order") not in rows  # changes daily by itself: wide table only
    assert ("P_B", "aov") not in rows  # NULL values are not stored


def test_every_rfm_class_has_chinese_and_english_names() -> None:
    assert len(RFM_CLASSES) == 8
    assert RFM_CLASSES["important_value"]["zh"] == "重要价值客户"
    assert RFM_CLASSES["general_retain"]["zh"] == "一般挽留客户"
    assert all(set(names) == {"zh", "en"} for names in RFM_CLASSES.values())


def test_missing_identity_tables_are_named_with_the_fix(engine: Engine, workspace) -> None:
    engine.write_table("events", _rows([dict(message_id="m", type="page", timestamp=AS_OF, received_at=AS_OF)]))
    with pytest.raises(q.TraitsError) as refused:
        compute_traits(workspace, engine)
    assert refused.value.field == "record_persons"
    assert "identity" in refused.value.fix and "身份识别" in refused.value.fix_zh


# ---- history --------------------------------------------------------------------------

def test_same_data_twice_changes_no_history(engine: Engine, workspace) -> None:
    write_world(engine)
    first = compute_traits(workspace, engine, as_of=AS_OF)
    history = engine.read_table("traits")
    again = compute_traits(workspace, engine, as_of=AS_OF)
    assert first.tables["traits"] == history.num_rows > 0
    assert again.tables["traits"] == 0
    assert compare_tables("traits", history, engine.read_table("traits")).equal


def test_changed_value_closes_the_old_row_and_the_past_can_be_read_back(engine: Engine, workspace) -> None:
    write_world(engine)
    compute_traits(workspace, engine, as_of=AS_OF)
    later = AS_OF + dt.timedelta(days=15)
    order = dict(order_id="o6", placed_at=at("2025-11-10 02:00"), net_amount=Decimal("100.00"), platform="app",
                 channel="online", status="completed", currency="CNY")
    engine.write_table("orders", _rows([order]))
    engine.write_table("record_persons", _rows([dict(record_kind="order", record_id="o6", person_id="P_A")]))
    change = compute_traits(workspace, engine, as_of=later)

    orders = _trait_rows(engine, "P_A", "orders_total")
    assert [(r["value"], r["valid_to"]) for r in orders] == [("3", orders[0]["valid_to"]), ("4", None)]
    assert orders[0]["valid_to"].astimezone(dt.UTC) == later == orders[1]["valid_from"].astimezone(dt.UTC)
    name = _trait_rows(engine, "P_A", "name")
    assert len(name) == 1 and name[0]["valid_from"].astimezone(dt.UTC) == AS_OF  # unchanged: untouched
    assert change.tables["traits"] > 0

    def portrait_on(day: dt.datetime) -> dict[str, str]:
        sql = ("SELECT trait, value FROM traits WHERE person_id = 'P_A' AND valid_from <= :day "
               "AND (valid_to IS NULL OR valid_to > :day)")
        from sqlglot import exp

        query = exp.replace_placeholders(parse_sql(sql), day=exp.convert(day))
        return {r["trait"]: r["value"] for r in engine.query(query).to_pylist()}

    # only changed persons were compared: a full comparison finds nothing left to do
    assert compute_traits(workspace, engine, as_of=later, full_history=True).tables["traits"] == 0
    assert portrait_on(AS_OF + dt.timedelta(days=1))["orders_total"] == "3"
    assert portrait_on(later)["orders_total"] == "4"
    assert portrait_on(later)["name"] == portrait_on(AS_OF)["name"] == "王芳"


def test_history_does_not_go_back_in_time(engine: Engine, workspace) -> None:
    write_world(engine)
    compute_traits(workspace, engine, as_of=AS_OF)
    with pytest.raises(TraitsHistoryError) as refused:
        compute_traits(workspace, engine, as_of=AS_OF - dt.timedelta(days=1))
    assert refused.value.field == "as_of" and "画像历史" in refused.value.message_zh


def test_corrections_at_the_same_as_of_leave_no_empty_intervals(engine: Engine, workspace) -> None:
    write_world(engine)
    compute_traits(workspace, engine, as_of=AS_OF)
    for k in (1, 2):  # two late events, each arriving after a run at the same as_of
        late = dict(message_id=f"late{k}", type="track", event="Product Viewed", anonymous_id="dev-b",
                    timestamp=AS_OF - dt.timedelta(hours=k), received_at=AS_OF + dt.timedelta(days=k),
                    channel="app", context='{"os": {"name": "Android"}}',
                    properties=json.dumps({"category": "home", "price": 120}))
        engine.write_table("events", _rows([late]))
        engine.write_table("record_persons", _rows([dict(record_kind="event", record_id=f"late{k}",
                                                         person_id="P_B")]))
        compute_traits(workspace, engine, as_of=AS_OF)
    rows = engine.read_table("traits").to_pylist()
    assert not [r for r in rows if r["valid_to"] is not None and r["valid_to"] == r["valid_from"]]
    events = _trait_rows(engine, "P_B", "events_total")
    assert [r["value"] for r in events] == ["3"]  # one open row, the corrected value


def test_merged_person_loses_the_current_portrait_and_keeps_the_past(engine: Engine, workspace) -> None:
    write_world(engine)
    compute_traits(workspace, engine, as_of=AS_OF)
    persons = engine.read_table("persons").to_pylist()
    for row in persons:
        if row["person_id"] == "P_F":
            row.update(status="merged", merged_into="P_C")
    engine.write_table("persons", pa.Table.from_pylist(persons), mode="replace")
    compute_traits(workspace, engine, as_of=AS_OF + dt.timedelta(days=1))
    rows = [r for r in engine.read_table("traits").to_pylist() if r["person_id"] == "P_F"]
    assert rows and all(r["valid_to"] is not None for r in rows)
    assert "P_F" not in engine.read_table("person_traits").column("person_id").to_pylist()


# ---- event time, not arrival order ----------------------------------------------------

def test_arrival_order_and_late_events_do_not_change_the_result(engine: Engine, workspace) -> None:
    write_world(engine)
    compute_traits(workspace, engine, as_of=AS_OF)
    in_order = _wide(engine)
    write_world(engine, reverse=True)  # every table written in the opposite order
    rerun = compute_traits(workspace, engine, as_of=AS_OF)
    assert compare_tables("person_traits", in_order, _wide(engine)).equal
    assert rerun.tables["traits"] == 0


def test_default_as_of_is_the_latest_event_or_order(engine: Engine, workspace) -> None:
    write_world(engine)
    result = compute_traits(workspace, engine)
    assert result.as_of == at("2025-11-05 00:00")  # e8, the latest event


# ---- both engines ---------------------------------------------------------------------

@pytest.mark.spark
def test_duckdb_and_spark_agree(both_engines, workspace) -> None:
    results = []
    for engine in both_engines:
        write_world(engine)
        compute_traits(workspace, engine, as_of=AS_OF)
        results.append((_wide(engine), engine.read_table("traits")))
    (duck_wide, duck_long), (spark_wide, spark_long) = results
    for name, left, right in (("person_traits", duck_wide, spark_wide), ("traits", duck_long, spark_long)):
        report = compare_tables(name, left, right)
        assert report.equal, report.differences


def _queries() -> list[tuple[str, object]]:
    shipped = [(name, q.bind(sql, WINDOW)) for name, sql in STEPS]
    shipped += [("traits_base_candidates", base_candidates_sql(WINDOW)), ("traits_base_values", base_values_sql()),
                ("person_traits", person_traits_sql(WINDOW, AS_OF)),
                ("traits_diff", diff_sql(PERSON_TRAITS, q.NEXT, "traits_changed_persons")),
                ("traits_changed_persons", changed_persons_sql(PERSON_TRAITS, q.NEXT, "person_traits")),
                ("traits_rebuilt", q.bind(REBUILT_SQL, WINDOW))]
    return shipped


@pytest.mark.parametrize("dialect", ["duckdb", "spark"])
def test_every_traits_query_renders_for_both_engines(dialect: str) -> None:
    for name, expression in _queries():
        assert render(expression, dialect).strip(), name
        assert ":as_of" not in expression.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE), name


# ---- holidays -------------------------------------------------------------------------

@pytest.mark.parametrize(("day", "expected"), [
    (dt.date(2025, 10, 1), True),  # 国庆
    (dt.date(2025, 1, 29), True),  # 春节 (chinese_calendar)
    (dt.date(2025, 6, 17), True),  # 618 peak
    (dt.date(2025, 11, 11), True),  # 双11
    (dt.date(2025, 3, 8), True),  # 女王节
    (dt.date(2025, 9, 1), False),
    (dt.date(2027, 2, 7), True),  # 春节 2027, beyond chinese_calendar: lunar new year week
    (dt.date(2027, 10, 3), True),  # 国庆 2027, fixed-date fallback
])
def test_holiday_and_promotion_days(day: dt.date, expected: bool) -> None:
    assert is_holiday(day) is expected


# ---- the loaded demo -------------------------------------------------------------------

def _truth_ids(truth: Path) -> dict[tuple[str, str], int]:
    ids = pd.read_parquet(truth / "identifiers.parquet")
    owned = {(t, v): int(k) for t, v, k in zip(ids.id_type, ids.id_value, ids.person_key, strict=True)}
    social = pd.read_parquet(truth / "social_wechat_openids.parquet")
    owned |= {("wechat_oa_openid", v): int(k) for v, k in zip(social.openid, social.person_key, strict=True)}
    return owned


def _truth_record_persons(engine: Engine, truth: Path) -> None:
    """record_persons and persons from the demo's answer key (no ID graph involved)."""
    owner = _truth_ids(truth)
    rows = []

    def claim(kind: str, record_id: str, *candidates: tuple[str, str | None]) -> None:
        for candidate in candidates:
            if candidate in owner:
                rows.append((kind, record_id, f"T{owner[candidate]:06d}"))
                return

    for e in engine.query("SELECT message_id, user_id, anonymous_id FROM events").to_pylist():
        claim("event", e["message_id"], ("member_id", e["user_id"]),
              *[(t, e["anonymous_id"]) for t in ("anonymous_id", "device_id", "wechat_openid")])
    for o in engine.query("SELECT order_id, customer_ref, customer_ref_type FROM orders").to_pylist():
        claim("order", o["order_id"], (o["customer_ref_type"], o["customer_ref"]))
    for s in engine.query("SELECT record_id, identifiers FROM source_records").to_pylist():
        found = json.loads(s["identifiers"] or "{}")
        claim("source_record", s["record_id"], *found.items())
    for r in engine.query("SELECT response_id, respondent_ref, respondent_ref_type FROM survey_responses").to_pylist():
        claim("survey_response", r["response_id"], (r["respondent_ref_type"], r["respondent_ref"]))
    frame = pd.DataFrame(rows, columns=["record_kind", "record_id", "person_id"])
    engine.write_table("record_persons", pa.Table.from_pandas(frame, preserve_index=False), mode="replace")
    people = sorted({f"T{k:06d}" for k in owner.values()})
    engine.write_table("persons", pa.table({"person_id": people, "status": ["active"] * len(people),
                                             "created_at": pa.array([AS_OF] * len(people))}), mode="replace")


def _pandas_traits(engine: Engine, as_of: dt.datetime) -> pd.DataFrame:
    """Orders, GMV, events, views and sessions per person, computed independently in pandas."""
    owned = engine.read_table("record_persons").to_pandas()
    orders = engine.query("SELECT order_id, status, net_amount, placed_at FROM orders").to_pandas()
    orders = orders.merge(owned[owned.record_kind == "order"], left_on="order_id", right_on="record_id")
    orders = orders[(orders.placed_at <= as_of) & ~orders.status.isin(["cancelled", "refunded"])]
    by_person = orders.groupby("person_id").agg(orders_total=("order_id", "size"),
                                                gmv_total=("net_amount", lambda s: float(sum(s))),
                                                last_order_at=("placed_at", "max"))
    events = engine.query('SELECT message_id, "timestamp", event, anonymous_id FROM events').to_pandas()
    events = events.merge(owned[owned.record_kind == "event"], left_on="message_id", right_on="record_id")
    events = events[events.timestamp <= as_of]
    recent = events[events.timestamp > as_of - dt.timedelta(days=90)].sort_values(["timestamp", "message_id"])
    gap = recent.groupby(["person_id", "anonymous_id"]).timestamp.diff().dt.total_seconds()
    recent = recent.assign(starts=(gap.isna() | (gap > 1800)).astype(int))
    activity = pd.DataFrame({
        "events_total": events.groupby("person_id").size(),
        "product_views_90d": recent[recent.event == "Product Viewed"].groupby("person_id").size(),
        "sessions_90d": recent.groupby("person_id").starts.sum(),
    })
    return by_person.join(activity, how="outer")


def _check_against_pandas(engine: Engine, as_of: dt.datetime) -> None:
    wide = engine.read_table("person_traits").to_pandas().set_index("person_id")
    expected = _pandas_traits(engine, as_of)
    for column in ("orders_total", "events_total", "product_views_90d", "sessions_90d"):
        got = wide[column].reindex(expected.index).fillna(0).astype(int)
        assert (got == expected[column].fillna(0).astype(int)).all(), column
    buyers = expected[expected.orders_total > 0]
    gmv = wide.loc[buyers.index, "gmv_total"].map(float)
    assert ((gmv - buyers.gmv_total).abs() < 0.005).all()
    assert (wide.loc[buyers.index, "last_order_at"] == buyers.last_order_at).all()


def _agreement_with_truth(wide: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    members = truth[truth.member_id.notna()].merge(wide, on="member_id", suffixes=("_truth", ""))
    return {
        "members": len(members),
        "gender": float((members.gender == members.gender_truth).mean()),
        "member_level": float((members.member_level == members.member_level_truth).mean()),
        "city": float((members.city == members.city_truth).mean()),
    }


def test_demo_traits_match_the_answer_key_and_pandas(loaded_demo: Path, tmp_path: Path) -> None:
    workspace = copy_workspace(loaded_demo, tmp_path / "ws")
    with open_engine(workspace) as engine:
        _truth_record_persons(engine, loaded_demo / "demo-truth")
        result = compute_traits(workspace, engine)
        _check_against_pandas(engine, result.as_of)
        wide = engine.read_table("person_traits").to_pandas()
    truth = pd.read_parquet(loaded_demo / "demo-truth" / "persons.parquet")
    agreement = _agreement_with_truth(wide, truth)
    log.info("traits vs truth (record_persons from the answer key): %s", agreement)
    assert agreement["members"] > 1000, agreement
    assert min(agreement["gender"], agreement["member_level"], agreement["city"]) >= 0.99, agreement
    assert set(wide.rfm_class.dropna()) == set(RFM_CLASSES)


def test_demo_traits_on_the_identity_graph(loaded_demo: Path, tmp_path: Path) -> None:
    identity = pytest.importorskip("jingzhun.identity")
    workspace = copy_workspace(loaded_demo, tmp_path / "ws")
    with open_engine(workspace) as engine:
        identity.build_identity(workspace, engine)
        result = compute_traits(workspace, engine)
        _check_against_pandas(engine, result.as_of)
        wide = engine.read_table("person_traits").to_pandas()
        assert result.tables["person_traits"] == engine.query(
            "SELECT COUNT(*) AS n FROM persons WHERE status = 'active'").column("n")[0].as_py()
    truth = pd.read_parquet(loaded_demo / "demo-truth" / "persons.parquet")
    agreement = _agreement_with_truth(wide, truth)
    log.info("traits vs truth (build_identity): %s", agreement)
    assert min(agreement["gender"], agreement["member_level"], agreement["city"]) >= 0.98, agreement
    assert not math.isnan(wide.holiday_order_share.mean())
