"""The app on a real DuckDB file: auth, gzip, limits, quarantine, dedupe, tracking plans."""

from __future__ import annotations

import base64
import gzip
import json

import orjson
import pytest
from fastapi.testclient import TestClient

from jingzhun.collect.collector import create_app
from jingzhun.core import Workspace
from jingzhun.engine import open_engine

PLAN = """
name: shop
sources: [web-source]
on_violation: {mode}
events:
  Order Completed:
    properties:
      order_id: {{type: string, required: true}}
      revenue: {{type: number}}
"""


def auth(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def collect(workspace: Workspace, calls: list[tuple[str, dict, dict]]) -> list:
    """Run the app, make the calls, shut down (the loader drains) and return the responses."""
    with TestClient(create_app(workspace, load_interval=0.05)) as client:
        return [client.post(path, json=body, headers=headers) for path, body, headers in calls]


def rows(workspace: Workspace, sql: str) -> list[dict]:
    with open_engine(workspace) as engine:
        return engine.query(sql).to_pylist()


def track(message_id: str, **extra) -> dict:
    return {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": message_id,
            "properties": {"order_id": "o1", "revenue": 9.5}, **extra}


def test_unknown_or_missing_key_is_refused_and_health_is_open(keyed_workspace) -> None:
    workspace, keys = keyed_workspace
    with TestClient(create_app(workspace)) as client:
        assert client.get("/health").json()["ok"] is True
        assert client.post("/v1/track", json=track("m"), headers=auth("wrong")).status_code == 401
        missing = client.post("/v1/track", json=track("m"))
        assert missing.status_code == 401 and missing.json()["field"] == "writeKey"
        in_body = client.post("/v1/track", json={**track("m"), "writeKey": keys["web"]})
        assert in_body.json() == {"success": True}


def test_gzip_batch_and_import_keep_timestamps(keyed_workspace) -> None:
    workspace, keys = keyed_workspace
    body = {"batch": [track("g1", timestamp="2021-03-01T00:00:00Z")], "sentAt": "2021-03-01T00:00:10Z"}
    with TestClient(create_app(workspace)) as client:
        zipped = client.post("/v1/batch", content=gzip.compress(orjson.dumps(body)),
                             headers={**auth(keys["server"]), "Content-Encoding": "gzip"})
        assert zipped.json() == {"success": True}
        imported = client.post("/v1/import", json={"batch": [track("i1", timestamp="2019-06-01T00:00:00Z")]},
                               headers=auth(keys["server"]))
        assert imported.json() == {"success": True}
    got = {r["message_id"]: r for r in rows(workspace, "SELECT * FROM events")}
    assert str(got["i1"]["timestamp"].year) == "2019"  # a backfill keeps its event time
    skewed = got["g1"]
    assert skewed["original_timestamp"].year == 2021 and skewed["timestamp"].year >= 2025
    assert skewed["channel"] == "server"


def test_size_limits_answer_400_with_field(keyed_workspace) -> None:
    workspace, keys = keyed_workspace
    big = track("big", properties={"x": "y" * 40_000})
    responses = collect(workspace, [
        ("/v1/track", big, auth(keys["web"])),
        ("/v1/batch", {"batch": [track(str(n), properties={"x": "y" * 30_000}) for n in range(20)]},
         auth(keys["web"])),
    ])
    assert responses[0].status_code == 400 and responses[0].json()["field"] == "message"
    assert responses[1].status_code == 400 and responses[1].json()["code"] == "batch_too_large"


def test_malformed_messages_in_a_batch_are_quarantined_valid_ones_kept(keyed_workspace) -> None:
    workspace, keys = keyed_workspace
    too_big = track("big", properties={"x": "y" * 33_000})  # within the 500 KB batch, over 32 KB
    batch = {"batch": [track("ok1"), {"type": "track", "userId": "u"}, "junk", track("ok2"), too_big]}
    [response] = collect(workspace, [("/v1/batch", batch, auth(keys["app"]))])
    assert response.json() == {"success": True}  # as Segment: the loader checks each message
    assert {r["message_id"] for r in rows(workspace, "SELECT message_id FROM events")} == {"ok1", "ok2"}
    reasons = rows(workspace, "SELECT field, reason_code, reason, payload FROM quarantine ORDER BY field")
    assert [(r["field"], r["reason_code"]) for r in reasons] == [
        ("batch[]", "invalid_message"), ("event", "missing_field"), ("message", "message_too_large")]
    assert all(r["reason"] and r["payload"] for r in reasons)


def test_message_id_dedupes_retries_across_restarts(keyed_workspace) -> None:
    workspace, keys = keyed_workspace
    batch = {"batch": [track("d1"), track("d1"), track("d2")]}
    collect(workspace, [("/v1/batch", batch, auth(keys["web"])), ("/v1/batch", batch, auth(keys["web"]))])
    collect(workspace, [("/v1/batch", batch, auth(keys["web"]))])  # a retry after a restart
    counted = rows(workspace, "SELECT message_id, count(*) AS n FROM events GROUP BY 1 ORDER BY 1")
    assert counted == [{"message_id": "d1", "n": 1}, {"message_id": "d2", "n": 1}]


@pytest.mark.parametrize("mode", ["flag", "quarantine"])
def test_tracking_plan_flags_or_quarantines(keyed_workspace, mode: str) -> None:
    workspace, keys = keyed_workspace
    folder = workspace.definitions_dir / "tracking_plans"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "shop.yaml").write_text(PLAN.format(mode=mode), encoding="utf-8")
    bad = track("bad", properties={"revenue": "9.5"})
    collect(workspace, [("/v1/batch", {"batch": [track("good"), bad]}, auth(keys["web"])),
                        ("/v1/track", track("other-source", properties={}), auth(keys["app"]))])
    stored = {r["message_id"]: r for r in rows(workspace, "SELECT message_id, context FROM events")}
    assert "good" in stored and "other-source" in stored  # the plan covers web-source only
    if mode == "flag":
        violations = json.loads(stored["bad"]["context"])["_violations"]
        assert {v["field"] for v in violations} == {"properties.order_id", "properties.revenue"}
    else:
        assert "bad" not in stored
        [held] = rows(workspace, "SELECT reason_code, reason, field FROM quarantine")
        assert held["reason_code"] == "tracking_plan.missing_property"
        assert "order_id" in held["reason"] and "revenue" in held["reason"]


def test_invalid_tracking_plan_names_file_and_field(keyed_workspace) -> None:
    from jingzhun.collect.collector import CollectorError, load_tracking_plans

    workspace, _ = keyed_workspace
    folder = workspace.definitions_dir / "tracking_plans"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bad.yaml").write_text("name: x\non_violation: drop\n", encoding="utf-8")
    with pytest.raises(CollectorError, match="on_violation"):
        load_tracking_plans(workspace.definitions_dir)
