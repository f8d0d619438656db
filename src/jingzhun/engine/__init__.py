"""Engines: one definition, two executions (DuckDB by default, Spark to scale out).

`open_engine(workspace)` returns the engine the workspace is configured for.
The Spark backend imports PySpark lazily, so DuckDB users never need Java.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from jingzhun.core.workspace import Workspace
from jingzhun.engine.base import Column, Engine, MaterializeHints, TableHandle
from jingzhun.engine.dialects import as_expression, json_text, parse_sql, render, to_local_time
from jingzhun.engine.duckdb import DuckDBEngine

if TYPE_CHECKING:
    from jingzhun.engine.spark import SparkEngine

ENGINE_KINDS = ("duckdb", "spark")


def open_engine(workspace: Workspace, kind: str | None = None, *, read_only: bool = False) -> Engine:
    """The engine for `workspace`: its configured kind unless `kind` overrides it."""
    chosen = kind or workspace.config.engine.kind
    if chosen == "duckdb":
        settings = workspace.config.engine.duckdb
        return DuckDBEngine(
            workspace.resolve(settings.path),
            read_only=read_only,
            threads=settings.threads,
            memory_limit=settings.memory_limit or default_memory_limit(),
        )
    if chosen == "spark":
        return open_spark_engine(workspace)
    from jingzhun.core.errors import EngineError

    raise EngineError(
        f"unknown engine {chosen!r}.", field="engine", fix="use duckdb or spark",
        message_zh=f"未知引擎 {chosen!r}。", fix_zh="请使用 duckdb 或 spark",
    )


def default_memory_limit(share: float = 0.5) -> str | None:
    """Half the machine's RAM for DuckDB, unless `engine.duckdb.memory_limit` says otherwise.

    DuckDB's own default (80%) leaves little for what runs beside it in the same
    process: the scores stage's feature frames and LightGBM, and Splink's own DuckDB.
    Past the limit DuckDB spills to its temp directory instead of failing. (At 1M
    persons the pipeline's peak RSS was 20.0 GB with 80% and 19.6 GB with 50%, and
    the same time: the peak comes from outside the warehouse connection.)
    """
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX: let DuckDB choose
        return None
    return f"{int(total * share / 2**20)}MB"


def open_spark_engine(workspace: Workspace) -> SparkEngine:
    """A Spark engine on the workspace's configured master and warehouse."""
    from jingzhun.engine.spark import SparkEngine, build_spark_session

    settings = workspace.config.engine.spark
    session = build_spark_session(settings.master, settings.app_name, settings.conf)
    warehouse = settings.warehouse
    if "://" not in warehouse:
        warehouse = str(workspace.resolve(warehouse))
    return SparkEngine(session, warehouse)


__all__ = [
    "Column",
    "DuckDBEngine",
    "Engine",
    "MaterializeHints",
    "TableHandle",
    "as_expression",
    "json_text",
    "open_engine",
    "open_spark_engine",
    "parse_sql",
    "render",
    "to_local_time",
]
