"""Bulk decoding of logged requests: the SQL path agrees with the reference Python."""

from __future__ import annotations

import json

import orjson
import pytest

from jingzhun.collect.collector.durable_log import Position
from jingzhun.collect.collector.log_records import RecordDecoder, message_key, request_line
from jingzhun.collect.collector.spec import check_message, generated_message_id, to_event_row
from jingzhun.collect.collector.tracking_plan import PlanChecker

RECEIVED_US = 1_714_550_400_000_000  # 2024-05-01T08:00:00Z
SENT_AT = "2024-05-01T08:00:10Z"
VALID = [
    # the well-trodden path (decoded in SQL)
    {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "m-track",
     "timestamp": "2024-05-01T07:59:00.123Z", "properties": {"revenue": 9.5, "big": 1e10, "名": "护肤\n\"é\""},
     "context": {"ip": "10.0.0.1", "campaign": {"source": "wechat"}}, "integrations": {"All": True},
     "_metadata": {"bundled": []}},
    {"type": "identify", "userId": 7, "traits": {"vip": True, "gone": None}, "context": {}},
    {"type": "screen", "anonymousId": "a1", "name": "Home", "messageId": "m-naive", "timestamp": "2024-05-01T08:00:00"},
    {"type": "alias", "previousId": "a1", "userId": "u1", "messageId": "m-alias",
     "originalTimestamp": "2024-05-01T15:59:59.5+08:00", "sentAt": "2024-05-01T16:00:00+08:00"},
    {"type": "group", "userId": "u1", "groupId": 42, "messageId": "m-group", "traits": {"name": "Store 7"}},
    {"type": "page", "anonymousId": "a2", "messageId": "m-page-none", "properties": None, "context": None},
    # unusual but valid (decoded by the reference Python)
    {"type": "page", "anonymousId": "a3", "messageId": "m-date-only", "timestamp": "2024-05-01"},
    {"type": "track", "event": 5, "userId": "u2", "messageId": "m-int-event"},
    {"type": "group", "userId": "u1", "groupId": "g", "messageId": "m-own-extra",
     "context": {"_extra": "mine"}, "category": "shop"},
    {"type": "track", "event": "E", "userId": "u3", "messageId": 12345},
]
INVALID = [
    {"type": "track", "userId": "u"},
    {"type": "track", "event": "E"},
    {"type": "alias", "userId": "u"},
    {"type": "group", "userId": "u"},
    {"type": "click", "userId": "u"},
    {"type": "track", "userId": "u", "event": "E", "timestamp": "yesterday"},
    {"type": "track", "userId": "u", "event": "E", "properties": [1]},
    {"type": "track", "userId": "u", "event": "E", "messageId": ""},
    {"type": "track", "userId": "u", "event": "E", "properties": {"x": "y" * 33_000}},
    "junk",
    None,
]


def chunk_of(*bodies: tuple[str, dict]) -> bytes:
    return b"".join(request_line(RECEIVED_US, "src_1", "web", kind, orjson.dumps(body)) for kind, body in bodies)


def decode(chunk: bytes, plans: PlanChecker | None = None):
    decoder = RecordDecoder(plans or PlanChecker([]), {"src_1": "web-shop"})
    try:
        return decoder.decode(chunk, Position(3, 100))
    finally:
        decoder.close()


def reference_row(message: dict, index: int, backfill: bool = False) -> dict:
    assert check_message(message, body_small=False) is None
    envelope = {"r": RECEIVED_US, "s": "src_1", "c": "web", "t": SENT_AT, "b": backfill}
    key = message_key(RECEIVED_US, Position(3, 100), index)
    return to_event_row(message, envelope, default_id=generated_message_id(key))


def comparable(row: dict) -> dict:
    """JSON text columns as values: DuckDB and orjson may spell a number differently."""
    return {name: json.loads(value) if name in ("properties", "context", "traits") and value else value
            for name, value in row.items()}


@pytest.mark.parametrize("kind", ["batch", "import"])
def test_bulk_rows_equal_the_reference_python(kind: str) -> None:
    decoded = decode(chunk_of((kind, {"batch": VALID, "sentAt": SENT_AT})))
    got = {row["message_id"]: comparable(row) for row in decoded.events.to_pylist()}
    expected = [comparable(reference_row(m, i, backfill=kind == "import")) for i, m in enumerate(VALID)]
    assert decoded.quarantined == []
    assert got == {row["message_id"]: row for row in expected}


def test_invalid_messages_are_quarantined_with_the_reference_reason_once() -> None:
    chunk = chunk_of(("batch", {"batch": [*INVALID, VALID[0]]}))
    decoded = decode(chunk)
    held = decoded.quarantined
    errors = [(check_message(m, body_small=False), orjson.dumps(m).decode()) for m in INVALID]
    assert sorted((r["reason_code"], r["field"], r["payload"]) for r in held) == sorted(
        (error.code, error.field, payload) for error, payload in errors if error)
    assert len(held) == len(INVALID)
    assert all(r["source_id"] == "src_1" and "Fix:" in r["reason"] for r in held)
    assert decoded.events.column("message_id").to_pylist() == ["m-track"]
    replayed = decode(chunk)  # the same log position gives the same ids: a replay writes no copies
    assert sorted(r["quarantine_id"] for r in replayed.quarantined) == sorted(r["quarantine_id"] for r in held)


def test_one_bad_line_does_not_hold_back_the_others() -> None:
    pretty = json.dumps({"batch": [VALID[2]]}, indent=2).encode()  # line breaks between tokens
    chunk = chunk_of(("batch", {"batch": [VALID[0]]})) + b"not json at all\n"
    chunk += request_line(RECEIVED_US, "src_1", "web", "batch", pretty)
    decoded = decode(chunk)
    assert sorted(decoded.events.column("message_id").to_pylist()) == ["m-naive", "m-track"]
    [held] = decoded.quarantined
    assert held["reason_code"] == "unreadable_log_line" and held["payload"] == "not json at all"


def test_a_retried_message_keeps_its_first_copy() -> None:
    first, retry = dict(VALID[0]), {**VALID[0], "properties": {"retry": True}}
    decoded = decode(chunk_of(("batch", {"batch": [first]}), ("batch", {"batch": [retry, VALID[3]]})))
    rows = {row["message_id"]: row for row in decoded.events.to_pylist()}
    assert set(rows) == {"m-track", "m-alias"}
    assert json.loads(rows["m-track"]["properties"])["revenue"] == 9.5
