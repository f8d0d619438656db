"""After-load hooks: what the loader runs after each batch of events it commits.

This is the real-time path of DESIGN.md (collector → identity → profile → triggers):
`jingzhun serve` passes an ordered list of hooks — today attributing new events to known
persons, then updating real-time audiences — and later stages add theirs (triggered
campaigns, live KPIs) to that list (cli/collector.py, `AFTER_LOAD_HOOKS`). The collect
stage imports none of them: a hook is named `"module:function"` and imported by the
loader, a spawned process.

A hook is a module-level callable `hook(workspace, engine, events)`: `events` is an
Arrow table of the rows just added to `events` (with `loaded_at`), already committed.

Delivery is at least once, in order:

- Each hook sees a batch only after every hook before it has handled it. The loader
  records, per hook, the `loaded_at` of the last batch it handled (`log/after_load.json`,
  written atomically); a hook that is behind — it failed, or the loader died between
  the commit and the hooks — is given every event loaded since, read back from
  `events`. So hooks must be idempotent (a replay must not count an event twice).
- A hook that raises is logged and retried with the next batch. After `MAX_ATTEMPTS`
  failures in a row it is skipped for those events: the span is recorded in
  `quarantine` (kind `collector_hook`, with the error) and the hook moves on, so a broken
  hook never holds back the hooks after it or loading, which never waits for hooks. The
  events themselves are in `events` before any hook runs; the next pipeline run rebuilds
  what the hooks maintain.
- A hook that was not running for longer than `CATCH_UP` (the server ran without it)
  starts from there: older events are the pipeline's (also recorded in `quarantine`).

Hooks run in the loader process, one after another: a slow hook delays the next batch.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow as pa
from sqlglot import exp

from jingzhun.collect.collector.durable_log import write_durably
from jingzhun.collect.collector.write_keys import CollectorError
from jingzhun.collect.quarantine import quarantine_rows
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine

log = logging.getLogger(__name__)
AfterLoad = Callable[[Workspace, Engine, pa.Table], object]
STATE_FILE = "after_load.json"
MAX_ATTEMPTS = 3
CATCH_UP = timedelta(hours=1)


def hook_name(hook: str | AfterLoad) -> str:
    """`"module:function"` for a hook given as a name or as an importable function.

    Example:
        >>> hook_name("jingzhun.identity.realtime:attribute_new_events")
        'jingzhun.identity.realtime:attribute_new_events'
    """
    name = hook if isinstance(hook, str) else \
        f"{getattr(hook, '__module__', '')}:{getattr(hook, '__qualname__', '')}"
    try:
        found = resolve_hook(name)
    except (ImportError, AttributeError, ValueError) as missing:
        raise _not_importable(name, str(missing)) from None
    if not callable(found) or (not isinstance(hook, str) and found is not hook):
        raise _not_importable(name, "it is not a module-level function")
    return name


def hook_names(hooks: Iterable[str | AfterLoad]) -> tuple[str, ...]:
    """The names of `hooks`, each checked to import (so a typo stops the server at startup)."""
    return tuple(hook_name(hook) for hook in hooks)


def resolve_hook(name: str) -> AfterLoad:
    """The function a `"module:function"` name refers to."""
    module, _, attribute = name.partition(":")
    if not module or not attribute:
        raise ValueError(f"{name!r} is not 'module:function'")
    found: object = importlib.import_module(module)
    for part in attribute.split("."):
        found = getattr(found, part)
    return found  # type: ignore[return-value]


def _not_importable(name: str, why: str) -> CollectorError:
    return CollectorError(
        f"after-load hook {name!r} cannot be imported by the loader process: {why}.", field="after_load",
        fix="pass a module-level function or its name as 'package.module:function'",
        message_zh=f"加载后钩子 {name!r} 无法在加载进程中导入：{why}。",
        fix_zh="请传入模块级函数，或写成 'package.module:function' 形式的名称")


@dataclass
class HookState:
    """One hook's progress: the `loaded_at` of the last batch it handled, failures in a row."""

    through: datetime | None = None
    failures: int = 0


class HookRunner:
    """Runs the hooks after each batch, in order, keeping each one's progress on disk.

    The hooks are imported in a thread beside the loading: a stage's modules can take
    seconds to import (scikit-learn, statsmodels …), and loading must not wait for them.
    Batches loaded meanwhile reach the hooks from `events` once they are imported.
    """

    def __init__(self, workspace: Workspace, engine: Engine, names: Iterable[str], state_path: Path) -> None:
        self.workspace, self.engine, self.state_path = workspace, engine, state_path
        self.state = {name: HookState() for name in names}
        self.hooks: dict[str, AfterLoad] = {}
        self.latest: datetime | None = None  # loaded_at of the newest batch in `events`
        self._imported = threading.Event()
        threading.Thread(target=self._import, name="after-load-import", daemon=True).start()

    def _import(self) -> None:
        try:
            self.hooks = {name: resolve_hook(name) for name in self.state}
        except Exception:  # create_app imported them already; this is the loader's own copy
            log.exception("after-load hooks could not be imported by the loader; they will not run")
        finally:
            self._imported.set()

    def ready(self, timeout: float = 0.0) -> bool:
        """Whether the hooks are imported (waiting up to `timeout` seconds)."""
        return self._imported.wait(timeout) and len(self.hooks) == len(self.state)

    def start(self) -> None:
        """Read the saved progress; hooks that are behind catch up once imported."""
        saved = orjson.loads(self.state_path.read_bytes()) if self.state_path.exists() else {}
        self.latest = _latest_loaded(self.engine)
        for name, state in self.state.items():
            if name not in saved:  # a new hook starts with the next batch
                state.through = self.latest
                continue
            through = saved[name].get("through")
            state.through = datetime.fromisoformat(through) if through else None
            state.failures = int(saved[name].get("failures", 0))
        self._save()  # from now on a crash between a commit and the hooks is replayed
        self.catch_up()

    def catch_up(self) -> None:
        """Between batches: give hooks that are behind what they missed (a failing hook
        is retried with the next batch instead)."""
        if self.latest is None or any(s.failures for s in self.state.values()):
            return
        if any(s.through is None or s.through < self.latest for s in self.state.values()) and self.ready():
            self.after_batch(self.latest, None)  # type: ignore[arg-type]

    def after_batch(self, loaded_at: datetime, fresh: pa.Table | None) -> None:
        """Run each hook on the batch loaded at `loaded_at` (plus anything it missed)."""
        previous, self.latest = self.latest, loaded_at
        if not self.ready():
            return  # not imported yet: they will read these events from `events`
        for name, hook in self.hooks.items():
            state = self.state[name]
            if state.through is not None and state.through >= loaded_at:
                continue
            up_to_date = fresh is not None and state.through == previous
            if not self._run(name, hook, state, loaded_at, fresh if up_to_date else None):
                break  # later hooks wait: they may need this one's work
        self._save()

    def _run(self, name: str, hook: AfterLoad, state: HookState, loaded_at: datetime,
             fresh: pa.Table | None) -> bool:
        """Run one hook; True when it is done with everything up to `loaded_at`."""
        after = self._skip_old(name, state, loaded_at)
        try:
            events = fresh if fresh is not None else _loaded_between(self.engine, after, loaded_at)
            started = time.perf_counter()
            if events.num_rows:
                hook(self.workspace, self.engine, events)
            log.debug("after-load hook %s: %d events in %.3f s", name, events.num_rows,
                      time.perf_counter() - started)
        except Exception as failure:
            state.failures += 1
            log.exception("after-load hook %s failed (attempt %d of %d)", name, state.failures, MAX_ATTEMPTS)
            if state.failures < MAX_ATTEMPTS:
                return False
            self._record(name, "hook_failed", after, loaded_at, _describe(failure))
        state.through, state.failures = loaded_at, 0
        return True

    def _skip_old(self, name: str, state: HookState, loaded_at: datetime) -> datetime | None:
        """Where the hook resumes: its progress, but no more than CATCH_UP before this batch."""
        oldest = loaded_at - CATCH_UP
        if state.through is not None and state.through < oldest:
            self._record(name, "hook_skipped", state.through, oldest,
                         f"the hook did not run for more than {CATCH_UP}; the pipeline covers these events")
            state.through = oldest
        return state.through

    def _record(self, name: str, code: str, after: datetime | None, through: datetime, reason: str) -> None:
        """Note in `quarantine` the events a hook did not handle (nothing else is lost)."""
        span = {"hook": name, "loaded_after": after.isoformat() if after else None,
                "loaded_through": through.isoformat()}
        log.error("after-load hook %s gave up on events loaded %s – %s: %s", name, span["loaded_after"],
                  span["loaded_through"], reason)
        quarantine_rows(self.engine, pa.table({
            "reason_code": [code], "reason": [reason], "kind": ["collector_hook"], "field": [name],
            "payload": [orjson.dumps(span).decode()]}))

    def _save(self) -> None:
        state = {name: {"through": s.through.isoformat() if s.through else None, "failures": s.failures}
                 for name, s in self.state.items()}
        write_durably(self.state_path, orjson.dumps(state))


def _describe(failure: Exception) -> str:
    return "".join(traceback.format_exception_only(failure)).strip()[:2000]


def _timestamp(moment: datetime) -> exp.Expression:
    return exp.cast(exp.Literal.string(moment.astimezone(UTC).isoformat()), exp.DataType.build("TIMESTAMPTZ"))


def _latest_loaded(engine: Engine) -> datetime | None:
    latest = engine.query(exp.select(exp.func("MAX", exp.column("loaded_at")).as_("latest")).from_("events"))
    value = latest.column(0)[0].as_py()
    return value.astimezone(UTC) if value is not None else None


def _loaded_between(engine: Engine, after: datetime | None, through: datetime) -> pa.Table:
    """The rows of `events` loaded after `after` up to `through` (a missed stretch of batches).

    `events` is appended in loading order, so the engine skips older row groups by the
    min/max of `loaded_at`.
    """
    loaded = exp.column("loaded_at")
    query = exp.select("*").from_("events").where(exp.LTE(this=loaded, expression=_timestamp(through)))
    if after is not None:
        query = query.where(exp.GT(this=loaded.copy(), expression=_timestamp(after)))
    return engine.query(query)
