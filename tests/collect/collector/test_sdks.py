"""Official SDKs as real clients of a real `jingzhun serve` process.

Each SDK's wire requests are recorded on the client side, then every field of every
message sent is looked up in `events`: columns for the spec's fields, JSON columns
for properties/traits/context, and `context._extra` for the rest (integrations,
category, _metadata, ...).
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import pytest

from jingzhun.collect.collector import add_source
from jingzhun.collect.collector.spec import parse_time
from jingzhun.core import WorkspaceConfig, init_workspace
from jingzhun.engine import open_engine
from jingzhun.schema import migrate
from tests.collect.collector.conftest import Server, free_port

NODE_DIR = Path(__file__).parent / "node"
COLUMNS = {"messageId": "message_id", "type": "type", "event": "event", "name": "name",
           "userId": "user_id", "anonymousId": "anonymous_id", "previousId": "previous_id",
           "groupId": "group_id"}
CONTEXT = {"ip": "10.0.0.8", "locale": "zh-CN", "campaign": {"source": "wechat", "name": "双11"}}
INTEGRATIONS = {"All": True, "Mixpanel": False}


def recording(session_post: Callable, sent: list[dict]) -> Callable:
    """Wrap the SDK's requests session so the exact bodies sent are kept."""

    def post(url: str, **kwargs: object) -> object:
        data = kwargs["data"]
        if (kwargs.get("headers") or {}).get("Content-Encoding") == "gzip":
            data = gzip.decompress(data)
        sent.append(json.loads(data))
        return session_post(url, **kwargs)

    return post


def exercise(client: object, prefix: str) -> None:
    """One call of each kind, with the options real apps use."""
    client.identify(f"{prefix}-user", {"phone": "+8613800138000", "vip": True}, context=CONTEXT,
                    integrations=INTEGRATIONS, message_id=f"{prefix}-identify")
    client.track(f"{prefix}-user", "Order Completed", {"order_id": "o-1", "revenue": 99.5, "items": [{"sku": "S1"}]},
                 context=CONTEXT, message_id=f"{prefix}-track", integrations=INTEGRATIONS,
                 timestamp=__import__("datetime").datetime(2024, 5, 1, 8, 0, tzinfo=__import__("datetime").UTC))
    client.page(f"{prefix}-user", "商品", "详情页", {"url": "https://shop.example/p/1"}, message_id=f"{prefix}-page",
                anonymous_id=f"{prefix}-anon")
    client.screen(f"{prefix}-user", "App", "Home", {"tab": "new"}, message_id=f"{prefix}-screen")
    client.group(f"{prefix}-user", "g-1", {"name": "Store 7"}, message_id=f"{prefix}-group")
    client.alias(f"{prefix}-anon", f"{prefix}-user", message_id=f"{prefix}-alias")


def send_segment(url: str, key: str) -> list[dict]:
    import segment.analytics as segment
    from segment.analytics import request

    sent: list[dict] = []
    with mock.patch.object(request._session, "post", recording(request._session.post, sent)):
        client = segment.Client(key, host=url, gzip=True, max_retries=3, upload_interval=0.1)
        exercise(client, "seg")
        client.shutdown()
    return sent


def send_rudder(url: str, key: str) -> list[dict]:
    from rudderstack.analytics import request
    from rudderstack.analytics.client import Client

    sent: list[dict] = []
    with mock.patch.object(request._session, "post", recording(request._session.post, sent)):
        client = Client(key, host=url, gzip=True, max_retries=3, upload_interval=0.1)
        exercise(client, "rud")
        client.flush()
        client.join()
    return sent


def send_node(url: str, key: str) -> list[dict]:
    done = subprocess.run(["node", "send.mjs"], cwd=NODE_DIR, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "WRITE_KEY": key, "COLLECTOR_URL": url}, check=True)
    assert "error" not in done.stderr, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def collected(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the server once; send with all three SDKs; stop it (the loader drains); read events."""
    if shutil.which("node") is None or not (NODE_DIR / "node_modules").is_dir():
        pytest.fail("node and tests/collect/collector/node/node_modules are needed: run `make node`")
    workspace = init_workspace(tmp_path_factory.mktemp("sdk") / "ws", WorkspaceConfig(name="sdk"))
    with open_engine(workspace) as engine:
        migrate(engine)
        keys = {kind: add_source(engine, f"{kind}-src", kind)[1] for kind in ("server", "app", "web")}
    server = Server(workspace, free_port()).start()
    try:
        sent = {"segment": send_segment(server.url, keys["server"]),
                "rudder": send_rudder(server.url, keys["app"]),
                "node": send_node(server.url, keys["web"])}
    finally:
        server.stop()
    with open_engine(workspace) as engine:
        rows = engine.query("SELECT * FROM events").to_pylist()
    return {"sent": sent, "rows": rows}


def assert_stored(message: dict, batch_sent_at: str | None, row: dict) -> None:
    """Every key of `message` is in `row`, in its column or inside a JSON column."""
    context = json.loads(row["context"] or "{}")
    extra = context.pop("_extra", {})
    for key, value in message.items():
        if key in COLUMNS:
            assert row[COLUMNS[key]] == (None if value is None else str(value)), key
        elif key in ("timestamp", "originalTimestamp"):
            assert row["original_timestamp"] == parse_time(value), key
        elif key in ("properties", "traits"):
            assert json.loads(row[key] or "null") == value, key
        elif key == "context":
            assert context == value, key
        elif key == "sentAt":
            assert row["sent_at"] == parse_time(value)
        else:
            assert extra[key] == value, key
    if batch_sent_at and "sentAt" not in message:
        assert row["sent_at"] == parse_time(batch_sent_at)


@pytest.mark.parametrize(("sdk", "channel", "calls"), [
    ("segment", "server", 6), ("rudder", "app", 6), ("node", "web", 6)])
def test_every_field_sent_is_stored(collected: dict, sdk: str, channel: str, calls: int) -> None:
    rows = {row["message_id"]: row for row in collected["rows"]}
    messages = [(m, body.get("sentAt")) for body in collected["sent"][sdk] for m in body["batch"]]
    assert len({m["messageId"] for m, _ in messages}) == calls
    for message, sent_at in messages:
        row = rows[message["messageId"]]
        assert_stored(message, sent_at, row)
        assert row["channel"] == channel and row["source_id"] and row["loaded_at"]
        assert row["received_at"] is not None and row["timestamp"] is not None


def test_no_duplicates_and_json_is_queryable(collected: dict) -> None:
    ids = [row["message_id"] for row in collected["rows"]]
    assert len(ids) == len(set(ids)) == 18
    track = next(r for r in collected["rows"] if r["message_id"] == "node-track")
    assert json.loads(track["properties"])["items"][0]["sku"] == "S1"
