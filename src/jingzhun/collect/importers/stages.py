"""An import as a pipeline of threads: read the next block, check the one before, store.

Parsing, Arrow compute and DuckDB release the GIL, so on two cores the stages
overlap. Each stage runs at most one item ahead of the next (memory stays
bounded). The workspace engine belongs to the storing (calling) thread: the
checking stage's few engine lookups (keys loaded before the run) are handed to
it and answered between batches, so one connection is never used by two threads.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class _Ask:
    """Engine work a stage thread needs done on the consumer's thread."""

    work: Callable[[], Any]
    answer: Future


class Handoff:
    """Runs engine work where the engine lives: directly, or via the consumer of a stage."""

    def __init__(self) -> None:
        self._outbox: queue.Queue | None = None
        self._owner: threading.Thread | None = None  # the thread that uses the engine

    def __call__(self, work: Callable[[], T]) -> T:
        if self._outbox is None or threading.current_thread() is self._owner:
            return work()
        answer: Future = Future()
        self._outbox.put(_Ask(work, answer))
        return answer.result()


def ahead(items: Iterator[T], handoff: Handoff | None = None) -> Iterator[T]:
    """Produce the next item in a thread while the caller uses this one.

    With `handoff`, engine work the thread asks for is done here, in the caller's
    thread, the next time it asks for an item.
    """
    outbox: queue.Queue = queue.Queue(maxsize=1)
    done, stop = object(), threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                outbox.put(item)
            outbox.put(done)
        except BaseException as failure:  # handed to the consumer, raised there
            outbox.put(failure)

    if handoff is not None:
        handoff._outbox, handoff._owner = outbox, threading.current_thread()
    thread = threading.Thread(target=produce, name="jingzhun-import-stage", daemon=True)
    thread.start()
    try:
        while (item := outbox.get()) is not done:
            if isinstance(item, _Ask):
                _answer(item)
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        stop.set()
        if handoff is not None:
            handoff._outbox = handoff._owner = None
        _drain(outbox, thread)


def _answer(ask: _Ask) -> None:
    try:
        ask.answer.set_result(ask.work())
    except BaseException as failure:  # the asking thread raises it
        ask.answer.set_exception(failure)


def _drain(outbox: queue.Queue, thread: threading.Thread) -> None:
    """Unblock a producer waiting on a full queue or on an answer, so it can stop."""
    while thread.is_alive():
        with contextlib.suppress(queue.Empty):
            item = outbox.get(timeout=0.05)
            if isinstance(item, _Ask):
                item.answer.set_exception(CancelledError())
