"""`jingzhun serve`: one app on one port — the collector, the REST API, its docs and the console.

    /health, /v1/*         the Segment collector (write keys)          collect/collector
    /t/c, /t/o, /t/u       tracked clicks, opens, unsubscribes         collect/collector/tracking.py
    /api/v1/*              the REST API (sessions or API keys)         web/api
    /v1/decide             the decision API (sessions or API keys)     web/api/routes/decide.py
    /docs, /openapi.json   the API's documentation (logged in)         web/console
    /login, /, /static/*   the console                                 web/console

The app runs in one uvicorn worker (the HTTP process), which never opens the database.
Its lifespan spawns the engine process (web/engine_process.py), which owns the database:
the collector's loader and the API's calls and jobs run there. See docs/architecture.md,
"Serving".
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import orjson
from fastapi import FastAPI
from fastapi.routing import APIRoute

from jingzhun.collect.collector import add_collector_routes, collector_service, hook_names
from jingzhun.collect.collector.hooks import AfterLoad
from jingzhun.core.workspace import Workspace
from jingzhun.web.api import api_router
from jingzhun.web.api.deps import AuthCache
from jingzhun.web.api.routes.decide import add_decide_routes, decisions_lifespan
from jingzhun.web.client import EngineClient
from jingzhun.web.console import router as console_router
from jingzhun.web.engine_process import run_engine_process
from jingzhun.web.errors import install_error_handlers
from jingzhun.web.security import CookieSigner, LoginLimiter
from jingzhun.web.settings import WebSettings, load_settings

SERVER_FILE = ".jingzhun/server.json"  # who holds the database: read by the CLI's "in use" message
API_PREFIX = "/api/v1"


def unique_id(route: APIRoute) -> str:
    """Operation ids: `<tag>-<function>` (stable names for generated clients)."""
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def create_app(workspace: Workspace, *, engine_kind: str | None = None, after_load: Sequence[str | AfterLoad] = (),
               load_interval: float = 0.2, settings: WebSettings | None = None,
               server_url: str | None = None) -> FastAPI:
    """The whole server for `workspace`; `after_load` as in the collector's `create_app`.

    `server_url` is where it listens (written to `.jingzhun/server.json` while it runs, so a
    CLI command that finds the database busy can say which server holds it).
    """
    hooks = hook_names(after_load)  # a hook that cannot be imported stops the server now
    chosen = settings or load_settings(workspace)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ours, theirs = multiprocessing.get_context("spawn").Pipe(duplex=True)
        async with collector_service(workspace, engine_kind=engine_kind, load_interval=load_interval, hooks=hooks,
                                     process=run_engine_process, process_args=(theirs, chosen.api_threads)) as state:
            theirs.close()  # the engine process has its end; ours alone must stay open
            app.state.collector = state
            app.state.engine = client = EngineClient(ours)
            client.start()
            marker = _mark_server(workspace, server_url)
            try:
                async with decisions_lifespan(app):  # the decision API's snapshot and log need the engine process
                    yield
            finally:
                client.close()  # the engine process stops taking calls, then drains the log
                marker.unlink(missing_ok=True)

    app = FastAPI(title="精准 jingzhun API", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None, generate_unique_id_function=unique_id,
                  description="REST API of jingzhun: persons, tags, audiences, campaigns, analytics, data. "
                              "See docs/api.md for authentication, roles, errors and paging.")
    app.state.workspace, app.state.settings = workspace, chosen
    app.state.signer = CookieSigner(chosen.secret())
    app.state.auth_cache = AuthCache()
    app.state.login_limiter = LoginLimiter(chosen.login_attempts, chosen.login_window_seconds)
    install_error_handlers(app)
    add_decide_routes(app, API_PREFIX)  # /api/v1/decide and /v1/decide (keys, sessions) first: the hot path
    add_collector_routes(app, workspace)
    app.include_router(api_router, prefix=API_PREFIX)
    app.include_router(console_router)
    app.state.openapi_bytes = orjson.dumps(app.openapi())
    return app


def _mark_server(workspace: Workspace, url: str | None) -> Path:
    path = workspace.resolve(SERVER_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": os.getpid(), "url": url, "started_at": datetime.now(UTC).isoformat()}),
                    encoding="utf-8")
    return path


def running_server(workspace: Workspace) -> dict | None:
    """The server that says it holds this workspace's database (if its process still lives)."""
    path = workspace.resolve(SERVER_FILE)
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
        os.kill(int(found["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return found
