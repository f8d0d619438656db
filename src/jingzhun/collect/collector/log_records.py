"""A logged request: how the HTTP process writes it and how the loader decodes it in bulk.

The request path must stay cheap, so it logs the body it received (decompressed, and
already checked to be JSON) behind a small header instead of re-serializing every
message: one line per request,

    {"r": <received, epoch µs>, "s": "<source_id>", "c": "<channel>", "k": "<endpoint>", "body": <the body>}

The loader turns a run of such lines into `events` rows in bulk, with DuckDB's JSON
functions in an in-memory database (a parsing tool here, not the warehouse, so this
works whatever engine the workspace uses). Messages on the well-trodden path (ISO-8601
times, ids as strings, objects where objects belong) are validated and mapped in SQL
by rules that accept a subset of what `spec.check_message` accepts; anything else —
an invalid message, an odd timestamp format, a line DuckDB cannot read — goes through
the reference Python (`check_message`, `to_event_row`), so the outcome is the same as
if every message had been checked in Python. Invalid messages are quarantined with
Segment's error, under an id derived from their place in the log so that a replay
after a crash does not quarantine them twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb
import orjson
import pyarrow as pa
from sqlglot import exp

from jingzhun.collect.collector.durable_log import Position
from jingzhun.collect.collector.spec import (
    MAPPED,
    TYPES,
    SpecError,
    check_message,
    generated_message_id,
    to_event_row,
)
from jingzhun.collect.collector.tracking_plan import PlanChecker

_TS = pa.timestamp("us", tz="UTC")
_TIME_COLUMNS = ("timestamp", "original_timestamp", "sent_at", "received_at")
EVENTS_SCHEMA = pa.schema([
    ("message_id", pa.string()), ("type", pa.string()), ("event", pa.string()), ("name", pa.string()),
    ("user_id", pa.string()), ("anonymous_id", pa.string()), ("previous_id", pa.string()),
    ("group_id", pa.string()), ("timestamp", _TS), ("original_timestamp", _TS), ("sent_at", _TS),
    ("received_at", _TS), ("source_id", pa.string()), ("channel", pa.string()),
    ("properties", pa.string()), ("context", pa.string()), ("traits", pa.string()),
])
# The SQL path hands times over as epoch microseconds (cast to timestamps in Arrow).
_ROWS_SCHEMA = pa.schema([pa.field(f.name, pa.int64() if f.type == _TS else f.type) for f in EVENTS_SCHEMA]
                         + [pa.field("seq", pa.int64())])
_BATCH_KINDS = ("batch", "import")
_UNREADABLE = SpecError("unreadable_log_line", "body", "a collector log line could not be read.",
                        "check the payload; fix it and retry from quarantine")
_SEQ_BITS = 20  # messages per request < 2**20: a 500 KB body holds at most ~170k messages


def request_line(received_us: int, source_id: str, channel: str, kind: str, body: bytes) -> bytes:
    """The log line for one request; `body` must be valid JSON (it is embedded as is).

    JSON allows a raw line break only as whitespace between tokens, so turning CR/LF
    into spaces keeps the body's meaning and makes it one line.
    """
    if b"\n" in body or b"\r" in body:
        body = body.replace(b"\r", b" ").replace(b"\n", b" ")
    header = orjson.dumps({"r": received_us, "s": source_id, "c": channel, "k": kind})
    return b"".join((header[:-1], b',"body":', body, b"}\n"))


def message_key(received_us: int, at: Position, index: int) -> str:
    """Where a message sits in the log (with its receive time, in case the log is wiped)."""
    return f"{received_us}:{at.segment}:{at.offset}:{index}"


@dataclass
class Decoded:
    """What a run of log lines holds: unique `events` rows and rows to quarantine."""

    events: pa.Table
    quarantined: list[dict[str, object]] = field(default_factory=list)
    messages: int = 0


class RecordDecoder:
    """Decodes log lines to rows: SQL for the common case, Python for everything else."""

    def __init__(self, plans: PlanChecker, names: dict[str, str], *, threads: int = 1) -> None:
        self.plans, self.names = plans, names
        self.db = duckdb.connect(":memory:", config={"threads": threads})
        self.db.execute("SET TimeZone = 'UTC'")  # a time without a zone means UTC, as in spec.parse_time

    def close(self) -> None:
        self.db.close()

    def decode(self, chunk: bytes, start: Position) -> Decoded:
        """Decode the whole lines in `chunk`, which begins at `start` in the log."""
        lines = _lines_table(chunk, start)
        self.db.register("log_lines", lines)
        try:
            odd_lines = self._split_into_messages(lines)
            slow = _SlowPath(self, chunk, lines)
            for n in odd_lines:
                slow.whole_line(n)
            for n, i, text in self._rows("SELECT n, i, m FROM decoded WHERE NOT fast"):
                slow.message(n, i, text)
            for n, i, source_id, text in self._planned_rows():
                slow.planned(n, i, source_id, orjson.loads(text))
            events = self._unique_events(slow)
            messages = self._rows("SELECT count(*) FROM decoded")[0][0] + slow.messages_of_odd_lines
            return Decoded(events, slow.quarantined, messages)
        finally:
            self.db.unregister("log_lines")

    def _split_into_messages(self, lines: pa.Table) -> list[int]:
        """Fill `decoded` with one row per message; return the lines SQL cannot read."""
        # A line DuckDB cannot read fails the statements: then take the valid lines only,
        # and failing that none (the Python path reads them all). The log never jams.
        for lines_sql in ("log_lines", "log_lines WHERE json_valid(line)", "log_lines WHERE false"):
            try:
                self.db.execute(f"CREATE OR REPLACE TEMP TABLE requests AS SELECT n, seg, off, "
                                f"from_json(line, '{_HEADER_SHAPE}') AS h FROM {lines_sql}")
                for statement in (_MESSAGES_SQL, _FIELDS_SQL, _DECODED_SQL):
                    self.db.execute(statement)
                break
            except duckdb.Error:
                continue
        readable = {n for (n,) in self._rows("SELECT n FROM requests WHERE h.body.batch IS NOT NULL")}
        return [n for n in range(lines.num_rows) if n not in readable]

    def _planned_rows(self) -> list[tuple]:
        """Fast-path track messages from sources a tracking plan covers (checked in Python)."""
        if not self.plans.plans:
            return []
        sources = [s for (s,) in self._rows("SELECT DISTINCT s FROM decoded WHERE fast AND type = 'track'")]
        covered = [s for s in sources if any(p.applies_to(s, self.names.get(s, "")) for p in self.plans.plans)]
        if not covered:
            return []
        query = (exp.select("n", "i", "s", "m").from_("decoded")
                 .where("fast AND type = 'track'").where(exp.column("s").isin(*covered)))
        return self._rows(query.sql("duckdb"))

    def _unique_events(self, slow: _SlowPath) -> pa.Table:
        """SQL rows (minus those the slow path replaced) and slow-path rows, first copy of each messageId."""
        self.db.register("slow_rows", slow.rows())
        self.db.register("dropped", pa.table({"seq": pa.array(slow.dropped, pa.int64())}))
        try:
            rows = self.db.sql(_UNIQUE_SQL).to_arrow_table()
        finally:
            self.db.unregister("slow_rows")
            self.db.unregister("dropped")
        return pa.table([rows.column(f.name).cast(f.type) for f in EVENTS_SCHEMA], schema=EVENTS_SCHEMA)

    def _rows(self, sql: str) -> list[tuple]:
        return self.db.sql(sql).fetchall()


def _lines_table(chunk: bytes, start: Position) -> pa.Table:
    """The chunk's lines as an Arrow string column (no copy: offsets into the chunk)."""
    ends, at = [], chunk.find(b"\n")
    while at != -1:
        ends.append(at + 1)
        at = chunk.find(b"\n", at + 1)
    starts = [0, *ends[:-1]]
    offsets = pa.array([0, *ends], pa.int32())
    text = pa.StringArray.from_buffers(len(ends), offsets.buffers()[1], pa.py_buffer(chunk))
    return pa.table({"n": pa.array(range(len(ends)), pa.int64()),
                     "seg": pa.array([start.segment] * len(ends), pa.int64()),
                     "off": pa.array([start.offset + s for s in starts], pa.int64()), "line": text})


class _SlowPath:
    """The reference Python for the messages and lines the SQL path leaves out."""

    def __init__(self, decoder: RecordDecoder, chunk: bytes, lines: pa.Table) -> None:
        self.plans, self.names = decoder.plans, decoder.names
        self.chunk, self.offsets = chunk, lines.column("off").to_pylist()
        self.base = self.offsets[0] if self.offsets else 0
        self.segment = lines.column("seg")[0].as_py() if lines.num_rows else 0
        self.quarantined: list[dict[str, object]] = []
        self.dropped: list[int] = []
        self.messages_of_odd_lines = 0
        self._rows: list[dict[str, object]] = []
        self._records: dict[int, dict | None] = {}

    def record(self, n: int) -> dict | None:
        """Line `n` parsed by orjson (None if it is not JSON), parsed once."""
        if n not in self._records:
            begin = self.offsets[n] - self.base
            end = self.offsets[n + 1] - self.base if n + 1 < len(self.offsets) else len(self.chunk)
            try:
                self._records[n] = orjson.loads(self.chunk[begin:end])
            except orjson.JSONDecodeError:
                self._records[n] = None
        return self._records[n]

    def whole_line(self, n: int) -> None:
        """A line the SQL path cannot read: decode it message by message, or set it aside."""
        record = self.record(n)
        if not isinstance(record, dict) or not isinstance(record.get("r"), int):
            raw = self.chunk[self.offsets[n] - self.base:][:1 << 20].split(b"\n", 1)[0]
            self._quarantine(n, -1, record.get("s") if isinstance(record, dict) else None,
                             _UNREADABLE,
                             raw.decode("utf-8", "replace"))
            return
        for i, message in enumerate(self._messages(record)):
            self.messages_of_odd_lines += 1
            self._accept_or_quarantine(n, i, record, message)
        for i, rejected in enumerate(record.get("q", ())):  # lines logged before the bulk decoder
            self.quarantined.append(self._quarantine_row(
                f"legacy:{message_key(record['r'], self._at(n), i)}", record.get("s"), rejected["code"],
                rejected["reason"], rejected["field"], rejected["payload"]))

    def message(self, n: int, i: int, text: str) -> None:
        """A message the SQL rules did not accept: decide with `check_message`.

        The message is taken from the line as orjson reads it (as the request path did);
        `text` is DuckDB's reading, used only if orjson cannot read the line.
        """
        record = self.record(n)
        if not isinstance(record, dict):
            self._quarantine(n, i, None, _UNREADABLE, text)
            return
        self._accept_or_quarantine(n, i, record, self._messages(record)[i])

    def planned(self, n: int, i: int, source_id: str, message: dict) -> None:
        """A fast-path message a tracking plan covers: keep the SQL row unless the plan objects."""
        action, _ = self.plans.check(message, source_id, self.names.get(source_id, ""))
        if action is not None:
            self.dropped.append(n << _SEQ_BITS | i)
            record = self.record(n)
            self._accept_or_quarantine(n, i, record, self._messages(record)[i])

    def _accept_or_quarantine(self, n: int, i: int, record: dict, message: object) -> None:
        source_id = record.get("s")
        error = check_message(message, body_small=False)
        if error is not None:
            self._quarantine(n, i, source_id, error, orjson.dumps(message).decode())
            return
        action, violations = self.plans.check(message, source_id, self.names.get(source_id, ""))
        if action == "quarantine":
            first = violations[0]
            reason = "; ".join(f"{v['plan']}: {v['reason']}" for v in violations)
            self.quarantined.append(self._quarantine_row(
                message_key(record["r"], self._at(n), i), source_id, f"tracking_plan.{first['code']}",
                reason, first["field"], orjson.dumps(message).decode()))
            return
        if violations:
            message = {**message, "context": {**(message.get("context") or {}), "_violations": violations}}
        self._event(n, i, record, message)

    def _event(self, n: int, i: int, record: dict, message: dict) -> None:
        key = message_key(record["r"], self._at(n), i)
        try:
            row = to_event_row(message, _envelope(record), default_id=generated_message_id(key))
        except (OverflowError, ValueError):  # a corrected time outside years 1–9999
            self._quarantine(n, i, record.get("s"), SpecError(
                "invalid_timestamp", "timestamp", "the event time is out of range after clock-skew correction.",
                "send timestamp and sentAt from the same clock"), orjson.dumps(message).decode())
            return
        for name in _TIME_COLUMNS:
            value = row[name]
            row[name] = None if value is None else (value - _EPOCH) // _MICROSECOND
        row["seq"] = n << _SEQ_BITS | i
        self._rows.append(row)

    def _quarantine(self, n: int, i: int, source_id: object, error: SpecError, payload: str) -> None:
        record = self.record(n)
        received = record.get("r") if isinstance(record, dict) else 0
        self.quarantined.append(self._quarantine_row(
            message_key(received if isinstance(received, int) else 0, self._at(n), i), source_id,
            error.code, f"{error.message} Fix: {error.fix}", error.field, payload))

    @staticmethod
    def _quarantine_row(key: str, source_id: object, code: str, reason: str, field_name: str,
                        payload: str) -> dict[str, object]:
        return {"quarantine_id": f"collector:{key}", "source_id": source_id if isinstance(source_id, str) else None,
                "kind": "collector", "reason_code": code, "reason": reason, "field": field_name,
                "payload": payload}

    def _at(self, n: int) -> Position:
        return Position(self.segment, self.offsets[n])

    @staticmethod
    def _messages(record: dict) -> list:
        if "body" not in record:
            return record.get("m", [])
        batch = record["body"].get("batch") if isinstance(record["body"], dict) else None
        return batch if isinstance(batch, list) else []

    def rows(self) -> pa.Table:
        columns = {name: [row[name] for row in self._rows] for name in _ROWS_SCHEMA.names}
        return pa.table(columns, schema=_ROWS_SCHEMA)


def _envelope(record: dict) -> dict[str, object]:
    """The fields `to_event_row` reads beside a message, for either line format."""
    if "body" not in record:  # a line logged before the bulk decoder
        return record
    body = record["body"]
    sent_at = body.get("sentAt") if isinstance(body, dict) else None
    return {"r": record["r"], "s": record["s"], "c": record["c"],
            "t": sent_at if isinstance(sent_at, str) else None, "b": record.get("k") == "import"}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH


# ---- SQL ------------------------------------------------------------------------------
# DuckDB hands back each field as minified JSON text, so its first character tells the
# JSON type without parsing it again ('"' string, '{' object, ...).
_FIELDS = ("type", "messageId", "event", "name", "userId", "anonymousId", "previousId", "groupId",
           "timestamp", "originalTimestamp", "sentAt", "properties", "context", "traits")
_SCALARS = _FIELDS[:11]
_HEADER_SHAPE = '{"r":"BIGINT","s":"VARCHAR","c":"VARCHAR","k":"VARCHAR","body":{"batch":["JSON"],"sentAt":"JSON"}}'
_MESSAGE_SHAPE = orjson.dumps(dict.fromkeys(_FIELDS, "JSON")).decode()
_NOT_MAPPED = orjson.dumps(dict.fromkeys(sorted(MAPPED))).decode()  # a merge patch deleting mapped keys
# ISO-8601 as the SDKs send it; DuckDB and Python read these the same way.
_ISO_TIME = (r"[1-9]\d{3}-\d{2}-\d{2}[T ]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?"
             r"(Z|[+-]([01]\d|2[0-3]):[0-5]\d)?")
_INTEGER = r"0|-?[1-9]\d*"
_MIN_US, _MAX_US = -62135596800000000, 253402300799999999  # years 1 to 9999
_MAX_FAST_BYTES = 30_000  # below 32 KB with room for serialization differences; above: Python decides

_MESSAGES_SQL = """
CREATE OR REPLACE TEMP TABLE messages AS
SELECT n, seg, off, h.r AS r, h.s AS s, h.c AS c, h.k = 'import' AS backfill,
       CASE WHEN left(h.body.sentAt, 1) = '"' THEN h.body.sentAt ->> '$' END AS batch_sent_at,
       unnest(range(len(h.body.batch))) AS i, unnest(h.body.batch) AS m
FROM requests WHERE h.body.batch IS NOT NULL
"""


def _j(name: str) -> str:
    return f'"j_{name}"'


def _v(name: str) -> str:
    return f'"v_{name}"'


_FIELDS_SQL = f"""
CREATE OR REPLACE TEMP TABLE fields AS
WITH parsed AS MATERIALIZED (
  SELECT *, from_json(m, '{_MESSAGE_SHAPE}') AS x,
         json_merge_patch(m, '{_NOT_MAPPED}')::VARCHAR AS extra
  FROM messages
)
SELECT n, seg, off, r, s, c, backfill, batch_sent_at, i, m, extra,
       {", ".join(f'x."{name}" AS {_j(name)}' for name in _FIELDS)},
       {", ".join(f'x."{name}" ->> {chr(39)}${chr(39)} AS {_v(name)}' for name in _SCALARS)}
FROM parsed
"""


def _absent(name: str) -> str:
    return f"{_j(name)} IS NULL"


def _is_string(name: str) -> str:
    return f"left({_j(name)}, 1) = '\"'"


def _is_integer(name: str) -> str:
    return f"regexp_full_match({_j(name)}, '{_INTEGER}')"


def _is_object(name: str) -> str:
    return f"left({_j(name)}, 1) = '{{'"


def _text(name: str) -> str:
    """spec._text: a non-empty string or an integer."""
    return f"({_is_integer(name)} OR ({_is_string(name)} AND {_v(name)} <> ''))"


def _time_us(value: str) -> str:
    return f"epoch_us(TRY_CAST({value} AS TIMESTAMPTZ))"


def _iso_time(value: str) -> str:
    return f"(regexp_full_match({value}, '{_ISO_TIME}') AND {_time_us(value)} IS NOT NULL)"


def _fast_sql() -> str:
    """The SQL twin of `check_message`, narrowed to messages the SQL mapping handles exactly."""
    ids = ("userId", "anonymousId", "previousId", "groupId")
    rules = [
        "left(m, 1) = '{'", f"v_type IN {TYPES}", f"strlen(m::VARCHAR) <= {_MAX_FAST_BYTES}",
        *(f"({_absent(name)} OR {_is_string(name)} OR {_is_integer(name)})" for name in ids),
        f"({_absent('messageId')} OR ({_is_string('messageId')} AND {_v('messageId')} <> ''))",
        *(f"({_absent(name)} OR {_is_string(name)})" for name in ("event", "name")),
        *(f"({_absent(name)} OR ({_is_string(name)} AND {_iso_time(_v(name))}))"
          for name in ("timestamp", "originalTimestamp", "sentAt")),
        f"(batch_sent_at IS NULL OR {_iso_time('batch_sent_at')})",
        *(f"({_absent(name)} OR {_is_object(name)})" for name in ("properties", "context", "traits")),
        "(extra = '{}' OR NOT contains(ctx, '\"_extra\"'))",
        f"CASE v_type WHEN 'alias' THEN {_text('previousId')} AND {_text('userId')} "
        f"ELSE {_text('userId')} OR {_text('anonymousId')} END",
        f"(v_type <> 'track' OR {_text('event')})", f"(v_type <> 'group' OR {_text('groupId')})",
        f"corrected BETWEEN {_MIN_US} AND {_MAX_US}",
    ]
    return " AND ".join(rules)


def _json_column(name: str) -> str:
    return f"{_j(name)}::VARCHAR"


_DECODED_SQL = f"""
CREATE OR REPLACE TEMP TABLE decoded AS
WITH timed AS (
  SELECT *, {_time_us(f"coalesce({_v('originalTimestamp')}, {_v('timestamp')})")} AS original,
         {_time_us(f"coalesce({_v('sentAt')}, batch_sent_at)")} AS sent,
         coalesce({_j('context')}::VARCHAR, '{{}}') AS ctx
  FROM fields
), corrected AS (
  SELECT *, CASE WHEN original IS NULL THEN r WHEN backfill OR sent IS NULL THEN original
                 ELSE r - (sent - original) END AS corrected
  FROM timed
)
SELECT n, i, n << {_SEQ_BITS} | i AS seq, s, m, coalesce({_fast_sql()}, false) AS fast,
  CASE WHEN {_absent('messageId')}
       THEN md5(r::VARCHAR || ':' || seg::VARCHAR || ':' || off::VARCHAR || ':' || i::VARCHAR)::UUID::VARCHAR
       ELSE {_v('messageId')} END AS message_id,
  v_type AS type, {_v('event')} AS event, {_v('name')} AS name,
  {_v('userId')} AS user_id, {_v('anonymousId')} AS anonymous_id,
  {_v('previousId')} AS previous_id, {_v('groupId')} AS group_id,
  corrected AS timestamp, original AS original_timestamp, sent AS sent_at, r AS received_at,
  s AS source_id, c AS channel, {_json_column('properties')} AS properties,
  CASE WHEN extra = '{{}}' THEN nullif(ctx, '{{}}')
       WHEN ctx = '{{}}' THEN '{{"_extra":' || extra || '}}'
       ELSE left(ctx, -1) || ',"_extra":' || extra || '}}' END AS context,
  {_json_column('traits')} AS traits
FROM corrected
"""
_EVENT_COLUMNS = ", ".join(f'"{name}"' for name in _ROWS_SCHEMA.names)
_UNIQUE_SQL = f"""
SELECT {_EVENT_COLUMNS} FROM (
  SELECT {_EVENT_COLUMNS} FROM decoded WHERE fast AND seq NOT IN (SELECT seq FROM dropped)
  UNION ALL
  SELECT {_EVENT_COLUMNS} FROM slow_rows
)
QUALIFY row_number() OVER (PARTITION BY message_id ORDER BY seq) = 1
"""
