"""Tags: the starter library, versions, history (entering opens a row, leaving closes it),
trends, dependencies between tags, analysts' SQL tags, on DuckDB and Spark.

The hand-built store of test_rules.py is the data; `AS_OF` is Monday 2026-03-02 noon
in Shanghai.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml

from jingzhun.core import Workspace
from jingzhun.engine import Engine, render
from jingzhun.engine.parity import compare_tables
from jingzhun.profiles.rules import RuleError
from jingzhun.profiles.tags import (
    TAG_CATEGORIES,
    TagError,
    apply_tags,
    data_as_of,
    holders_sql,
    list_tags,
    load_tag_definitions,
    parse_definitions,
    tag_counts,
    tag_trend,
)
from jingzhun.profiles.traits import PERSON_TRAITS
from tests.profiles.test_rules import AS_OF, PERSON_ROWS, TZ, arrow_rows, load_store, utc


def holders(engine: Engine, tag_id: str) -> dict[str, str | None]:
    rows = engine.query(f"SELECT person_id, value FROM tags WHERE tag_id = '{tag_id}' AND valid_to IS NULL")
    return {row["person_id"]: row["value"] for row in rows.to_pylist()}


def write_tags(workspace: Workspace, name: str, tags: list[dict]) -> Path:
    folder = workspace.definitions_dir / "tags"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(yaml.safe_dump({"tags": tags}, allow_unicode=True), encoding="utf-8")
    return path


def set_traits(engine: Engine, changes: dict[str, dict]) -> None:
    rows = [{**row, **changes.get(row["person_id"], {})} for row in PERSON_ROWS]
    engine.write_table("person_traits", arrow_rows(PERSON_TRAITS, rows), mode="replace")


# ---- the starter library -------------------------------------------------------------------


def test_library_has_thirty_bilingual_tags_in_every_category() -> None:
    definitions = load_tag_definitions()
    assert len(definitions) >= 30
    assert {d.category for d in definitions.values()} == set(TAG_CATEGORIES)
    for definition in definitions.values():
        assert definition.name_zh and definition.name_en and definition.description
        assert definition.description.zh and definition.description.en
    listed = list_tags()
    assert list(listed.columns[:4]) == ["tag_id", "category", "name_zh", "name_en"]
    assert {"高价值会员", "新客", "沉睡客户", "优惠券敏感", "本周关注粉底液", "节假日购物者", "直播观众", "通勤族",
            "高端价格带", "重要价值客户", "流失风险高"} <= set(listed["name_zh"])


def test_every_library_tag_renders_for_both_engines() -> None:
    for tag_id, definition in load_tag_definitions().items():
        query = holders_sql(definition, as_of=AS_OF, timezone=TZ)
        for dialect in ("duckdb", "spark"):
            assert "person_id" in render(query, dialect), tag_id


def test_library_runs_on_a_store(engine: Engine, workspace: Workspace) -> None:
    load_store(engine)
    result = apply_tags(workspace, engine, as_of=AS_OF)
    assert not result.skipped
    assert len(result.changes) == len(load_tag_definitions())
    assert holders(engine, "female") == {"p1": None, "p4": None, "p5": None}
    assert holders(engine, "browsing_foundation_this_week") == {"p1": None}
    assert holders(engine, "high_value_member") == {"p1": None, "p4": None}
    assert holders(engine, "age_band") == {"p1": "25-29", "p2": "40-49", "p4": "30-34", "p5": "<25", "p6": "30-34"}
    assert holders(engine, "churn_risk_band") == {"p1": "medium", "p2": "high", "p4": "low"}
    assert holders(engine, "commuter") == {"p3": None}  # app in rush hours on two weekdays
    assert holders(engine, "high_clv") == {}  # no CLV scores in this store
    assert holders(engine, "foundation_without_sponge") == {"p1": None}
    assert holders(engine, "double11_shopper") == {"p1": None, "p4": None}
    assert holders(engine, "birthday_this_month") == {"p1": None, "p4": None}  # SQL tag with :as_of
    # A tag built on other tags reads their holders of the same run.
    assert holders(engine, "win_back_candidate") == {"p5": None}
    assert result.changes["female"].entered == 3 and result.changes["female"].exited == 0
    counts = tag_counts(engine).set_index("tag_id")["holders"]
    assert counts["female"] == 3 and counts["age_band"] == 5
    by_value = tag_counts(engine, by_value=True).query("tag_id == 'churn_risk_band'")
    assert dict(zip(by_value["value"], by_value["holders"], strict=True)) == {"high": 1, "low": 1, "medium": 1}


# ---- history ---------------------------------------------------------------------------------


def test_history_opens_closes_and_leaves_unchanged_rows(engine: Engine, workspace: Workspace) -> None:
    load_store(engine)
    first = apply_tags(workspace, engine, tag_ids=["female", "age_band"], as_of=AS_OF)
    assert first.changes["female"].holders == 3
    later = AS_OF + timedelta(days=3)
    # p5 leaves `female`, p3 enters it; p1 moves to another age band; p4 is unchanged.
    set_traits(engine, {"p5": {"gender": "M"}, "p3": {"gender": "F"}, "p1": {"age_band": "30-34"}})
    second = apply_tags(workspace, engine, tag_ids=["female", "age_band"], as_of=later)
    assert (second.changes["female"].entered, second.changes["female"].exited) == (1, 1)
    assert (second.changes["age_band"].entered, second.changes["age_band"].exited) == (1, 1)
    rows = engine.query("SELECT person_id, tag_id, value, valid_from, valid_to FROM tags "
                        "WHERE tag_id IN ('female', 'age_band') ORDER BY tag_id, person_id, valid_from").to_pylist()
    by_key = {(r["tag_id"], r["person_id"], r["value"]): (r["valid_from"], r["valid_to"]) for r in rows}
    assert by_key[("female", "p4", None)] == (AS_OF, None)  # untouched
    assert by_key[("female", "p5", None)] == (AS_OF, later)  # left
    assert by_key[("female", "p3", None)] == (later, None)  # entered
    assert by_key[("age_band", "p1", "25-29")] == (AS_OF, later)  # value changed: closed …
    assert by_key[("age_band", "p1", "30-34")] == (later, None)  # … and reopened
    assert len(rows) == 3 + 1 + 5 + 1

    third = apply_tags(workspace, engine, tag_ids=["female"], as_of=later)  # nothing changed
    assert (third.changes["female"].entered, third.changes["female"].exited) == (0, 0)
    assert engine.row_count("tags") == 3 + len(rows)  # the fixture's 3 tag rows and ours: none new

    trend = tag_trend(engine, "female", timezone=TZ)
    assert trend["day"].tolist() == [date(2026, 3, 2) + timedelta(days=n) for n in range(4)]
    assert trend["holders"].tolist() == [3, 3, 3, 3]
    assert tag_trend(engine, "female", start=date(2026, 3, 1), end=date(2026, 3, 6))["holders"].tolist() == [
        0, 3, 3, 3, 3, 3]

    with pytest.raises(TagError, match="history only moves forward") as refused:
        apply_tags(workspace, engine, tag_ids=["female"], as_of=AS_OF)
    assert refused.value.field == "as_of"


def test_trend_counts_holders_at_the_end_of_each_day(engine: Engine, workspace: Workspace) -> None:
    load_store(engine)
    for offset, changes in enumerate([{}, {"p5": {"gender": "M"}}, {"p5": {"gender": "M"}, "p2": {"gender": "F"}}]):
        set_traits(engine, changes)
        apply_tags(workspace, engine, tag_ids=["female"], as_of=AS_OF + timedelta(days=2 * offset))
    trend = tag_trend(engine, "female", timezone=TZ)
    assert dict(zip(trend["day"], trend["holders"], strict=True)) == {
        date(2026, 3, 2): 3, date(2026, 3, 3): 3, date(2026, 3, 4): 2, date(2026, 3, 5): 2, date(2026, 3, 6): 3}


def test_changed_definition_is_a_new_version(engine: Engine, workspace: Workspace) -> None:
    load_store(engine)
    spec = {"tag_id": "big_spender", "name_zh": "大额消费", "name_en": "Big spender", "category": "marketing",
            "rule": {"trait": "gmv_365d", "op": ">=", "value": 1000}}
    write_tags(workspace, "mine.yaml", [spec])
    first = apply_tags(workspace, engine, tag_ids=["big_spender"], as_of=AS_OF)
    assert first.changes["big_spender"].version == 1
    apply_tags(workspace, engine, tag_ids=["big_spender"], as_of=AS_OF)
    assert engine.row_count("tag_definitions") == 1  # unchanged: no new version

    write_tags(workspace, "mine.yaml", [{**spec, "rule": {"trait": "gmv_365d", "op": ">=", "value": 500}}])
    second = apply_tags(workspace, engine, tag_ids=["big_spender"], as_of=AS_OF + timedelta(days=1))
    assert second.changes["big_spender"].version == 2
    versions = engine.query("SELECT tag_version, person_id FROM tags WHERE tag_id = 'big_spender' "
                            "AND valid_to IS NULL ORDER BY person_id").to_pylist()
    assert versions == [{"tag_version": 1, "person_id": "p1"}, {"tag_version": 1, "person_id": "p4"},
                        {"tag_version": 2, "person_id": "p5"}]  # unchanged holders keep their row
    stored = engine.query("SELECT version, definition FROM tag_definitions ORDER BY version").to_pylist()
    assert [row["version"] for row in stored] == [1, 2] and '"value": 500' in stored[1]["definition"]


def test_workspace_overrides_and_disables_library_tags(workspace: Workspace) -> None:
    write_tags(workspace, "overrides.yaml", [
        {"tag_id": "commuter", "enabled": False, "name_zh": "通勤族", "name_en": "Commuter", "category": "scenario",
         "rule": {"trait": "gender", "op": "is_null"}},
        {"tag_id": "new_customer", "name_zh": "新客", "name_en": "New customer", "category": "marketing",
         "rule": {"trait": "first_order_at", "op": "within", "value": "14d"}},
    ])
    definitions = load_tag_definitions(workspace)
    assert "commuter" not in definitions
    assert definitions["new_customer"].rule.value == "14d"


# ---- dependencies, SQL tags, bad definitions ------------------------------------------------------


def test_tags_cannot_use_audiences(workspace: Workspace) -> None:
    write_tags(workspace, "audience.yaml", [
        {"tag_id": "in_vip_audience", "name_zh": "贵宾人群", "name_en": "In VIP audience", "category": "marketing",
         "rule": {"all": [{"trait": "gender", "op": "=", "value": "F"}, {"segment": "vip"}]}},
    ])
    with pytest.raises(RuleError, match="`segment` conditions are not available") as caught:
        load_tag_definitions(workspace)
    assert caught.value.field == "tags[0].rule.all[1].segment"


def test_dependency_cycle_names_the_cycle(workspace: Workspace) -> None:
    write_tags(workspace, "cycle.yaml", [
        {"tag_id": "aa_tag", "name_zh": "甲", "name_en": "A", "category": "marketing", "rule": {"tag": "bb_tag"}},
        {"tag_id": "bb_tag", "name_zh": "乙", "name_en": "B", "category": "marketing",
         "rule": {"all": [{"tag": "aa_tag"}, {"trait": "gender", "op": "=", "value": "F"}]}},
    ])
    with pytest.raises(TagError, match="cycle") as caught:
        load_tag_definitions(workspace)
    assert "aa_tag" in caught.value.message and "bb_tag" in caught.value.message
    assert "循环" in caught.value.describe("zh")


def test_unknown_tag_reference_names_the_rule_path(workspace: Workspace) -> None:
    path = write_tags(workspace, "bad.yaml", [
        {"tag_id": "lonely", "name_zh": "孤", "name_en": "Lonely", "category": "marketing",
         "rule": {"any": [{"trait": "gender", "op": "=", "value": "F"}, {"tag": "no_such_tag"}]}},
    ])
    with pytest.raises(RuleError) as caught:
        load_tag_definitions(workspace)
    assert caught.value.field == "tags[0].rule.any[1].tag" and caught.value.location == str(path)


def test_definition_errors_name_the_field(workspace: Workspace) -> None:
    with pytest.raises(RuleError) as caught:
        parse_definitions({"tags": [{"tag_id": "x1", "name_zh": "x", "name_en": "x", "category": "mood",
                                     "rule": {"event": {"window": {"last": "week"}}}}]})
    fields = {problem.path for problem in caught.value.problems}
    assert fields == {"tags[0].category", "tags[0].rule.event.window.last"}
    with pytest.raises(RuleError, match="either `rule` or `sql`"):
        parse_definitions([{"tag_id": "x1", "name_zh": "x", "name_en": "x", "category": "base"}])
    path = workspace.definitions_dir / "tags" / "broken.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("tags:\n  - tag_id: x\n    name_en: a: b\n", encoding="utf-8")
    with pytest.raises(TagError, match="line 3") as broken:
        load_tag_definitions(workspace)
    assert broken.value.location == str(path)


@pytest.mark.parametrize(("sql", "reason"), [
    ("DELETE FROM tags", "read-only"),
    ("SELECT person_id FROM tags; DROP TABLE tags", "one SQL statement"),
    ("SELECT member_id FROM person_traits", "person_id"),
])
def test_sql_tags_must_be_read_only_selects(sql: str, reason: str) -> None:
    with pytest.raises(RuleError, match=reason) as caught:
        parse_definitions([{"tag_id": "analyst", "name_zh": "分析", "name_en": "Analyst", "category": "base",
                            "sql": sql}])
    assert caught.value.field == "tags[0].sql"


def test_sql_tag_value_and_population(engine: Engine, workspace: Workspace) -> None:
    load_store(engine)
    write_tags(workspace, "sql.yaml", [{
        "tag_id": "city_of_order", "name_zh": "下单城市", "name_en": "City", "category": "base",
        "sql": "SELECT person_id, city AS value FROM person_traits WHERE city LIKE '%市' "
               "UNION ALL SELECT 'ghost' AS person_id, 'x' AS value",
    }])
    apply_tags(workspace, engine, tag_ids=["city_of_order"], as_of=AS_OF)
    assert holders(engine, "city_of_order") == {"p1": "上海市", "p2": "北京市", "p3": "广州市", "p4": "深圳市",
                                                "p5": "杭州市"}  # ghost is nobody's


def test_tags_whose_inputs_are_missing_are_skipped_with_a_note(engine: Engine, workspace: Workspace) -> None:
    load_store(engine)
    engine.drop_table("scores")
    result = apply_tags(workspace, engine, as_of=AS_OF)
    assert result.skipped["churn_risk_high"] == "scores"
    assert result.skipped["vip_at_risk"] == "uses skipped tag churn_risk_high"
    assert ("note.tag_skipped_input", {"tag": "churn_risk_high", "missing": "scores"}) in result.notes
    assert ("note.tag_skipped_dependency", {"tag": "vip_at_risk", "tags": "churn_risk_high"}) in result.notes
    assert "female" in result.changes and holders(engine, "churn_risk_high") == {}


def test_default_as_of_is_the_latest_data(engine: Engine) -> None:
    load_store(engine)
    assert data_as_of(engine) == utc(2026, 3, 5)  # e13, the latest event


@pytest.mark.spark
def test_library_and_history_same_on_duckdb_and_spark(both_engines: tuple[Engine, Engine], workspace: Workspace) -> None:
    duck, spark = both_engines
    for engine in both_engines:
        load_store(engine)
        apply_tags(workspace, engine, as_of=AS_OF)
        set_traits(engine, {"p5": {"gender": "M"}, "p1": {"age_band": "30-34"}})
        apply_tags(workspace, engine, as_of=AS_OF + timedelta(days=1))
    query = "SELECT person_id, tag_id, tag_version, value, valid_from, valid_to FROM tags"
    report = compare_tables("tags", duck.query(query), spark.query(query))
    assert report.equal, report.differences
    closed = duck.query("SELECT COUNT(*) AS n FROM tags WHERE valid_to IS NOT NULL").column("n")[0].as_py()
    assert closed >= 3  # p5 left `female`, p1 changed age band, and the fixture's closed row


# ---- end to end on the demo ----------------------------------------------------------------------


def test_whole_library_on_the_demo(loaded_demo: Path, tmp_path: Path) -> None:
    """Identity → traits → every library tag on a copy of the loaded demo (DuckDB)."""
    import json

    from jingzhun.engine import open_engine
    from jingzhun.identity import build_identity
    from jingzhun.profiles.traits import compute_traits
    from tests.conftest import copy_workspace

    workspace = copy_workspace(loaded_demo, tmp_path / "ws")
    with open_engine(workspace) as engine:
        build_identity(workspace, engine)
        compute_traits(workspace, engine)
        result = apply_tags(workspace, engine)
        assert not result.skipped and len(result.changes) == len(load_tag_definitions(workspace))
        counts = tag_counts(engine).set_index("tag_id")["holders"]
        for tag_id in ("female", "member", "age_band", "rfm_class", "dormant_customer", "repeat_buyer",
                       "premium_price_band", "double11_shopper", "holiday_shopper"):
            assert counts.get(tag_id, 0) > 0, tag_id

        # Membership against pandas over the same tables: women, and this week's foundation viewers.
        traits = engine.read_table("person_traits").to_pandas()
        assert set(holders(engine, "female")) == set(traits.loc[traits["gender"] == "F", "person_id"])
        events = engine.query("SELECT rp.person_id, e.timestamp, e.event, e.properties FROM events AS e "
                              "JOIN record_persons AS rp ON rp.record_kind = 'event' "
                              "AND rp.record_id = e.message_id").to_pandas()
        foundation = set(engine.query("SELECT product_id FROM products WHERE subcategory = 'foundation'")
                         .column(0).to_pylist())
        recent = events[(events["timestamp"] > result.as_of - timedelta(days=7))
                        & (events["timestamp"] <= result.as_of) & (events["event"] == "Product Viewed")]
        viewed = recent["properties"].map(lambda p: json.loads(p).get("product_id")).isin(foundation)
        expected = set(recent.loc[viewed, "person_id"]) & set(traits["person_id"])
        assert set(holders(engine, "browsing_foundation_this_week")) == expected

        # Nothing new: applying again changes no row.
        again = apply_tags(workspace, engine, as_of=result.as_of)
        assert all(c.entered == 0 and c.exited == 0 for c in again.changes.values())
