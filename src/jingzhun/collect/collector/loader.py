"""The background loader: durable log → `events` (and `quarantine`), in batches.

It reads whole lines from its checkpoint up to the durable end of the log, decodes
them in bulk (`log_records`: validation, tracking plans, mapping to rows), drops
messageIds already stored (within the batch and by an anti-join against `events`)
and quarantine rows already written (their ids come from their place in the log),
writes everything in one transaction and only then moves the checkpoint. A crash
between the commit and the checkpoint replays the same lines on restart; the
anti-joins make that harmless, so nothing is loaded twice and nothing acknowledged
is skipped.

The loader shares a small machine with the HTTP process, whose acknowledgements are
latency-critical while loading is not (the log buffers it): it runs at a low CPU
priority and, under load, waits for a few megabytes of log before it starts a batch,
so its fixed costs per batch (the anti-join scans `events`) are paid rarely.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from jingzhun.collect.collector.durable_log import DurableLog, Position
from jingzhun.collect.collector.hooks import STATE_FILE, HookRunner
from jingzhun.collect.collector.log_records import Decoded, RecordDecoder
from jingzhun.collect.collector.tracking_plan import PlanChecker
from jingzhun.engine import Engine

log = logging.getLogger(__name__)
EVENTS = "events"
QUARANTINE = "quarantine"
STAGING = "_collector_batch"
LOADER_NICENESS = 10
DEDUPE_WINDOW = timedelta(days=7)
_TS = pa.timestamp("us", tz="UTC")
_QUARANTINE = pa.schema([(name, pa.string()) for name in (
    "quarantine_id", "source_id", "kind", "reason_code", "reason", "field", "payload", "status")]
    + [("received_at", _TS)])


def unique_new_events(engine: Engine, events: pa.Table) -> pa.Table:
    """The rows whose messageId is not already in `events` (ids are unique within `events`).

    The batch's ids go to a staging table for the anti-join, dropped again in the same
    transaction (on DuckDB it never reaches the file). Only events received within
    DEDUPE_WINDOW before the batch are compared: SDK retries and log replays come
    within minutes, `events` is appended in arrival order so the engine skips older
    row groups by their min/max, and the join stays as cheap at 100M events as at 1M
    (at 10M: 19 ms instead of 180 ms per batch). Segment promises dedupe over about
    24 hours; the window is seven days.
    """
    if not events.num_rows:
        return events
    engine.write_table(STAGING, events.select(["message_id"]), mode="replace")
    since = pc.min(events.column("received_at")).as_py() - DEDUPE_WINDOW
    try:
        stored = engine.query(
            exp.select("b.message_id").from_(exp.to_table(STAGING).as_("b"))
            .join(exp.to_table(EVENTS).as_("e"), on="b.message_id = e.message_id")
            .where(exp.column("received_at", "e") >= exp.cast(exp.Literal.string(since.isoformat()),
                                                               exp.DataType.build("TIMESTAMPTZ")))
        ).column("message_id")
    finally:
        engine.drop_table(STAGING)
    if not len(stored):
        return events
    return events.filter(pc.invert(pc.is_in(events.column("message_id"), value_set=stored)))


def new_quarantine_rows(engine: Engine, rows: list[dict[str, object]]) -> pa.Table:
    """Quarantine rows not written before (a replay after a crash rewrites none)."""
    ids = [str(row["quarantine_id"]) for row in rows]
    seen: set[str] = set()
    for begin in range(0, len(ids), 1000):  # bounded IN lists
        query = (exp.select("quarantine_id").from_(QUARANTINE)
                 .where(exp.column("quarantine_id").isin(*ids[begin:begin + 1000])))
        seen.update(engine.query(query).column("quarantine_id").to_pylist())
    now = datetime.now(UTC)
    return pa.Table.from_pylist([{**row, "received_at": now, "status": "open"}
                                 for row in rows if row["quarantine_id"] not in seen], schema=_QUARANTINE)


class Loader:
    """Moves the durable log into the engine; the only writer of the engine."""

    def __init__(self, engine: Engine, durable_log: DurableLog, plans: PlanChecker,
                 names: dict[str, str], *, max_bytes: int = 32 * 1024 * 1024,
                 min_bytes: int = 0, max_wait: float = 1.0, hooks: HookRunner | None = None) -> None:
        self.engine, self.log, self.hooks = engine, durable_log, hooks
        self.decoder = RecordDecoder(plans, names, threads=2)
        self.max_bytes, self.min_bytes, self.max_wait = max_bytes, min_bytes, max_wait
        self.position = durable_log.load_checkpoint()
        self.loaded_events = 0
        self._waiting_since: float | None = None

    def load_once(self) -> int:
        """Load one batch of lines; return how many lines were consumed (0: caught up)."""
        chunk, start, end = self.log.read_chunk(self.position, self.max_bytes)
        if not chunk:
            self._advance(end)
            return 0
        decoded = self.decoder.decode(chunk, start)
        loaded_at = datetime.now(UTC)
        with self.engine.transaction():
            fresh = unique_new_events(self.engine, decoded.events)
            fresh = fresh.append_column("loaded_at", pa.repeat(pa.scalar(loaded_at, _TS), fresh.num_rows))
            if fresh.num_rows:
                self.engine.write_table(EVENTS, fresh)
            held = new_quarantine_rows(self.engine, decoded.quarantined) if decoded.quarantined else None
            if held is not None and held.num_rows:
                self.engine.write_table(QUARANTINE, held)
        self._advance(end)
        self.loaded_events += fresh.num_rows
        _log_batch(decoded, fresh, end)
        if self.hooks is not None and fresh.num_rows:
            self.hooks.after_batch(loaded_at, fresh)  # after the commit and the checkpoint: never loses events
        return chunk.count(b"\n")

    def worth_loading(self, draining: bool) -> bool:
        """Load now, or let the backlog grow into a bigger batch (fewer scans of `events`)?"""
        if draining or self.min_bytes <= 0:
            return True
        backlog = self.log.backlog_bytes(self.position)
        if backlog >= self.min_bytes:
            self._waiting_since = None
            return True
        if backlog == 0:
            self._waiting_since = None
            return False
        self._waiting_since = self._waiting_since or time.monotonic()
        return time.monotonic() - self._waiting_since >= self.max_wait

    def _advance(self, end: Position) -> None:
        if end != self.position:
            self.log.save_checkpoint(end)
            self.position = end
        self._waiting_since = None

    def run(self, stop: Connection, interval: float, loaded: Synchronized | None = None) -> None:
        """Load until told to stop, then drain what is on disk so a clean stop leaves no backlog.

        `stop` is the loader's end of a pipe: a message or the server's death (end of file)
        means stop.
        """
        while not stop.poll(0):
            if not (self.worth_loading(draining=False) and self._step(stop)):
                if self.hooks is not None:
                    self.guarded(self.hooks.catch_up)
                stop.poll(interval)
            if loaded is not None:
                loaded.value = self.loaded_events
        while self._step(stop):
            pass
        if self.hooks is not None:
            self.guarded(self.hooks.catch_up)  # if not imported yet, the next start replays the batches
        if loaded is not None:
            loaded.value = self.loaded_events
        self.decoder.close()

    def _step(self, stop: Connection) -> int:
        try:
            return self.load_once()
        except Exception:  # keep going; the log keeps the data until a retry works
            log.exception("collector loader failed; will retry from %s", self.position)
            stop.poll(1.0)
            return 0

    def guarded(self, work: Callable[[], object]) -> None:
        """Run `work`, logging a failure instead of stopping the loader."""
        try:
            work()
        except Exception:
            log.exception("collector loader: %s failed", getattr(work, "__qualname__", work))


def _log_batch(decoded: Decoded, fresh: pa.Table, end: Position) -> None:
    log.debug("loaded %d of %d messages (%d quarantined, %d duplicates skipped) up to %s",
              fresh.num_rows, decoded.messages, len(decoded.quarantined),
              decoded.events.num_rows - fresh.num_rows, end)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the server dies (even by kill -9), so an
    orphaned loader never keeps the DuckDB file locked against the restarted server."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pipe's end of file stops the loader
        pass


def run_loader_process(root: str, engine_kind: str | None, names: dict[str, str], stop: Connection,
                       loaded: Synchronized, interval: float, min_bytes: int,
                       after_load: tuple[str, ...] = ()) -> None:
    """Entry point of the loader process: it, not the HTTP process, owns the engine.

    `after_load` names the hooks to run after each batch ("module:function", in order; see hooks.py).
    """
    from jingzhun.collect.collector.tracking_plan import load_tracking_plans
    from jingzhun.core.workspace import open_workspace
    from jingzhun.engine import open_engine

    _die_with_parent()
    os.nice(LOADER_NICENESS)  # acknowledgements win the CPU; the log buffers the load
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the server stops us through `stop`, after draining
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    workspace = open_workspace(root)
    plans = PlanChecker(load_tracking_plans(workspace.definitions_dir))
    with open_engine(workspace, engine_kind) as engine:
        hooks = HookRunner(workspace, engine, after_load, workspace.log_dir / STATE_FILE) if after_load else None
        loader = Loader(engine, DurableLog(workspace.log_dir, writer=False), plans, names, min_bytes=min_bytes,
                        hooks=hooks)
        if hooks is not None:
            loader.guarded(hooks.start)  # hand the hooks what they missed while the server was down
        loader.run(stop, interval, loaded)
