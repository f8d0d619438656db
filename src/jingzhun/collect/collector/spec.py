"""The Segment tracking spec: request bodies, message validation and clock skew.

The collector must accept exactly what Segment's and RudderStack's SDKs send, so the
rules here follow Segment's HTTP Tracking API: gzip bodies, 32 KB per message,
500 KB per batch, `messageId` as the idempotency key and the clock-skew
correction `timestamp = receivedAt - (sentAt - originalTimestamp)`.

`check_message` is the reference validation: the request path runs it on single-message
calls (so the caller gets a 400 at once), and the background loader applies the same
rules to batches in bulk (`log_decoder`), falling back to it for anything unusual.
`to_event_row` is the reference mapping to `events` columns.
"""

from __future__ import annotations

import hashlib
import uuid
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
TYPES = ("track", "identify", "page", "screen", "group", "alias")
# Top-level message keys that have their own `events` column (or are envelope);
# every other key the SDK sends is kept in context under `_extra`.
MAPPED = frozenset({
    "type", "messageId", "event", "name", "userId", "anonymousId", "previousId", "groupId",
    "timestamp", "originalTimestamp", "sentAt", "receivedAt", "properties", "context",
    "traits", "writeKey",
})
_TIME_FIELDS = ("timestamp", "originalTimestamp", "sentAt")


@dataclass(frozen=True)
class SpecError(Exception):
    """A request or message that breaks the spec: a code, the field and the fix."""

    code: str
    field: str
    message: str
    fix: str

    def as_json(self) -> dict[str, object]:
        """The body of a 400 response, Segment-like plus our field and fix."""
        return {"success": False, "code": self.code, "field": self.field,
                "message": self.message, "fix": self.fix}


def decode_body(raw: bytes, content_encoding: str | None) -> object:
    """Gunzip (when the SDK says so) and parse a request body; enforce the batch limit."""
    return parse_body(inflate_body(raw, content_encoding))


def inflate_body(raw: bytes, content_encoding: str | None) -> bytes:
    """The body's JSON bytes: gunzipped when the SDK says so, at most 500 KB."""
    if content_encoding and content_encoding.lower().strip() == "gzip":
        try:
            raw = _gunzip_bounded(raw)
        except (OSError, EOFError, zlib.error) as failure:
            raise SpecError("invalid_gzip", "Content-Encoding", f"the body is not valid gzip ({failure}).",
                            "send gzip-compressed bytes or drop the Content-Encoding header") from None
    if len(raw) > MAX_BATCH_BYTES:
        raise SpecError("batch_too_large", "batch",
                        f"the request body is {len(raw)} bytes, over the 500 KB limit.",
                        "send at most 500 KB per request; split the batch") from None
    return raw


def parse_body(raw: bytes) -> object:
    """The parsed JSON body, or the `invalid_json` error."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as failure:
        raise SpecError("invalid_json", "body", f"the body is not valid JSON ({failure}).",
                        "send a JSON object with Content-Type: application/json") from None


def _gunzip_bounded(raw: bytes) -> bytes:
    """Decompress, stopping just past the batch limit so a zip bomb cannot eat memory."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = inflater.decompress(raw, MAX_BATCH_BYTES + 1)
    if len(out) <= MAX_BATCH_BYTES and not inflater.eof:
        raise EOFError("truncated gzip stream")
    return out


def messages_of(body: object, kind: str) -> tuple[list[object], str | None]:
    """The messages of a request and its batch-level sentAt.

    `kind` is the URL's last part: batch/import carry `batch`, the others are one message.
    """
    if not isinstance(body, dict):
        raise SpecError("invalid_body", "body", "the body must be a JSON object.",
                        'send {"batch": [...]} or a single message object')
    sent_at = body.get("sentAt") if isinstance(body.get("sentAt"), str) else None
    if kind not in ("batch", "import"):
        return [{**body, "type": kind}], sent_at  # the path decides the type, as at Segment
    batch = body.get("batch")
    if not isinstance(batch, list):
        raise SpecError("invalid_batch", "batch", "`batch` must be a list of messages.",
                        'send {"batch": [{"type": "track", ...}, ...]}')
    return batch, sent_at


def check_message(message: object, body_small: bool) -> SpecError | None:
    """Why `message` is not acceptable, or None. Cheap: runs on the request path."""
    if not isinstance(message, dict):
        return SpecError("invalid_message", "batch[]", "a message must be a JSON object.",
                         "send each message as an object with a type")
    kind = message.get("type")
    if kind not in TYPES:
        return SpecError("invalid_type", "type", f"unknown message type {kind!r}.",
                         f"use one of {', '.join(TYPES)}")
    if not body_small and len(orjson.dumps(message)) > MAX_MESSAGE_BYTES:
        return SpecError("message_too_large", "message", "the message is over the 32 KB limit.",
                         "send at most 32 KB per message; move large data out of properties")
    return _check_ids(message, kind) or _check_times(message) or _check_objects(message)


def _check_ids(message: dict, kind: str) -> SpecError | None:
    if kind == "alias":
        if not _text(message.get("previousId")) or not _text(message.get("userId")):
            return SpecError("missing_field", "previousId", "an alias needs previousId and userId.",
                             "set previousId (the old id) and userId (the new id)")
    elif not _text(message.get("userId")) and not _text(message.get("anonymousId")):
        return SpecError("missing_field", "userId", "the message has neither userId nor anonymousId.",
                         "set userId or anonymousId")
    if kind == "track" and not _text(message.get("event")):
        return SpecError("missing_field", "event", "a track call needs an event name.",
                         'set event, e.g. "Order Completed"')
    if kind == "group" and not _text(message.get("groupId")):
        return SpecError("missing_field", "groupId", "a group call needs groupId.", "set groupId")
    message_id = message.get("messageId")
    if message_id is not None and not _text(message_id):
        return SpecError("invalid_field", "messageId", "messageId must be a non-empty string.",
                         "send a unique string (a UUID) per message")
    return None


def _check_times(message: dict) -> SpecError | None:
    for name in _TIME_FIELDS:
        value = message.get(name)
        if value is not None and parse_time(value) is None:
            return SpecError("invalid_timestamp", name, f"{name} {value!r} is not an ISO-8601 time.",
                             'send e.g. "2024-05-01T08:30:00.000Z"')
    return None


def _check_objects(message: dict) -> SpecError | None:
    for name in ("properties", "context", "traits"):
        value = message.get(name)
        if value is not None and not isinstance(value, dict):
            return SpecError("invalid_field", name, f"{name} must be a JSON object.",
                             f"send {name} as an object, e.g. {{}}")
    return None


def _text(value: object) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool) and str(value) != ""


def parse_time(value: object) -> datetime | None:
    """An ISO-8601 string as an aware UTC datetime (naive means UTC), or None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def corrected_timestamp(
    received_at: datetime, original: datetime | None, sent_at: datetime | None, backfill: bool
) -> datetime:
    """Event time by Segment's clock-skew rule.

    A device clock may be hours off; the offset between its `sentAt` and our
    `receivedAt` is that error, so subtracting it from the device's own timestamp
    gives the true event time. `/v1/import` (backfill) keeps the timestamp given.

    Example:
        >>> from datetime import datetime, UTC
        >>> r = datetime(2024, 1, 1, 12, tzinfo=UTC)
        >>> corrected_timestamp(r, r.replace(hour=9), r.replace(hour=10), False).hour
        11
    """
    if original is None:
        return received_at
    if backfill or sent_at is None:
        return original
    return received_at - (sent_at - original)


def to_event_row(message: dict, envelope: dict, default_id: str | None = None) -> dict[str, object]:
    """Map one accepted message to an `events` row (JSON columns as text).

    `envelope` is what the request path logged beside the messages: received time
    `r` (epoch microseconds), source `s`, channel `c`, batch `sentAt` `t`, backfill `b`.
    `default_id` is the messageId of a message sent without one (see `generated_message_id`).
    """
    received = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=envelope["r"])
    original = parse_time(message.get("originalTimestamp") or message.get("timestamp"))
    sent_at = parse_time(message.get("sentAt") or envelope.get("t"))
    extra = {key: value for key, value in message.items() if key not in MAPPED}
    context = dict(message.get("context") or {})
    if extra:
        context["_extra"] = extra
    return {
        "message_id": str(message.get("messageId") or default_id or uuid.uuid4()),
        "type": message["type"], "event": _text_or_json(message.get("event")),
        "name": _text_or_json(message.get("name")),
        "user_id": _str_or_none(message.get("userId")),
        "anonymous_id": _str_or_none(message.get("anonymousId")),
        "previous_id": _str_or_none(message.get("previousId")),
        "group_id": _str_or_none(message.get("groupId")),
        "timestamp": corrected_timestamp(received, original, sent_at, bool(envelope.get("b"))),
        "original_timestamp": original, "sent_at": sent_at, "received_at": received,
        "source_id": envelope["s"], "channel": envelope["c"],
        "properties": _json_or_none(message.get("properties")),
        "context": orjson.dumps(context).decode() if context else None,
        "traits": _json_or_none(message.get("traits")),
    }


def generated_message_id(key: str) -> str:
    """A stable messageId for a message sent without one, from where it sits in the log.

    Stable, so replaying the log after a crash finds the copy already loaded; the same
    formula runs in SQL (`md5(key)::UUID`) in the bulk decoder.

    Example:
        >>> generated_message_id("abc")
        '90015098-3cd2-4fb0-d696-3f7d28e17f72'
    """
    return str(uuid.UUID(hashlib.md5(key.encode()).hexdigest()))


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _text_or_json(value: object) -> str | None:
    """A text column's value: strings as they are, anything else as JSON text."""
    return value if value is None or isinstance(value, str) else orjson.dumps(value).decode()


def _json_or_none(value: object) -> str | None:
    return None if value is None else orjson.dumps(value).decode()
