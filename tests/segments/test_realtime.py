"""Real-time audiences: which rules qualify, and membership updated by a real collector on
127.0.0.1 as a copy of the portrayed demo receives events."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import yaml

from jingzhun.cli.collector import AFTER_LOAD_HOOKS
from jingzhun.collect.collector import add_source
from jingzhun.engine import open_engine, render
from jingzhun.profiles.rules import RuleError, parse_rule
from jingzhun.schema import migrate
from jingzhun.segments import (
    list_audiences,
    live_changes,
    live_members,
    members_sql,
    parse_audience,
    preview_audience,
    snapshot_audiences,
)
from jingzhun.segments.realtime import LiveCompiler, changes_sql, realtime_problems, touched_sql
from tests.collect.collector.conftest import serving
from tests.conftest import copy_workspace

VIEWS = {"event": {"name": "Product Viewed", "product": {"category": "cosmetics"}, "window": {"last": "7d"}}}
TWICE = {"event": {**VIEWS["event"], "count": {"op": ">=", "value": 2}}}
NO_CART = {"all": [VIEWS, {"not": {"event": {"name": "Product Added", "window": {"last": "7d"}}}}]}


@pytest.mark.parametrize(("rule", "paths"), [
    (TWICE, []),
    (NO_CART, []),
    ({"any": [TWICE, {"event": {"name": "Signed Up"}}]}, []),
    ({"all": [TWICE, {"trait": "gender", "op": "=", "value": "F"}]}, ["segment.rule.all[1].trait"]),
    ({"any": [{"tag": "vip"}, {"not": {"score": "churn_90d", "op": ">", "value": 0.5}}]},
     ["segment.rule.any[0].tag", "segment.rule.any[1].not.score"]),
    ({"all": [{"segment": "other"}, {"has_identifier": "phone"}, {"consent": {}}]},
     ["segment.rule.all[0].segment", "segment.rule.all[1].has_identifier", "segment.rule.all[2].consent"]),
    ({"order": {"product": {"category": "cosmetics"}, "window": {"last": "7d"}}}, ["segment.rule.order"]),
    ({"event": {"name": "Product Viewed", "window": {"from": "2026-11-01", "to": "2026-11-11"}}},
     ["segment.rule.event.window"]),
])
def test_which_rules_can_be_realtime(rule: dict, paths: list[str]) -> None:
    assert [p.path for p in realtime_problems(parse_rule(rule, root="segment.rule"))] == paths


@pytest.mark.parametrize("dialect", ["duckdb", "spark"])
def test_the_live_queries_render_for_both_engines(dialect: str) -> None:
    for rule in (TWICE, NO_CART):
        compiler = LiveCompiler(as_of=datetime(2026, 1, 1, tzinfo=UTC), population="segment_work_live_touched")
        members = compiler.select(compiler.predicate(parse_rule(rule)))
        rendered = render(changes_sql("live", members), dialect)
        restricted = rendered.count("IN (SELECT person_id FROM segment_work_live_touched)")
        assert restricted == (2 if rule is NO_CART else 1)  # every per-person aggregate: touched persons only
    assert render(touched_sql(["a", "b"], recheck=True), dialect).strip()


def test_a_realtime_definition_that_cannot_be_is_refused_with_the_rule_path() -> None:
    definition = {"segment_id": "women_viewers", "name_zh": "女性浏览者", "name_en": "Women viewers",
                  "realtime": True, "rule": {"all": [TWICE, {"trait": "gender", "op": "=", "value": "F"}]}}
    with pytest.raises(RuleError) as refused:
        parse_audience(definition, "live.yaml")
    error = refused.value
    assert error.field == "segment.rule.all[1].trait" and error.location == "live.yaml"
    assert "only event conditions" in error.message
    assert "实时人群只能使用事件条件" in error.message_zh and "realtime: true" in error.fix
    assert parse_audience({**definition, "realtime": False}).realtime is False


def send(url: str, key: str, messages: list[dict]) -> None:
    """Send a batch and wait until every after-load hook has handled it (generous timeout).

    Messages get their order as event time, one millisecond apart."""
    start = time.time()
    for index, message in enumerate(messages):
        message.setdefault("messageId", f"{message.get('userId') or message['anonymousId']}-{time.time_ns()}")
        message["timestamp"] = datetime.fromtimestamp(start + index / 1000, UTC).isoformat()
    answer = httpx.post(f"{url}/v1/batch", json={"batch": messages}, auth=(key, ""), timeout=30)
    assert answer.json() == {"success": True}
    acknowledged = datetime.now(UTC)
    deadline = time.monotonic() + 90
    while True:
        hooks = httpx.get(f"{url}/health", timeout=10).json()["after_load"]
        done = [h["through"] and datetime.fromisoformat(h["through"]) >= acknowledged for h in hooks.values()]
        if len(done) == len(AFTER_LOAD_HOOKS) and all(done):
            return
        assert time.monotonic() < deadline, f"the hooks did not handle the batch: {hooks}"
        time.sleep(0.1)


def hooks_ready(url: str) -> None:
    """Wait until the loader process has imported its hooks and read their progress."""
    deadline = time.monotonic() + 120
    while not httpx.get(f"{url}/health", timeout=10).json()["after_load"]:
        assert time.monotonic() < deadline, "the loader did not start its hooks"
        time.sleep(0.1)


def view(product: str, *, user: str | None = None, anonymous: str | None = None) -> dict:
    ids = {"userId": user} if user else {"anonymousId": anonymous}
    return {"type": "track", "event": "Product Viewed", "properties": {"product_id": product}, **ids}


def test_membership_follows_events_through_a_real_collector(portrayed_demo: Path, tmp_path: Path) -> None:
    workspace = copy_workspace(portrayed_demo, tmp_path / "ws")
    audiences = [{"segment_id": "cosmetics_viewers_live", "name_zh": "近 7 天两次浏览美妆",
                  "name_en": "Viewed cosmetics twice in 7 days", "realtime": True, "rule": TWICE},
                 {"segment_id": "viewers_no_cart_live", "name_zh": "浏览美妆未加购", "name_en": "Viewed, no cart",
                  "realtime": True, "rule": NO_CART}]
    (workspace.definitions_dir / "segments" / "live.yaml").write_text(yaml.safe_dump(audiences, allow_unicode=True))
    with open_engine(workspace) as engine:
        migrate(engine)
        _, key = add_source(engine, "live-web", "web")
        people = engine.query("SELECT id_value AS member, person_id FROM identities WHERE id_type = 'member_id' "
                              "ORDER BY id_value LIMIT 4").to_pylist()
        lipstick, shirt = (engine.query(f"SELECT MIN(product_id) FROM products WHERE category = '{c}'")
                           .column(0)[0].as_py() for c in ("cosmetics", "apparel"))
    a, b, c, d = ([p["member"] for p in people])
    with serving(workspace, after_load=AFTER_LOAD_HOOKS) as url:
        hooks_ready(url)
        send(url, key, [view(lipstick, user=a), view(lipstick, anonymous="cookie-c"), view(lipstick, user=d)])
        second = view(lipstick, user=a)
        third = view(lipstick, anonymous="cookie-c")  # cookie-c becomes c's: with the first view, twice
        send(url, key, [second, view(shirt, user=b), view(shirt, user=b),
                        {"type": "identify", "userId": c, "anonymousId": "cookie-c"}, third,
                        {"type": "track", "event": "Product Added", "userId": d, "properties": {}}])
    person = {p["member"]: p["person_id"] for p in people}
    with open_engine(workspace) as engine:
        twice = live_members(engine, "cosmetics_viewers_live")
        assert set(twice.members["person_id"]) == {person[a], person[c]}
        triggers = dict(zip(twice.members["person_id"], twice.members["trigger_message_id"], strict=True))
        assert triggers == {person[a]: second["messageId"], person[c]: third["messageId"]}
        history = live_changes(engine, "viewers_no_cart_live").changes
        moves = [(row.person_id, row.change) for row in history.itertuples()]
        assert (person[d], "entered") in moves and moves.index((person[d], "exited")) > moves.index(
            (person[d], "entered"))  # the cart add took d out
        assert person[d] not in set(live_members(engine, "viewers_no_cart_live").members["person_id"])
        listed = list_audiences(workspace, engine).set_index("segment_id")
        assert listed.loc["cosmetics_viewers_live", "live_members"] == 2
        assert bool(listed.loc["cosmetics_viewers_live", "realtime"])
        definition = parse_audience(audiences[0])
        assert preview_audience(workspace, engine, definition).live_members == 2
        snapshot = snapshot_audiences(workspace, engine, ["cosmetics_viewers_live"]).snapshots[0]
        assert snapshot.members == 2  # the dated snapshot, over everyone, agrees with the live members
        assert set(engine.query(members_sql("cosmetics_viewers_live")).column(0).to_pylist()) == {
            person[a], person[c]}
        assert twice.sql.startswith("SELECT") and "segment_live_members" in twice.sql
