"""What every command shares: the Typer app, consoles, common options, progress."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import pyarrow.csv as pacsv
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from jingzhun.core import current_language, t
from jingzhun.core.workspace import WORKSPACE_ENV, Workspace

app = typer.Typer(
    name="jingzhun",
    help="精准 jingzhun — precision marketing on DuckDB or Spark. 开源精准营销平台。",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

console = Console()
errors = Console(stderr=True)

WorkspaceOption = Annotated[
    Path | None,
    typer.Option("--workspace", "-w", envvar=WORKSPACE_ENV, help="Workspace folder. 工作区目录。"),
]
EngineOption = Annotated[
    str | None, typer.Option("--engine", "-e", help="duckdb or spark; default from jingzhun.yaml.")
]
FormatOption = Annotated[str, typer.Option("--format", "-f", help="table, csv or json. 输出格式。")]
ShowSqlOption = Annotated[bool, typer.Option("--sql", help="Also print the SQL behind the result. 显示 SQL。")]


def language_of(workspace: Workspace | None = None) -> str:
    """The language to print in: the user's JINGZHUN_LANG, else the workspace's."""
    return current_language(workspace.config.language if workspace else None)


def progress_bar() -> Progress:
    """The progress display every long command uses."""
    return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


def step_reporter(progress: Progress, name: str) -> Callable[[str, int, int], None]:
    """A task on `progress` and the (step, done, total) callback that moves it."""
    task = progress.add_task(name, total=None)

    def on_step(step: str, done: int, total: int) -> None:
        progress.update(task, total=total or None, completed=done, description=step)

    return on_step


def print_result(result: pa.Table, output: str, max_rows: int, language: str) -> None:
    """Rows as a Rich table (first `max_rows`), CSV or JSON on standard output."""
    if output == "csv":
        sink = pa.BufferOutputStream()
        pacsv.write_csv(result, sink)
        sys.stdout.write(sink.getvalue().to_pybytes().decode("utf-8"))
        return
    if output == "json":
        sys.stdout.write(json.dumps(result.to_pylist(), ensure_ascii=False, default=str) + "\n")
        return
    shown = Table(*result.column_names)
    for row in result.slice(0, max_rows).to_pylist():
        shown.add_row(*("" if value is None else str(value) for value in row.values()))
    console.print(shown)
    console.print(t("sql.rows", language, count=result.num_rows))
