"""Decisions: `POST /api/v1/decide` (also `POST /v1/decide`) — the next best offer and its copy, from memory.

The HTTP process never opens the database, and a decision must not wait for a query. So
the decision API keeps its answers in this process: the engine process builds a snapshot
(`activation.refresh_snapshot`: one query per table, written as Arrow files under
`.jingzhun/decisions/`), this process loads it and swaps it in whole; a request is then
dictionary lookups and a few compiled templates (`activation.Decider`).

Kept fresh by `DecisionService`, started inside the app's lifespan once the engine process is
up (`decisions_lifespan`, entered by web/app.py): it reads the last snapshot on disk and
serves it if the inputs' fingerprint still matches (row counts and latest times of
recommendations, persons, identities, consents, suppressions, coupons, deliveries …, and
the definition files; today's impressions re-read from the log), else builds one first;
then every `check_seconds` it checks the fingerprint again and rebuilds when it changed or
the snapshot is older than `max_age_seconds`. Decisions are logged in memory and written to
`decisions` in batches (every `flush_seconds` or `flush_rows`), after the answer.

The same handler also answers at `/v1/decide`, the path issue 7 names, beside the
collector's `/v1/*`; both paths are added to the app before its other routes
(`add_decide_routes`). Only the path is shared with the collector: it takes API keys and
sessions like every `/api/v1` route, never a source's write key (a write key sits in web
pages and apps, and only writes events; a decision reads a person's profile).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jingzhun.activation import (
    Decider,
    append_decisions,
    load_snapshot,
    logged_impressions,
    refresh_snapshot,
    snapshot_fingerprint,
)
from jingzhun.core.errors import JingzhunError
from jingzhun.web.api.deps import COMPUTES, Marketer, Viewer, require
from jingzhun.web.calls import CallContext, EngineContext
from jingzhun.web.client import EngineClient
from jingzhun.web.errors import api_error
from jingzhun.web.serialize import ErrorInfo

log = logging.getLogger(__name__)
FIRST_SNAPSHOT_WAIT = 30.0  # a request at start waits this long for the first snapshot


# ---- run in the engine process --------------------------------------------------------------------


def build_call(ctx: EngineContext) -> dict[str, Any]:
    meta = refresh_snapshot(ctx.engine, ctx.workspace)
    return {"version": meta.version, "rows": meta.rows}


def fingerprint_call(ctx: EngineContext) -> dict[str, str]:
    return snapshot_fingerprint(ctx.engine, ctx.workspace)


def impressions_call(ctx: EngineContext) -> dict[str, Any]:
    day, counts = logged_impressions(ctx.engine, ctx.workspace)
    return {"day": day, "counts": [[person, placement, shown] for (person, placement), shown in counts.items()]}


def append_call(ctx: EngineContext, rows: list[tuple]) -> dict[str, int]:
    return {"written": append_decisions(ctx.engine, rows)}


# ---- the service in the HTTP process --------------------------------------------------------------


def _out_of_gc() -> None:
    """Take what is alive now — above all the snapshot just installed — out of the garbage
    collector's passes (as the collector does at start, collect/collector/app.py).

    A full pass over a 20,000-person snapshot's objects takes ~70 ms, during which no request
    is answered; under load one came every few seconds: that was the decision API's p99.
    Frozen objects are still freed by reference counting when the next snapshot replaces
    them (a snapshot holds no cycles). The young generations are collected first, so the
    cyclic garbage of recent requests is not frozen with it.
    """
    gc.collect(1)
    gc.freeze()


def _files(found: dict[str, str]) -> dict[str, str]:
    return {name: stamp for name, stamp in found.items() if name.startswith("file:")}


class DecisionService:
    """The app's Decider, its snapshot upkeep and its log writer."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.decider: Decider | None = None
        self.error: JingzhunError | None = None
        self.ready = asyncio.Event()
        self.wake = asyncio.Event()
        self._refreshing = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []
        self.last_check: str | None = None

    async def start(self) -> None:
        try:
            self.decider = Decider(self.app.state.workspace)
        except JingzhunError as failure:  # a broken decisions.yaml: the API says so on every request
            self.error = failure
            log.error("decision API disabled: %s", failure)
            return
        self._tasks = [asyncio.create_task(self._keep_fresh()), asyncio.create_task(self._keep_writing())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.decider is not None:
            await self.flush()  # before the engine process stops taking calls

    async def _call(self, fn: Any, **params: Any) -> Any:
        client: EngineClient = self.app.state.engine
        kind, payload = await client.call(fn, params, CallContext(None, False))
        if kind == "error":
            info: ErrorInfo = payload
            raise JingzhunError(info.message_en, field=info.field, fix=info.fix_en, message_zh=info.message_zh,
                                fix_zh=info.fix_zh)
        return orjson.loads(payload)

    async def _keep_fresh(self) -> None:
        assert self.decider is not None
        on_disk = None  # the last server's snapshot: served only once its fingerprint proves it current
        with contextlib.suppress(OSError, ValueError, KeyError, JingzhunError):
            on_disk = await asyncio.to_thread(load_snapshot, self.app.state.workspace)
        while True:
            try:
                await self.refresh(candidate=on_disk)
            except Exception as failure:  # noqa: BLE001 — the loop must outlive any one failed refresh
                self.error = failure if isinstance(failure, JingzhunError) else JingzhunError(
                    f"{type(failure).__name__}: {failure}", field="snapshot", fix="see the server's log",
                    message_zh=f"{type(failure).__name__}: {failure}", fix_zh="请查看服务日志")
                log.warning("decision snapshot not refreshed: %s", failure)
            on_disk = None
            await asyncio.sleep(self.decider.settings.check_seconds)

    async def refresh(self, force: bool = False, candidate: Any = None) -> bool:
        """Rebuild the snapshot if its inputs changed, it is too old, or `force`; True if rebuilt.

        `candidate` (a snapshot read from disk at start) is installed instead of a rebuild when
        it is still current: the database may have changed while no server ran (a pipeline, a
        consent import from the CLI), and a stale snapshot would answer with withdrawn consents.
        """
        assert self.decider is not None
        async with self._refreshing:
            current = self.decider.snapshot or candidate
            self.last_check = datetime.now(UTC).isoformat()
            if current is not None and not force:
                age = time.time() - datetime.fromisoformat(current.meta.built_at).timestamp()
                if age < self.decider.settings.max_age_seconds and \
                        await self._call(fingerprint_call) == current.meta.fingerprint:
                    if current is not self.decider.snapshot:  # the disk's: add what was shown since it was built
                        logged = await self._call(impressions_call)
                        self.decider.remember(logged["day"], {(p, s): n for p, s, n in logged["counts"]})
                        await self._install(current)
                    return False
            await self._call(build_call)
            snapshot = await asyncio.to_thread(load_snapshot, self.app.state.workspace)
            self._reload_definitions(snapshot)
            await self._install(snapshot)
            self.error = None
            return True

    def _reload_definitions(self, snapshot: Any) -> None:
        """A new Decider when decisions.yaml, the send policy, identity.yaml or a template changed
        (the fingerprint's `file:` entries): placements and copy are compiled when it is made."""
        old = self.decider
        if snapshot is None or old is None or old.snapshot is None or \
                _files(old.snapshot.meta.fingerprint) == _files(snapshot.meta.fingerprint):
            return
        fresh = Decider(self.app.state.workspace)  # a broken file raises: refresh() reports it, the old one serves
        fresh.adopt(old)
        self.decider = fresh

    async def _install(self, snapshot: Any) -> None:
        if snapshot is not None and self.decider is not None:
            self.decider.install(snapshot)
            _out_of_gc()
            self.ready.set()

    async def _keep_writing(self) -> None:
        assert self.decider is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.decider.settings.flush_seconds)
            self.wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write what the log holds; a batch that fails waits for the next flush."""
        assert self.decider is not None
        rows = self.decider.log.drain()
        if not rows:
            return
        try:
            written = await self._call(append_call, rows=rows)
            self.decider.log.written += int(written["written"])
        except (JingzhunError, OSError) as failure:
            self.decider.log.put_back(rows)
            log.warning("decision log not written (%d rows wait): %s", len(rows), failure)

    async def decider_ready(self) -> Decider:
        """The Decider, once its first snapshot is in (a request at start waits for it)."""
        if self.decider is not None and self.decider.snapshot is not None:
            return self.decider
        if self.decider is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ready.wait(), FIRST_SNAPSHOT_WAIT)
            if self.decider.snapshot is not None:
                return self.decider
        reason = self.error.message if self.error else "the first snapshot is still being built"
        reason_zh = self.error.message_zh if self.error else "首个快照仍在构建中"
        raise api_error(503, "decisions_unavailable", f"the decision API cannot answer yet: {reason}",
                        f"决策接口暂不可用：{reason_zh}", field=self.error.field if self.error else None,
                        fix_en=self.error.fix if self.error else "retry in a few seconds",
                        fix_zh=self.error.fix_zh if self.error else "请几秒后重试",
                        headers={"Retry-After": "5"})

    def status(self) -> dict[str, Any]:
        decider = self.decider
        snapshot = decider.snapshot if decider else None
        meta = snapshot.meta if snapshot else None
        return {"ready": snapshot is not None, "snapshot": None if meta is None else {
                    "version": meta.version, "built_at": meta.built_at, "model_version": meta.model_version,
                    "rows": meta.rows},
                "last_check": self.last_check, "placements": sorted(decider.placements) if decider else [],
                "answers": {"hits": decider.answer_hits, "misses": decider.answer_misses} if decider else None,
                "copy_memo": {name: {"hits": copy.hits, "misses": copy.misses, "kept": len(copy.memo)}
                              for name, copy in decider.copies.items()} if decider else {},
                "log": {"pending": len(decider.log), "written": decider.log.written, "dropped": decider.log.dropped}
                if decider else None,
                "error": None if self.error is None else {"field": self.error.field, "message": self.error.message,
                                                          "message_zh": self.error.message_zh}}


@asynccontextmanager
async def decisions_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Entered inside the app's lifespan (the engine process is up), left before it ends (the log flushed)."""
    service = app.state.decisions = DecisionService(app)
    await service.start()
    try:
        yield
    finally:
        await service.stop()


router = APIRouter(prefix="/decide", tags=["decisions"])


class IdentifierIn(BaseModel):
    """`{"type": "phone", "value": "13800138000"}`; without a type the value is tried as every kind."""

    model_config = ConfigDict(extra="forbid")
    type: str | None = Field(None, max_length=40, description="phone, email, member_id, user_id, anonymous_id, "
                                                              "device_id, wechat_openid, person_id …")
    value: str = Field(min_length=1, max_length=300)


class DecideIn(BaseModel):
    """Who (any one identifier) and where (a placement, with the product shown or the cart)."""

    model_config = ConfigDict(extra="forbid")
    placement: str = Field(min_length=1, max_length=64, description="home_banner, product_page, cart, push …")
    identifier: IdentifierIn | str | None = Field(None, description="An identifier object, or `TYPE:VALUE`.")
    person_id: str | None = Field(None, max_length=64)
    user_id: str | None = Field(None, max_length=300, description="The app's user id (a member id by default).")
    anonymous_id: str | None = Field(None, max_length=300, description="The SDK's anonymous id (cookie).")
    product_id: str | None = Field(None, max_length=100, description="product_page: the product shown.")
    cart: list[str] = Field(default_factory=list, max_length=200, description="cart: the products in it.")

    def who(self) -> tuple[str | None, str | None]:
        """(value, type) of the identifier given; (None, None) for an anonymous request."""
        if isinstance(self.identifier, IdentifierIn):
            return self.identifier.value, self.identifier.type
        if self.identifier:
            return self.identifier, None
        for kind in ("person_id", "user_id", "anonymous_id"):
            value = getattr(self, kind)
            if value:
                return value, kind
        return None, None


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its nested models written in place (no `$defs` to point at)."""
    found = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(found[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        return [resolve(item) for item in node] if isinstance(node, list) else node

    return resolve(schema)


# The handler reads its body and checks its caller itself: FastAPI's body model and dependency
# solving cost more per request than the decision (benchmarks/decide.py). The body is still
# documented, and the answers are the same: 401/403 first, then 422 in the API's error shape.
DECIDE_DOC: dict[str, Any] = {**COMPUTES, "requestBody": {"required": True, "content": {
    "application/json": {"schema": _inlined(DecideIn.model_json_schema())}}}}
_may_view = require("view")


async def decide(request: Request) -> Response:
    """The next best offers, coupon and zh/en copy for one person on one placement (answered from memory).

    Credentials as for every API route (an API key or a session, role viewer or above).
    """
    await _may_view(request)
    try:
        body = DecideIn.model_validate_json(await request.body())
    except ValidationError as invalid:
        raise RequestValidationError([{**error, "loc": ("body", *error["loc"])}
                                      for error in invalid.errors(include_url=False)]) from None
    service: DecisionService = request.app.state.decisions
    decider = service.decider
    if decider is None or decider.snapshot is None:
        decider = await service.decider_ready()
    value, kind = body.who()
    decision = decider.decide(body.placement, value, kind, product_id=body.product_id, cart=body.cart)
    if len(decider.log) >= decider.settings.flush_rows:
        service.wake.set()
    return Response(decision.json_bytes(), media_type="application/json")


def add_decide_routes(app: FastAPI, api_prefix: str) -> None:
    """`POST {api_prefix}/decide` and `POST /v1/decide` on the app itself, before its other routes:
    FastAPI matches them in one step, where a route of an included router costs a walk through
    the routers first (about 0.2 ms a request, more than the decision; benchmarks/decide.py)."""
    app.add_api_route("/v1/decide", decide, methods=["POST"], name="decide_v1", tags=["decisions"],
                      openapi_extra=DECIDE_DOC, summary="Decide (at the path issue 7 names)")
    app.add_api_route(f"{api_prefix}/decide", decide, methods=["POST"], name="decide", tags=["decisions"],
                      openapi_extra=DECIDE_DOC)


@router.get("/status")
async def decide_status(principal: Viewer, request: Request) -> Response:
    """The snapshot being served (version, build time, rows), the decision log's backlog, the last error."""
    return Response(orjson.dumps(request.app.state.decisions.status()), media_type="application/json")


@router.post("/refresh", openapi_extra=COMPUTES)
async def decide_refresh(principal: Marketer, request: Request) -> Response:
    """Rebuild the snapshot now (after changing placements, consents or coupons) and swap it in."""
    service: DecisionService = request.app.state.decisions
    if service.decider is None:
        await service.decider_ready()  # answers 503 with the reason
    await service.refresh(force=True)
    return Response(orjson.dumps(service.status()), media_type="application/json")
