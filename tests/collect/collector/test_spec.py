"""Segment spec: bodies, gzip, size limits, validation and the clock-skew rule."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from jingzhun.collect.collector.spec import (
    MAX_BATCH_BYTES,
    SpecError,
    check_message,
    corrected_timestamp,
    decode_body,
    messages_of,
    parse_time,
    to_event_row,
)

R = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_gzip_body_is_decoded() -> None:
    body = {"batch": [{"type": "track"}]}
    assert decode_body(gzip.compress(orjson.dumps(body)), "gzip") == body


@pytest.mark.parametrize(("raw", "encoding", "code"), [
    (b"not gzip", "gzip", "invalid_gzip"),
    (gzip.compress(b"x")[:-6], "gzip", "invalid_gzip"),
    (b"{oops", None, "invalid_json"),
    (b" " * (MAX_BATCH_BYTES + 1), None, "batch_too_large"),
    (gzip.compress(b" " * (MAX_BATCH_BYTES * 50)), "gzip", "batch_too_large"),
])
def test_bad_bodies_name_the_problem(raw: bytes, encoding: str | None, code: str) -> None:
    with pytest.raises(SpecError) as caught:
        decode_body(raw, encoding)
    assert caught.value.code == code
    assert caught.value.fix


def test_single_call_takes_type_from_the_path_and_batch_sent_at() -> None:
    messages, sent_at = messages_of({"userId": "u", "sentAt": "2024-01-01T00:00:00Z"}, "identify")
    assert messages[0]["type"] == "identify" and sent_at == "2024-01-01T00:00:00Z"
    with pytest.raises(SpecError, match="batch"):
        messages_of({"batch": {}}, "batch")


@pytest.mark.parametrize(("message", "field"), [
    ({"type": "track", "userId": "u"}, "event"),
    ({"type": "track", "event": "E"}, "userId"),
    ({"type": "alias", "userId": "u"}, "previousId"),
    ({"type": "group", "userId": "u"}, "groupId"),
    ({"type": "click", "userId": "u"}, "type"),
    ({"type": "track", "userId": "u", "event": "E", "timestamp": "yesterday"}, "timestamp"),
    ({"type": "track", "userId": "u", "event": "E", "properties": [1]}, "properties"),
    ({"type": "track", "userId": "u", "event": "E", "messageId": ""}, "messageId"),
    ({"type": "track", "userId": "u", "event": "E", "properties": {"x": "y" * 33_000}}, "message"),
])
def test_invalid_messages_name_the_field(message: dict, field: str) -> None:
    error = check_message(message, body_small=False)
    assert error is not None and error.field == field


def test_valid_message_passes() -> None:
    message = {"type": "page", "anonymousId": "a", "name": "Home", "timestamp": "2024-05-01T08:00:00+08:00"}
    assert check_message(message, body_small=True) is None


def test_parse_time_normalizes_to_utc() -> None:
    assert parse_time("2024-05-01T08:00:00+08:00") == datetime(2024, 5, 1, 0, tzinfo=UTC)
    assert parse_time("2024-05-01T00:00:00Z") == datetime(2024, 5, 1, 0, tzinfo=UTC)
    assert parse_time("2024-05-01T00:00:00") == datetime(2024, 5, 1, 0, tzinfo=UTC)
    assert parse_time(17) is None


@pytest.mark.parametrize(("original", "sent", "backfill", "expected"), [
    # device clock 3 h slow: sentAt 3 h before receivedAt, so the event was 1 h before receipt
    (R - timedelta(hours=4), R - timedelta(hours=3), False, R - timedelta(hours=1)),
    (R - timedelta(days=800), R, True, R - timedelta(days=800)),  # /v1/import keeps history
    (R - timedelta(minutes=5), None, False, R - timedelta(minutes=5)),  # no sentAt: trust it
    (None, R, False, R),  # no timestamp: the receive time
])
def test_clock_skew_rule(original, sent, backfill, expected) -> None:
    assert corrected_timestamp(R, original, sent, backfill) == expected


def test_event_row_maps_every_field() -> None:
    message = {"type": "track", "event": "E", "userId": 7, "anonymousId": "a", "messageId": "m",
               "timestamp": "2024-05-01T11:00:00Z", "properties": {"p": 1},
               "context": {"ip": "1.2.3.4"}, "integrations": {"All": True}, "version": 2}
    envelope = {"r": int(R.timestamp() * 1_000_000), "s": "src", "c": "web",
                "t": "2024-05-01T11:00:30Z", "b": False}
    row = to_event_row(message, envelope)
    assert row["user_id"] == "7" and row["channel"] == "web" and row["source_id"] == "src"
    assert row["timestamp"] == R - timedelta(seconds=30)
    assert row["received_at"] == R
    context = orjson.loads(row["context"])
    assert context["ip"] == "1.2.3.4"
    assert context["_extra"] == {"integrations": {"All": True}, "version": 2}
