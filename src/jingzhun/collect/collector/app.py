"""The collector's FastAPI app: Segment's tracking API in front of the durable log.

DuckDB allows a single writer process, so the engine belongs to one loader process
that the app starts and stops with itself: the HTTP process only validates and
appends to the durable log (no GIL contention with the loader's work), and the
loader moves the log into `events`. Run the app with one uvicorn worker.
"""

from __future__ import annotations

import base64
import binascii
import multiprocessing
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from jingzhun.collect.collector.durable_log import DurableLog, GroupCommitter
from jingzhun.collect.collector.loader import run_loader_process
from jingzhun.collect.collector.spec import (
    MAX_MESSAGE_BYTES,
    SpecError,
    check_message,
    decode_body,
    messages_of,
)
from jingzhun.collect.collector.tracking_plan import load_tracking_plans
from jingzhun.collect.collector.write_keys import Source, hash_key, load_write_keys
from jingzhun.core.workspace import Workspace
from jingzhun.engine import open_engine
from jingzhun.schema import migrate

ENDPOINTS = ("track", "identify", "page", "screen", "group", "alias", "batch", "import")
_SUCCESS = orjson.dumps({"success": True})


@dataclass
class CollectorState:
    """What the request handlers share: keys, the log and its committer, the loader process."""

    keys: dict[str, Source]
    log: DurableLog
    committer: GroupCommitter
    loaded: Synchronized
    loader: BaseProcess


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


def _rejection(message: object, error: SpecError) -> dict[str, str]:
    """A rejected message as the log keeps it, so the loader can quarantine it."""
    return {"code": error.code, "field": error.field, "reason": f"{error.message} Fix: {error.fix}",
            "payload": orjson.dumps(message).decode()}


async def collect(kind: str, request: Request, state: CollectorState) -> Response:
    """Validate, log durably, acknowledge. Invalid messages in a batch are quarantined."""
    raw = await request.body()
    try:
        body = decode_body(raw, request.headers.get("content-encoding"))
        messages, sent_at = messages_of(body, kind)
    except SpecError as error:
        return json_response(error.as_json(), 400)
    source = state.keys.get(hash_key(write_key_of(request.headers.get("authorization"), body) or ""))
    if source is None:
        return _unauthorized()
    small = len(raw) <= MAX_MESSAGE_BYTES and not request.headers.get("content-encoding")
    accepted, rejected = [], []
    for message in messages:
        error = check_message(message, small)
        if error is None:
            accepted.append(message)
        elif kind not in ("batch", "import"):
            return json_response(error.as_json(), 400)
        else:
            rejected.append(_rejection(message, error))
    record = {"r": time.time_ns() // 1000, "s": source.source_id, "c": source.kind, "t": sent_at,
              "b": kind == "import", "m": accepted, "q": rejected}
    await state.committer.append(orjson.dumps(record) + b"\n")
    if not rejected:
        return Response(content=_SUCCESS, media_type="application/json")
    return json_response({"success": True, "accepted": len(accepted),
                                   "quarantined": len(rejected), "errors": [
                                       {k: r[k] for k in ("code", "field", "reason")} for r in rejected]})


def create_app(workspace: Workspace, *, engine_kind: str | None = None,
               load_interval: float = 0.2) -> FastAPI:
    """The collector app for `workspace`; the engine opens on startup, closes on shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keys = _prepare(workspace, engine_kind)
        durable_log = DurableLog(workspace.log_dir)
        context = multiprocessing.get_context("spawn")
        stop, loaded = context.Event(), context.Value("q", 0)
        names = {source.source_id: source.name for source in keys.values()}
        loader = context.Process(target=run_loader_process, name="jingzhun-collector-loader",
                                 args=(str(workspace.root), engine_kind, names, stop, loaded, load_interval))
        loader.start()
        app.state.collector = CollectorState(keys, durable_log, GroupCommitter(durable_log), loaded, loader)
        try:
            yield
        finally:
            stop.set()  # the loader drains the log into `events`, then closes the engine
            loader.join(300)
            durable_log.close()

    app = FastAPI(title="jingzhun collector", lifespan=lifespan)
    _add_routes(app)
    return app


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
        """Liveness and the loader's backlog (unauthenticated)."""
        state: CollectorState = request.app.state.collector
        pending = state.log.load_checkpoint() < state.log.durable
        return {"ok": True, "pending": pending, "loaded_events": state.loaded.value,
                "loader_alive": state.loader.is_alive()}

    for kind in ENDPOINTS:
        _add_endpoint(app, kind)


def _add_endpoint(app: FastAPI, kind: str) -> None:
    async def endpoint(request: Request) -> Response:
        return await collect(kind, request, request.app.state.collector)

    endpoint.__doc__ = f"Segment `{kind}` call: acknowledged once durably logged."
    app.add_api_route(f"/v1/{kind}", endpoint, methods=["POST"], name=f"collect_{kind}")
