"""`jingzhun import KIND FILE` and `jingzhun quarantine list|show|retry`."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

import orjson
import pyarrow.compute as pc
import typer
from rich.table import Table
from sqlglot import exp

from jingzhun.cli.common import (
    EngineOption,
    WorkspaceOption,
    app,
    console,
    language_of,
    progress_bar,
)
from jingzhun.collect import list_quarantine
from jingzhun.collect.importers import import_file, retry_quarantine
from jingzhun.collect.importers.run import ImportResult
from jingzhun.core import JingzhunError, open_workspace
from jingzhun.engine import open_engine

quarantine_app = typer.Typer(help="Rows set aside by imports and the collector. 隔离区。", no_args_is_help=True)
app.add_typer(quarantine_app, name="quarantine")

_TEXT = {
    "zh": {"summary": "读取 {read:,} 行 = 导入 {loaded:,} + 隔离 {quarantined:,} + 重复跳过 {duplicate:,}",
           "already": "该文件已导入过（导入编号 {id}），本次未新增任何数据。",
           "resumed": "从第 {row:,} 行继续上次中断的导入。", "retry": "重试 {tried:,} 行：导入 {loaded:,}，"
           "已存在 {duplicate:,}，仍隔离 {still_open:,}", "missing": "没有编号为 {id} 的隔离记录。"},
    "en": {"summary": "read {read:,} rows = loaded {loaded:,} + quarantined {quarantined:,} + duplicates skipped {duplicate:,}",
           "already": "This file was already imported (import {id}); nothing was added.",
           "resumed": "Resumed an interrupted import at row {row:,}.", "retry": "Retried {tried:,} rows: loaded "
           "{loaded:,}, already present {duplicate:,}, still quarantined {still_open:,}",
           "missing": "No quarantined record with id {id}."},
}


def _say(language: str, key: str, **values: object) -> str:
    return _TEXT[language][key].format(**values)


def _report(result: ImportResult, language: str) -> None:
    if result.status == "already_imported":
        console.print(_say(language, "already", id=result.import_id))
    elif result.resumed_from:
        console.print(_say(language, "resumed", row=result.resumed_from))
    console.print(_say(language, "summary", read=result.rows_read, loaded=result.rows_loaded,
                       quarantined=result.rows_quarantined, duplicate=result.rows_duplicate))
    if result.rows_quarantined:
        console.print(f"  jingzhun quarantine list --import {result.import_id}")


@app.command(name="import")
def import_command(
    kind: Annotated[str, typer.Argument(help="pos_sales, crm_members, online_orders, products, stores, ...")],
    file: Annotated[Path, typer.Argument(help="CSV, Excel, JSON lines or Parquet file.")],
    mapping: Annotated[Path | None, typer.Option(help="Mapping YAML; default: the built-in one.")] = None,
    encoding: Annotated[str | None, typer.Option(help="CSV encoding; default: detected.")] = None,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
) -> None:
    """Import a file; resumes an interrupted import of the same file. 导入文件。"""
    opened = open_workspace(workspace)
    with open_engine(opened, engine) as storage, progress_bar() as progress:
        task = progress.add_task(f"{kind} {file.name}", total=1.0)

        def report(fraction: float, rows: int) -> None:
            progress.update(task, completed=fraction, description=f"{kind} {file.name} ({rows:,})")

        result = import_file(opened, storage, kind, file, mapping=mapping, progress=report, encoding=encoding)
        progress.update(task, completed=1.0)
    _report(result, language_of(opened))


ImportOption = Annotated[str | None, typer.Option("--import", help="Only rows of this import run.")]
KindOption = Annotated[str | None, typer.Option(help="Only rows of this kind.")]


@quarantine_app.command(name="list")
def quarantine_list(workspace: WorkspaceOption = None, engine: EngineOption = None,
                    import_id: ImportOption = None, kind: KindOption = None,
                    status: Annotated[str, typer.Option(help="open, retried or all.")] = "open",
                    limit: Annotated[int, typer.Option(help="How many rows to show.")] = 50) -> None:
    """List quarantined rows with their reasons. 列出隔离的记录。"""
    opened = open_workspace(workspace)
    with open_engine(opened, engine, read_only=True) as storage:
        rows = list_quarantine(storage, status=None if status == "all" else status, limit=100_000)
    if import_id:
        rows = rows.filter(pc.equal(rows.column("import_id"), import_id))
    if kind:
        rows = rows.filter(pc.equal(rows.column("kind"), kind))
    shown = Table("id", "kind", "file:line", "field", "reason")
    for row in rows.slice(0, limit).to_pylist():
        where = f"{Path(row.get('source_file') or '-').name}:{row.get('line_no') or '-'}"
        shown.add_row(row["quarantine_id"][:12], row.get("kind") or "", where, row.get("field") or "", row["reason"] or "")
    console.print(shown)
    console.print(f"{rows.num_rows:,}")


@quarantine_app.command(name="show")
def quarantine_show(quarantine_id: Annotated[str, typer.Argument(help="Id (or its first characters).")],
                    workspace: WorkspaceOption = None, engine: EngineOption = None) -> None:
    """Show one quarantined row: origin, reason and the raw record. 查看一条隔离记录。"""
    opened = open_workspace(workspace)
    query = exp.select("*").from_("quarantine").where(
        exp.column("quarantine_id").like(exp.convert(quarantine_id.replace("%", "") + "%"))).limit(1)
    with open_engine(opened, engine, read_only=True) as storage:
        match = storage.query(query).to_pylist()
    if not match:
        raise JingzhunError(_TEXT["en"]["missing"].format(id=quarantine_id),
                            message_zh=_TEXT["zh"]["missing"].format(id=quarantine_id),
                            fix="copy an id from `jingzhun quarantine list`", fix_zh="从 `jingzhun quarantine list` 复制编号")
    row = match[0]
    for key in ("quarantine_id", "kind", "import_id", "source_file", "line_no", "field", "reason_code", "reason",
                "status", "received_at", "retried_at"):
        console.print(f"[bold]{key}[/]: {row.get(key)}", highlight=False)
    payload = row.get("payload") or ""
    with contextlib.suppress(orjson.JSONDecodeError):
        payload = orjson.dumps(orjson.loads(payload), option=orjson.OPT_INDENT_2).decode()
    console.print(payload, highlight=False, markup=False)


@quarantine_app.command(name="retry")
def quarantine_retry(workspace: WorkspaceOption = None, engine: EngineOption = None,
                     import_id: ImportOption = None, kind: KindOption = None,
                     mapping: Annotated[Path | None, typer.Option(help="A corrected mapping to use.")] = None) -> None:
    """Re-check open rows and load those that now pass. 重新校验并导入隔离的记录。"""
    opened = open_workspace(workspace)
    with open_engine(opened, engine) as storage:
        result = retry_quarantine(opened, storage, import_id=import_id, kind=kind,
                                  mapping=str(mapping) if mapping else None)
    console.print(_say(language_of(opened), "retry", tried=result.tried, loaded=result.loaded,
                       duplicate=result.duplicate, still_open=result.still_open))
