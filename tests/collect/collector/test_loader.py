"""The loader on each engine (DuckDB; Spark with `-m spark`): mapping, dedupe, replay."""

from __future__ import annotations

from pathlib import Path

import orjson

from jingzhun.collect.collector.durable_log import DurableLog
from jingzhun.collect.collector.loader import Loader
from jingzhun.collect.collector.log_records import request_line
from jingzhun.collect.collector.tracking_plan import PlanChecker, TrackingPlan
from jingzhun.engine import Engine
from jingzhun.schema import migrate

RECEIVED_US = 1_714_550_400_000_000  # 2024-05-01T08:00:00Z


def line(messages: list[object], received_us: int = RECEIVED_US) -> bytes:
    body = orjson.dumps({"batch": messages, "sentAt": "2024-05-01T08:00:10Z"})
    return request_line(received_us, "src_1", "miniprogram", "batch", body)


def track(message_id: str, **properties: object) -> dict:
    return {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": message_id,
            "timestamp": "2024-05-01T08:00:00Z", "properties": properties}


def test_loader_maps_dedupes_and_replays(engine: Engine, tmp_path: Path) -> None:
    migrate(engine)
    log = DurableLog(tmp_path / "log")
    plan = TrackingPlan.model_validate({"name": "p", "on_violation": "quarantine", "events": {
        "Order Completed": {"properties": {"order_id": {"type": "string", "required": True}}}}})
    log.append(line([track("a", order_id="1"), track("a", order_id="1"), track("b"), {"type": "click"}]))
    loader = Loader(engine, DurableLog(tmp_path / "log", writer=False), PlanChecker([plan]), {"src_1": "mini"})
    assert loader.load_once() == 1
    log.append(line([track("a", order_id="1"), track("c", order_id="2")]))  # a retry and a new one
    loader.load_once()
    replay = Loader(engine, DurableLog(tmp_path / "log", writer=False), PlanChecker([plan]), {})
    replay.position = type(replay.position)(1, 0)  # as if the checkpoint had been lost
    replay.load_once()
    rows = engine.query("SELECT message_id, channel, timestamp, original_timestamp FROM events "
                        "ORDER BY message_id").to_pylist()
    assert [r["message_id"] for r in rows] == ["a", "c"]
    assert rows[0]["channel"] == "miniprogram"
    # sentAt is 10 s after receipt: the device clock runs 10 s fast, so the event was 10 s earlier
    assert (rows[0]["original_timestamp"] - rows[0]["timestamp"]).total_seconds() == 10
    reasons = engine.query("SELECT reason_code FROM quarantine").column("reason_code").to_pylist()
    assert sorted(reasons) == ["invalid_type", "tracking_plan.missing_property"]  # the replay added none
    assert not engine.table_exists("_collector_batch")  # the anti-join's staging table is gone


def test_retries_within_the_dedupe_window_are_recognized(engine: Engine, tmp_path: Path) -> None:
    """The anti-join looks back DEDUPE_WINDOW (seven days) from the batch's earliest receipt."""
    migrate(engine)
    log = DurableLog(tmp_path / "log")
    day_us = 86_400 * 1_000_000
    log.append(line([track("early"), track("kept")]))
    loader = Loader(engine, DurableLog(tmp_path / "log", writer=False), PlanChecker([]), {"src_1": "mini"})
    loader.load_once()
    log.append(line([track("kept"), track("new")], received_us=RECEIVED_US + 6 * day_us))
    loader.load_once()
    rows = engine.query("SELECT message_id, count(*) AS n FROM events GROUP BY 1 ORDER BY 1").to_pylist()
    assert rows == [{"message_id": "early", "n": 1}, {"message_id": "kept", "n": 1}, {"message_id": "new", "n": 1}]
