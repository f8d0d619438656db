"""The background loader: durable log → `events` (and `quarantine`), in batches.

It reads whole lines from its checkpoint up to the durable end of the log, maps
them to `events` rows, drops messageIds already stored (within the batch and by
an anti-join against `events`), applies tracking plans, writes everything in one
transaction and only then moves the checkpoint. A crash between the commit and
the checkpoint replays the same lines on restart; the anti-join makes that
harmless, so nothing is loaded twice and nothing acknowledged is skipped.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from jingzhun.collect.collector.durable_log import DurableLog, Position
from jingzhun.collect.collector.spec import to_event_row
from jingzhun.collect.collector.tracking_plan import PlanChecker
from jingzhun.collect.quarantine import quarantine_rows
from jingzhun.engine import Engine

log = logging.getLogger(__name__)
EVENTS = "events"
STAGING = "_collector_batch"
LOADER_NICENESS = 10
_TS = pa.timestamp("us", tz="UTC")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_TIME_COLUMNS = ("timestamp", "original_timestamp", "sent_at", "received_at")
EVENTS_SCHEMA = pa.schema([
    ("message_id", pa.string()), ("type", pa.string()), ("event", pa.string()), ("name", pa.string()),
    ("user_id", pa.string()), ("anonymous_id", pa.string()), ("previous_id", pa.string()),
    ("group_id", pa.string()), ("timestamp", _TS), ("original_timestamp", _TS), ("sent_at", _TS),
    ("received_at", _TS), ("source_id", pa.string()), ("channel", pa.string()),
    ("properties", pa.string()), ("context", pa.string()), ("traits", pa.string()),
])


class Batch:
    """Rows decoded from a run of log lines: events (kept by column, for Arrow) and
    records to set aside."""

    def __init__(self) -> None:
        self.columns: dict[str, list[object]] = {name: [] for name in EVENTS_SCHEMA.names}
        self.quarantined: list[dict[str, object]] = []
        self._appenders = [(name, values.append) for name, values in self.columns.items()]

    def add_event(self, row: dict[str, object]) -> None:
        # Arrow converts aware datetimes at ~13 µs each; integers are ~100x cheaper.
        for name in _TIME_COLUMNS:
            value = row[name]
            if value is not None:
                row[name] = (value - _EPOCH) // _MICROSECOND
        for name, append in self._appenders:
            append(row[name])

    def events(self) -> pa.Table:
        arrays = [pa.array(self.columns[f.name], pa.int64()).cast(f.type) if f.type == _TS
                  else pa.array(self.columns[f.name], f.type) for f in EVENTS_SCHEMA]
        return pa.table(arrays, schema=EVENTS_SCHEMA)


def decode_lines(lines: list[bytes], plans: PlanChecker, names: dict[str, str]) -> Batch:
    """Turn log lines (one per request) into event rows and quarantine rows."""
    batch = Batch()
    for line in lines:
        record = orjson.loads(line)
        source_id = record["s"]
        for rejected in record.get("q", ()):
            batch.quarantined.append({"source_id": source_id, "kind": "collector",
                                      "reason_code": rejected["code"], "reason": rejected["reason"],
                                      "field": rejected["field"], "payload": rejected["payload"]})
        for message in record["m"]:
            _decode_message(message, record, plans, names.get(source_id, ""), batch)
    return batch


def _decode_message(message: dict, record: dict, plans: PlanChecker, name: str, batch: Batch) -> None:
    action, violations = plans.check(message, record["s"], name) if plans.plans else (None, [])
    if action == "quarantine":
        first = violations[0]
        batch.quarantined.append({
            "source_id": record["s"], "kind": "collector", "reason_code": f"tracking_plan.{first['code']}",
            "reason": "; ".join(f"{v['plan']}: {v['reason']}" for v in violations),
            "field": first["field"], "payload": orjson.dumps(message).decode()})
        return
    if violations:
        message = {**message, "context": {**(message.get("context") or {}), "_violations": violations}}
    batch.add_event(to_event_row(message, record))


def unique_new_events(engine: Engine, events: pa.Table) -> pa.Table:
    """The rows whose messageId is neither earlier in the batch nor already in `events`."""
    first: dict[str, int] = {}
    for index, message_id in enumerate(events.column("message_id").to_pylist()):
        first.setdefault(message_id, index)
    if len(first) < events.num_rows:
        events = events.take(pa.array(sorted(first.values()), pa.int64()))
    if not events.num_rows:
        return events
    engine.write_table(STAGING, events.select(["message_id"]), mode="replace")
    stored = engine.query(
        exp.select("b.message_id").from_(exp.to_table(STAGING).as_("b"))
        .join(exp.to_table(EVENTS).as_("e"), on="b.message_id = e.message_id")
    ).column("message_id")
    if not len(stored):
        return events
    return events.filter(pc.invert(pc.is_in(events.column("message_id"), value_set=stored)))


class Loader:
    """Moves the durable log into the engine; the only writer of the engine."""

    def __init__(self, engine: Engine, durable_log: DurableLog, plans: PlanChecker,
                 names: dict[str, str], *, max_bytes: int = 16 * 1024 * 1024) -> None:
        self.engine, self.log, self.plans, self.names = engine, durable_log, plans, names
        self.max_bytes = max_bytes
        self.position = durable_log.load_checkpoint()
        self.loaded_events = 0

    def load_once(self) -> int:
        """Load one batch of lines; return how many lines were consumed (0: caught up)."""
        lines, end = self.log.read(self.position, self.max_bytes)
        if not lines:
            self._advance(end)
            return 0
        batch = decode_lines(lines, self.plans, self.names)
        with self.engine.transaction():
            decoded = batch.events()
            fresh = unique_new_events(self.engine, decoded)
            if fresh.num_rows:
                loaded_at = pa.repeat(pa.scalar(datetime.now(UTC), _TS), fresh.num_rows)
                self.engine.write_table(EVENTS, fresh.append_column("loaded_at", loaded_at))
            if batch.quarantined:
                quarantine_rows(self.engine, pa.Table.from_pylist(batch.quarantined))
        self._advance(end)
        self.loaded_events += fresh.num_rows
        log.debug("loaded %d events (%d duplicates skipped) up to %s",
                  fresh.num_rows, decoded.num_rows - fresh.num_rows, end)
        return len(lines)

    def _advance(self, end: Position) -> None:
        if end != self.position:
            self.log.save_checkpoint(end)
            self.position = end

    def run(self, stop: Event, interval: float, loaded: Synchronized | None = None) -> None:
        """Load until `stop` is set, then drain what is on disk so a clean stop leaves no backlog."""
        while not stop.is_set():
            if not self._step(stop):
                stop.wait(interval)
            if loaded is not None:
                loaded.value = self.loaded_events
        while self._step(stop):
            pass
        if loaded is not None:
            loaded.value = self.loaded_events

    def _step(self, stop: Event) -> int:
        try:
            return self.load_once()
        except Exception:  # keep going; the log keeps the data until a retry works
            log.exception("collector loader failed; will retry from %s", self.position)
            stop.wait(1.0)
            return 0


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the server dies (even by kill -9), so an
    orphaned loader never keeps the DuckDB file locked against the restarted server."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent-watch in run_loader_process covers it
        pass


def run_loader_process(root: str, engine_kind: str | None, names: dict[str, str], stop: Event,
                       loaded: Synchronized, interval: float) -> None:
    """Entry point of the loader process: it, not the HTTP process, owns the engine."""
    from jingzhun.collect.collector.tracking_plan import load_tracking_plans
    from jingzhun.core.workspace import open_workspace
    from jingzhun.engine import open_engine

    _die_with_parent()
    # Acknowledging requests is latency-critical and loading is not (the log buffers it):
    # on a small machine the HTTP process must win the CPU when both want it.
    os.nice(LOADER_NICENESS)
    parent = os.getppid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the server stops us through `stop`, after draining
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    workspace = open_workspace(root)
    plans = PlanChecker(load_tracking_plans(workspace.definitions_dir))
    watcher = threading.Thread(target=_watch_parent, args=(parent, stop), daemon=True)
    watcher.start()
    with open_engine(workspace, engine_kind) as engine:
        Loader(engine, DurableLog(workspace.log_dir, writer=False), plans, names).run(stop, interval, loaded)


def _watch_parent(parent: int, stop: Event) -> None:
    while not stop.is_set():
        if os.getppid() != parent:
            os._exit(1)  # the server is gone: stop at once; the log and checkpoint are consistent
        time.sleep(0.5)
