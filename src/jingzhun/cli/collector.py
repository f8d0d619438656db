"""The server's commands: `serve` (collector, REST API and console on one port) and `source add|list`.

DuckDB allows one process to open the database: while `jingzhun serve` runs it owns the
workspace's database, so add sources through its API (`POST /api/v1/sources`), or stop it first.
"""

from __future__ import annotations

from typing import Annotated

import duckdb
import typer
from rich.table import Table

from jingzhun.cli.common import EngineOption, WorkspaceOption, app, console, language_of
from jingzhun.collect.collector import KINDS, add_source, list_sources
from jingzhun.core import Workspace, open_workspace, t
from jingzhun.core.i18n import MESSAGES
from jingzhun.engine import Engine, open_engine
from jingzhun.schema import migrate

COLLECTOR_MESSAGES: dict[str, dict[str, str]] = {
    "source.added": {
        "zh": "已创建数据源 {name}（{kind}，ID {source_id}）。写入密钥只显示这一次，请妥善保存：",
        "en": "Created source {name} ({kind}, id {source_id}). The write key is shown only once; keep it safe:",
    },
    "source.none": {"zh": "还没有数据源；用 `jingzhun source add NAME --kind web` 创建。",
                    "en": "No sources yet; create one with `jingzhun source add NAME --kind web`."},
    "serve.listening": {"zh": "精准服务已启动 http://{host}:{port}（工作区 {path}）\n"
                              "  控制台 http://{host}:{port}/ · API 文档 http://{host}:{port}/docs · "
                              "采集 http://{host}:{port}/v1/batch",
                        "en": "jingzhun serving on http://{host}:{port} (workspace {path})\n"
                              "  console http://{host}:{port}/ · API docs http://{host}:{port}/docs · "
                              "collector http://{host}:{port}/v1/batch"},
    "table.source_id": {"zh": "数据源 ID", "en": "Source id"},
    "table.name": {"zh": "名称", "en": "Name"},
    "table.kind": {"zh": "类型", "en": "Kind"},
    "table.created_at": {"zh": "创建时间", "en": "Created"},
    "table.status": {"zh": "状态", "en": "Status"},
}
MESSAGES.update(COLLECTOR_MESSAGES)

# What the loader runs after each batch it commits, in this order: each hook sees a batch
# only after the ones before it have handled it (docs/collector.md, "After-load hooks").
# Add a stage's real-time work here (triggered campaigns, live KPIs) as a module-level
# function `hook(workspace, engine, events)` or its "module:function" name.
AFTER_LOAD_HOOKS: tuple[str, ...] = (
    "jingzhun.identity.realtime:attribute_new_events",    # new events → their known persons
    "jingzhun.segments.realtime:update_live_audiences",   # → real-time audience entries and exits
    "jingzhun.activation.tracking:record_message_events",  # tracked clicks and opens → message_events
    "jingzhun.measure.kpis:update_kpis",  # clicks, opens and orders → the campaign KPIs they change
    "jingzhun.activation.triggers:on_events_loaded",  # → triggered campaigns (sent by a thread of the loader)
)

source_app = typer.Typer(help="Collector sources and write keys. 数据源与写入密钥。", no_args_is_help=True)
app.add_typer(source_app, name="source")


@app.command()
def serve(
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
    realtime: Annotated[bool, typer.Option(
        help="Attribute new events to persons and update real-time audiences as they load.")] = True,
    after_load: Annotated[list[str] | None, typer.Option(
        help="Another hook to run after each loaded batch, as module:function (repeatable).")] = None,
) -> None:
    """Serve the collector, the REST API and the console on one port (one process owns the database). 启动服务。"""
    import uvicorn

    from jingzhun.web import create_app as create_server

    opened = open_workspace(workspace)
    hooks = [*(AFTER_LOAD_HOOKS if realtime else ()), *(after_load or ())]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    app = create_server(opened, engine_kind=engine, after_load=hooks, server_url=f"http://{shown}:{port}")
    console.print(t("serve.listening", language_of(opened), host=shown, port=port, path=opened.root), highlight=False,
                  soft_wrap=True)  # never break an address across lines (a pipe's console is 80 columns)
    # One worker on purpose: DuckDB allows one writer process (see docs/collector.md).
    uvicorn.run(app, host=host, port=port, log_level=log_level, workers=1, timeout_graceful_shutdown=30)


@source_app.command("add")
def source_add(
    name: Annotated[str, typer.Argument(help="Source name, e.g. web-shop.")],
    kind: Annotated[str, typer.Option(help=f"One of {', '.join(KINDS)}.")] = "web",
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
) -> None:
    """Create a source and print its write key once. 创建数据源并显示写入密钥（仅一次）。"""
    opened = open_workspace(workspace)
    with _engine(opened, engine) as storage:
        migrate(storage)
        source, write_key = add_source(storage, name, kind)
    console.print(t("source.added", language_of(opened), name=source.name, kind=source.kind,
                    source_id=source.source_id))
    console.print(write_key, highlight=False, soft_wrap=True)


def _engine(workspace: Workspace, kind: str | None, read_only: bool = False) -> Engine:
    """Open the engine, naming the running server (and the API to use) if it holds the database."""
    try:
        return open_engine(workspace, kind, read_only=read_only and kind in (None, "duckdb"))
    except duckdb.IOException as failure:
        from jingzhun.cli.web import database_in_use

        raise database_in_use(failure, ["jingzhun", "source", "add", "--workspace", str(workspace.root)]) \
            or failure from None


@source_app.command("list")
def source_list(workspace: WorkspaceOption = None, engine: EngineOption = None) -> None:
    """List sources (write keys are stored hashed and cannot be shown). 列出数据源。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    with _engine(opened, engine, read_only=True) as storage:
        rows = list_sources(storage).to_pylist()
    if not rows:
        console.print(t("source.none", language))
        return
    table = Table(*(t(f"table.{c}", language) for c in ("source_id", "name", "kind", "created_at", "status")))
    for row in rows:
        status = "disabled" if row["disabled_at"] else "enabled"
        table.add_row(row["source_id"], row["name"], row["kind"], str(row["created_at"]), status)
    console.print(table)
