"""The shape of a call from the HTTP process to the engine process, and what the work sees.

A route handler names a module-level function `fn(ctx, **params)` and its parameters;
the engine process runs it on one of its threads with `ctx` — the workspace, that
thread's own connection to the database, who is calling, whether their answers are
masked, and the background-job runner — then writes the audit row the call asked for.
Functions travel by reference (pickled by qualified name), never as code.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, open_engine
from jingzhun.web.accounts import Principal

if TYPE_CHECKING:
    from jingzhun.web.jobs import JobRunner


@dataclass(frozen=True)
class AuditEntry:
    """The `audit_log` row a change writes once it succeeded."""

    action: str
    object_type: str | None = None
    object_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CallContext:
    """Who calls and how to answer: sent with every call."""

    principal: Principal | None
    mask_pii: bool
    language: str = "zh"
    audit: AuditEntry | None = None
    client: str | None = None  # the caller's address, for the log-in audit


class Engines:
    """One connection per thread to the same database (DuckDB shares one instance per process)."""

    def __init__(self, workspace: Workspace, kind: str | None) -> None:
        self.workspace, self.kind = workspace, kind
        self._local = threading.local()
        self._opened: list[Engine] = []
        self._lock = threading.Lock()

    def current(self) -> Engine:
        """This thread's connection, opened on first use and kept."""
        engine = getattr(self._local, "engine", None)
        if engine is None:
            engine = self._local.engine = self.open()
        return engine

    def open(self) -> Engine:
        """A new connection (the caller closes it, or `close_all` does)."""
        engine = open_engine(self.workspace, self.kind)
        with self._lock:
            self._opened.append(engine)
        return engine

    def close(self, engine: Engine) -> None:
        with self._lock:
            if engine in self._opened:
                self._opened.remove(engine)
        engine.close()

    def close_all(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for engine in opened:
            with contextlib.suppress(Exception):  # closing at exit: nothing left to do about it
                engine.close()


@dataclass
class EngineContext:
    """What a function called from a route gets: run on `engine`, answer as `principal`."""

    workspace: Workspace
    engines: Engines
    call: CallContext
    jobs: JobRunner

    @property
    def engine(self) -> Engine:
        return self.engines.current()

    @property
    def principal(self) -> Principal | None:
        return self.call.principal

    @property
    def actor(self) -> str:
        return self.call.principal.actor if self.call.principal else "anonymous"

    @property
    def mask_pii(self) -> bool:
        return self.call.mask_pii

    @property
    def language(self) -> str:
        return self.call.language

    @property
    def timezone(self) -> str:
        return self.workspace.config.timezone
