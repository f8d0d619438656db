"""The HTTP process's side of the pipe to the engine process (see engine_process.py).

`await client.call(fn, params, context)` sends one call and waits for its reply
without blocking the event loop: a reader thread receives replies and resolves each
call's future on the loop. Many calls are in flight at once; the engine process
answers them as its threads finish.
"""

from __future__ import annotations

import asyncio
import itertools
import pickle
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from jingzhun.web.calls import CallContext
from jingzhun.web.serialize import ErrorInfo

_GONE = ErrorInfo(503, "engine_unavailable", None, "the engine process is not running.",
                  "引擎进程未运行。", "restart `jingzhun serve`; its log says why the engine process stopped",
                  "请重启 `jingzhun serve`；日志中有引擎进程停止的原因")


class EngineClient:
    """Sends calls to the engine process and hands back its replies."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="jingzhun-engine-replies", daemon=True)

    def start(self) -> None:
        self._reader.start()

    async def call(self, fn: Callable[..., Any], params: dict[str, Any], context: CallContext) -> tuple[str, Any]:
        """Run `fn(ctx, **params)` in the engine process; returns its reply."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        payload = pickle.dumps((fn, params, context), protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            if self._closed:
                return "error", _GONE
            call_id = next(self._ids)
            self._pending[call_id] = (loop, future)
            try:
                self.connection.send((call_id, payload))
            except (OSError, ValueError):
                self._pending.pop(call_id, None)
                return "error", _GONE
        try:
            return await future
        finally:
            with self._lock:
                self._pending.pop(call_id, None)

    def _read(self) -> None:
        while True:
            try:
                call_id, reply = self.connection.recv()
            except (EOFError, OSError, TypeError, ValueError):  # closed (TypeError: closed under a blocked recv)
                break
            with self._lock:
                waiting = self._pending.get(call_id)
            if waiting is not None:
                loop, future = waiting
                loop.call_soon_threadsafe(_resolve, future, reply)
        self._fail_all()

    def _fail_all(self) -> None:
        with self._lock:
            self._closed = True
            pending, self._pending = list(self._pending.values()), {}
        for loop, future in pending:
            loop.call_soon_threadsafe(_resolve, future, ("error", _GONE))

    def close(self) -> None:
        """Stop sending; the engine process sees the pipe's end and stops taking calls."""
        with self._lock:
            self._closed = True
        self.connection.close()
        self._fail_all()


def _resolve(future: asyncio.Future, reply: tuple[str, Any]) -> None:
    if not future.done():
        future.set_result(reply)
