"""The collector's FastAPI app: Segment's tracking API in front of the durable log.

DuckDB allows a single writer process, so the engine belongs to one loader process
that the app starts and stops with itself: the HTTP process only checks requests and
appends them to the durable log (no GIL contention with the loader's work), and the
loader validates, maps and moves the log into `events`. Run the app with one uvicorn worker.
"""

from __future__ import annotations

import base64
import binascii
import gc
import multiprocessing
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.datastructures import Headers

from jingzhun.collect.collector.durable_log import DurableLog, GroupCommitter
from jingzhun.collect.collector.hooks import STATE_FILE as HOOK_STATE
from jingzhun.collect.collector.hooks import AfterLoad, HookRunner, hook_names
from jingzhun.collect.collector.loader import Loader, run_loader_process
from jingzhun.collect.collector.log_records import request_line
from jingzhun.collect.collector.spec import (
    MAX_MESSAGE_BYTES,
    SpecError,
    check_message,
    inflate_body,
    messages_of,
    parse_body,
)
from jingzhun.collect.collector.tracking_plan import PlanChecker, load_tracking_plans
from jingzhun.collect.collector.tracking_routes import add_tracking_routes
from jingzhun.collect.collector.write_keys import Source, hash_key, load_write_keys
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, open_engine
from jingzhun.schema import migrate

ENDPOINTS = ("track", "identify", "page", "screen", "group", "alias", "batch", "import")
BATCH_KINDS = ("batch", "import")
LOAD_BATCH_BYTES = 8 * 1024 * 1024
_SUCCESS = orjson.dumps({"success": True})


@dataclass
class CollectorState:
    """What the request handlers share: keys, the log and its committer, the loader process."""

    keys: dict[str, Source]
    log: DurableLog
    committer: GroupCommitter
    loaded: Synchronized
    loader: BaseProcess
    after_load: Path | None = None  # the hooks' progress file, when there are hooks


def write_key_of(authorization: str | None, body: object) -> str | None:
    """The write key: HTTP Basic username (what the SDKs send), else `writeKey` in the body."""
    if authorization and authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.split(":", 1)[0] or None
    key = body.get("writeKey") if isinstance(body, dict) else None
    return key if isinstance(key, str) and key else None


def json_response(content: object, status_code: int = 200) -> Response:
    """A JSON response serialized by orjson (FastAPI's ORJSONResponse is deprecated)."""
    return Response(content=orjson.dumps(content), status_code=status_code, media_type="application/json")


def _unauthorized() -> Response:
    return json_response(status_code=401, content={
        "success": False, "code": "invalid_write_key", "field": "writeKey",
        "message": "the write key is missing, unknown or disabled.",
        "fix": "send the source's write key as the HTTP Basic username (see `jingzhun source list`)"})


async def collect(kind: str, request: Request, state: CollectorState) -> Response:
    """Check the request, log it durably, acknowledge.

    A single-message call is validated here (an invalid message gets Segment's 400).
    A batch is only checked to be JSON with a `batch` list: its body is logged as
    received and the loader validates its messages in bulk, quarantining invalid ones
    with the reason (Segment's API answers a batch with `{"success": true}` too).
    """
    checked = log_line_of(kind, await request.body(), request.headers, state.keys)
    if isinstance(checked, Response):
        return checked
    if checked:
        await state.committer.append(checked)
    return Response(content=_SUCCESS, media_type="application/json")


def log_line_of(kind: str, raw: bytes, headers: Headers, keys: dict[str, Source]) -> bytes | Response:
    """The request's log line (empty if it holds no message), or the error response.

    Not a coroutine on purpose: the parsed body dies on return, before the request
    waits for its fsync, so the garbage collector never walks thousands of waiting
    messages.
    """
    try:
        raw = inflate_body(raw, headers.get("content-encoding"))
        body = parse_body(raw)
        messages, sent_at = messages_of(body, kind)
    except SpecError as error:
        return json_response(error.as_json(), 400)
    source = keys.get(hash_key(write_key_of(headers.get("authorization"), body) or ""))
    if source is None:
        return _unauthorized()
    if kind not in BATCH_KINDS:
        error = check_message(messages[0], body_small=len(raw) <= MAX_MESSAGE_BYTES)
        if error is not None:
            return json_response(error.as_json(), 400)
        raw = orjson.dumps({"batch": messages, "sentAt": sent_at})
    elif not messages:
        return b""
    return request_line(time.time_ns() // 1000, source.source_id, source.kind, kind, raw)


def create_app(workspace: Workspace, *, engine_kind: str | None = None,
               load_interval: float = 0.2, load_batch_bytes: int = LOAD_BATCH_BYTES,
               after_load: Sequence[str | AfterLoad] = ()) -> FastAPI:
    """The collector app for `workspace`; the engine opens on startup, closes on shutdown.

    The loader loads once `load_batch_bytes` of log are waiting, or a second after the
    first line arrived, whichever comes first (it polls every `load_interval` seconds).
    After each batch it commits it calls the `after_load` hooks in order, each as
    `hook(workspace, engine, events)`: module-level functions or their "module:function"
    names (the loader is a spawned process); see collect/collector/hooks.py.
    """
    hooks = hook_names(after_load)  # a hook that cannot be imported stops the server now

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with collector_service(workspace, engine_kind=engine_kind, load_interval=load_interval,
                                     load_batch_bytes=load_batch_bytes, hooks=hooks) as state:
            app.state.collector = state
            yield

    app = FastAPI(title="jingzhun collector", lifespan=lifespan)
    add_collector_routes(app, workspace)
    return app


def add_collector_routes(app: FastAPI, workspace: Workspace) -> None:
    """Mount `/health`, the Segment endpoints and the tracking routes on `app`.

    They read `app.state.collector` (a `CollectorState`), which the app's lifespan sets
    from `collector_service`; the web server (jingzhun.web) mounts them beside its API.
    """
    _add_routes(app)
    add_tracking_routes(app, workspace)  # /t/c/{token} clicks and /t/o/{token}.gif opens


@asynccontextmanager
async def collector_service(workspace: Workspace, *, engine_kind: str | None = None,
                            load_interval: float = 0.2, load_batch_bytes: int = LOAD_BATCH_BYTES,
                            hooks: tuple[str, ...] = (),
                            process: Callable[..., object] = run_loader_process,
                            process_args: tuple[object, ...] = ()) -> AsyncIterator[CollectorState]:
    """Run the collector's engine process while the block runs; yield what the routes share.

    `process` is the spawned process that owns the engine: by default the loader alone
    (`run_loader_process`). The web server passes its own, which runs the loader beside
    the API's work; it is called as `process(root, engine_kind, names, stop, loaded,
    load_interval, load_batch_bytes, hooks, *process_args)`, the loader's arguments first.
    Leaving the block closes `stop`: the process drains the log into `events`, then exits.
    """
    keys = _prepare(workspace, engine_kind)
    durable_log = DurableLog(workspace.log_dir)
    context = multiprocessing.get_context("spawn")
    # A pipe and a lock-free shared counter: no named semaphores to leak when uvicorn
    # ends the process by re-raising SIGTERM (atexit clean-up never runs then).
    stop_reader, stop_writer = context.Pipe(duplex=False)
    loaded = context.Value("q", 0, lock=False)
    names = {source.source_id: source.name for source in keys.values()}
    loader = context.Process(target=process, name="jingzhun-collector-loader",
                             args=(str(workspace.root), engine_kind, names, stop_reader, loaded,
                                   load_interval, load_batch_bytes, hooks, *process_args))
    loader.start()
    stop_reader.close()
    state = CollectorState(keys, durable_log, GroupCommitter(durable_log), loaded, loader,
                           workspace.log_dir / HOOK_STATE if hooks else None)
    _freeze_startup_objects()
    try:
        yield state
    finally:
        stop_writer.close()  # end of file: the loader drains the log into `events`, then exits
        loader.join(300)
        durable_log.close()


def build_loader(workspace: Workspace, engine: Engine, names: dict[str, str], min_bytes: int,
                 hooks: tuple[str, ...] = ()) -> Loader:
    """The loader over an engine this process owns, with its after-load hooks (not started).

    For a process other than `run_loader_process` that owns the engine (the web server's):
    call `loader.guarded(loader.hooks.start)` when there are hooks, then `loader.run(...)`.
    """
    plans = PlanChecker(load_tracking_plans(workspace.definitions_dir))
    runner = HookRunner(workspace, engine, hooks, workspace.log_dir / HOOK_STATE) if hooks else None
    return Loader(engine, DurableLog(workspace.log_dir, writer=False), plans, names, min_bytes=min_bytes,
                  hooks=runner)


def _freeze_startup_objects() -> None:
    """Keep the garbage collector off the ~100k objects of the imported libraries.

    Parsing a batch allocates thousands of dicts and lists, so the collector runs often,
    and each full pass walked every module-level object: that was over half the request
    path's CPU. Frozen objects are never scanned (they live as long as the process).
    """
    gc.collect()
    gc.freeze()


def _prepare(workspace: Workspace, engine_kind: str | None) -> dict[str, Source]:
    """Migrate, read the write keys and check the tracking plans, then let go of the engine:
    the loader process becomes its only user (DuckDB allows one writer process)."""
    engine = open_engine(workspace, engine_kind)
    try:
        migrate(engine)
        keys = load_write_keys(engine)
    finally:
        engine.close()
    load_tracking_plans(workspace.definitions_dir)  # fail at startup, not in the loader
    return keys


def _add_routes(app: FastAPI) -> None:
    @app.get("/health")
    async def health(request: Request) -> dict[str, object]:
        """Liveness, the loader's backlog and the after-load hooks' progress (unauthenticated)."""
        state: CollectorState = request.app.state.collector
        pending = state.log.load_checkpoint() < state.log.durable
        hooks = orjson.loads(state.after_load.read_bytes()) if state.after_load and state.after_load.exists() else {}
        return {"ok": True, "pending": pending, "loaded_events": state.loaded.value,
                "loader_alive": state.loader.is_alive(), "after_load": hooks}

    for kind in ENDPOINTS:
        _add_endpoint(app, kind)


def _add_endpoint(app: FastAPI, kind: str) -> None:
    async def endpoint(request: Request) -> Response:
        return await collect(kind, request, request.app.state.collector)

    endpoint.__doc__ = f"Segment `{kind}` call: acknowledged once durably logged."
    app.add_api_route(f"/v1/{kind}", endpoint, methods=["POST"], name=f"collect_{kind}")
