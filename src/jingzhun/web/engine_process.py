"""The engine process: the only process that opens the database while the server runs.

DuckDB lets one process open the file for writing and no other process open it at
all meanwhile. So `jingzhun serve` has two processes: the HTTP process (uvicorn: the
collector's acknowledgements, the API's routing, authentication, masking decisions)
never opens the database; this one, spawned beside it, owns it and runs

- the collector's loader on its main thread (durable log → `events`, then the
  after-load hooks), exactly as the collector-only server's loader process does;
- the API's calls on a pool of threads, each with its own connection to the same
  database instance (DuckDB runs them concurrently under MVCC; reads see a
  snapshot, a slow one delays nothing but itself);
- background jobs (pipeline, campaign runs, imports) in their own threads.

Calls arrive over a pipe as `(call_id, pickled (fn, params, CallContext))` and go back
as `(call_id, ("json", bytes) | ("file", FileResult) | ("error", ErrorInfo))`.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import pickle
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from jingzhun.collect.collector import build_loader
from jingzhun.core.workspace import Workspace, open_workspace
from jingzhun.web.accounts import record_audit
from jingzhun.web.calls import CallContext, EngineContext, Engines
from jingzhun.web.jobs import GatedHooks, HooksGate, JobRunner
from jingzhun.web.serialize import encode, error_info

log = logging.getLogger(__name__)
NICENESS = 10  # like the collector's loader: acknowledgements in the HTTP process win the CPU
SHUTDOWN_GRACE_SECONDS = 10.0


class CallServer:
    """Receives calls from the HTTP process and runs them on a pool of threads."""

    def __init__(self, connection: Connection, workspace: Workspace, engines: Engines, jobs: JobRunner,
                 threads: int) -> None:
        self.connection, self.workspace, self.engines, self.jobs = connection, workspace, engines, jobs
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="jingzhun-api")
        self._send_lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="jingzhun-calls", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                call_id, payload = self.connection.recv()
            except (EOFError, OSError):  # the HTTP process closed its end: the server is stopping
                return
            self.pool.submit(self.handle, call_id, payload)

    def handle(self, call_id: int, payload: bytes) -> None:
        """Run one call and send its reply; a failure becomes an error reply, never a lost call."""
        try:
            fn, params, call = pickle.loads(payload)  # noqa: S301 — our own HTTP process, over a private pipe
            reply = self.run(fn, params, call)
        except BaseException as failure:  # noqa: BLE001 — every failure is reported to the caller
            log.exception("API call failed")
            reply = ("error", error_info(failure))
        self._send(call_id, reply)

    def run(self, fn: Any, params: dict[str, Any], call: CallContext) -> tuple[str, Any]:
        ctx = EngineContext(self.workspace, self.engines, call, self.jobs)
        try:
            result = fn(ctx, **params)
            if call.audit is not None:
                entry = call.audit
                record_audit(ctx.engine, ctx.actor, entry.action, entry.object_type, entry.object_id,
                             entry.details or None)
            return encode(result, call.mask_pii)
        except Exception as failure:
            info = error_info(failure)
            if info.status >= 500:
                log.exception("API call %s failed", getattr(fn, "__qualname__", fn))
            return "error", info

    def _send(self, call_id: int, reply: tuple[str, Any]) -> None:
        with self._send_lock, contextlib.suppress(OSError, ValueError):  # ValueError, OSError: the HTTP process is gone
            self.connection.send((call_id, reply))

    def stop(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the server dies (even by kill -9), so an orphan
    never keeps the database locked against the restarted server (as the loader process does)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pipes' end of file stops this process
        pass


def run_engine_process(root: str, engine_kind: str | None, names: dict[str, str], stop: Connection,
                       loaded: Synchronized, interval: float, min_bytes: int, hooks: tuple[str, ...],
                       calls: Connection, threads: int) -> None:
    """Entry point of the engine process (started by the collector's `collector_service`)."""
    _die_with_parent()
    os.nice(NICENESS)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the server stops us through `stop`, after draining
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING)
    # Every call's function lives under jingzhun.web.api: import it once, now. Left to the first calls,
    # two threads unpickling at once import one package cycle from both ends and fail
    # ("partially initialized module"), as the decision service's start beside an API-key check did.
    importlib.import_module("jingzhun.web.api")
    workspace = open_workspace(root)
    engines = Engines(workspace, engine_kind)
    gate = HooksGate()
    jobs = JobRunner(engines, gate)
    engine = engines.open()  # the loader's connection
    try:
        jobs.interrupt_leftovers(engine)
        server = CallServer(calls, workspace, engines, jobs, threads)
        server.start()
        loader = build_loader(workspace, engine, names, min_bytes, hooks)
        if loader.hooks is not None:
            loader.hooks = GatedHooks(loader.hooks, gate)  # type: ignore[assignment]
            loader.guarded(loader.hooks.start)
        loader.run(stop, interval, loaded)  # until the server closes `stop`; then the log is drained
        server.stop()
        jobs.wait(SHUTDOWN_GRACE_SECONDS)
    finally:
        engines.close_all()
