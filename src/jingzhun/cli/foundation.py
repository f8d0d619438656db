"""The foundation's commands: init, migrate, pipeline, sql and demo generate."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from jingzhun.activation import install_example_sales, install_starter_templates
from jingzhun.cli.common import (
    EngineOption,
    WorkspaceOption,
    app,
    console,
    language_of,
    print_result,
    progress_bar,
)
from jingzhun.core import JingzhunError, WorkspaceConfig, init_workspace, open_workspace, t
from jingzhun.engine import open_engine
from jingzhun.engine.dialects import parse_read_only
from jingzhun.pipeline import run_pipeline
from jingzhun.schema import LATEST_VERSION, current_version, migrate

DEMO_SITE = "https://www.jingzhun-demo.cn"  # the demo retailer's site (demo/events_sql.py SITE)
demo_app = typer.Typer(help="Demo data. 演示数据。", no_args_is_help=True)
app.add_typer(demo_app, name="demo")


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the workspace in.")],
    name: Annotated[str | None, typer.Option(help="Workspace name (default: folder name).")] = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone for display and calendars.")] = "Asia/Shanghai",
    currency: Annotated[str, typer.Option(help="ISO 4217 currency code.")] = "CNY",
    engine: Annotated[str, typer.Option(help="duckdb (one machine) or spark.")] = "duckdb",
    pii: Annotated[str, typer.Option(help="plain or salted_hash storage of phones and emails.")] = "plain",
    language: Annotated[str, typer.Option(help="zh or en.")] = "zh",
) -> None:
    """Create a workspace: jingzhun.yaml, definitions/ and the engine's storage. 创建工作区。"""
    from jingzhun.core.config import parse_config

    settings = {"name": name or directory.resolve().name, "timezone": timezone, "currency": currency,
                "language": language, "engine": {"kind": engine}, "pii": {"mode": pii}}
    config = parse_config(settings, Path("command line"))
    workspace = init_workspace(directory, config)
    with open_engine(workspace) as storage:
        migrate(storage)
    install_starter_templates(workspace.root)
    console.print(t("init.created", language_of(workspace), path=workspace.root, timezone=config.timezone,
                    currency=config.currency, engine=config.engine.kind))


@app.command(name="migrate")
def migrate_command(workspace: WorkspaceOption = None, engine: EngineOption = None) -> None:
    """Bring the workspace's tables to the latest schema version. 升级数据表结构。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    with open_engine(opened, engine) as storage:
        old = current_version(storage)
        applied = migrate(storage)
    if applied:
        console.print(t("migrate.applied", language, old=old, new=applied[-1].version))
        for migration in applied:
            console.print(f"  {migration.version}: {migration.name}")
    else:
        console.print(t("migrate.current", language, version=LATEST_VERSION))


@app.command()
def pipeline(
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    stage: Annotated[list[str] | None, typer.Option(
        "--stage", "-s", help="Run only this stage (repeatable), still in pipeline order: schema, matching, "
                              "identity, traits, scores, tags. 只运行指定阶段。")] = None,
) -> None:
    """Run every pipeline stage that exists, with progress. 运行数据流水线。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    started = time.perf_counter()
    with open_engine(opened, engine) as storage, progress_bar() as progress:
        task = progress.add_task("pipeline", total=None)

        current = {"title": ""}
        steps = progress.add_task("", total=None)

        def on_stage(stage, index: int, total: int) -> None:
            current["title"] = stage.title_zh if language == "zh" else stage.title_en
            progress.update(task, total=total, completed=index,
                            description=t("pipeline.stage", language, stage=current["title"]))

        def on_step(step: str, done: int, total: int) -> None:
            progress.update(steps, total=total or None, completed=done, description=f"  {current['title']}: {step}")

        results = run_pipeline(opened, storage, on_stage, on_step, stages=stage or None)
        progress.update(task, completed=len(results))
    summary = Table(t("table.stage", language), t("table.tables", language), t("table.rows", language),
                    t("table.notes", language))
    for result in results:
        filled = {name: rows for name, rows in result.tables.items() if rows}
        detail = [f"{name} {rows:,}" for name, rows in filled.items()]
        detail += [t(note.key, language, **note.values) for note in result.notes]
        summary.add_row(result.stage, str(len(result.tables)), f"{sum(filled.values()):,}", "\n".join(detail))
    console.print(summary)
    console.print(t("pipeline.done", language, count=len(results), seconds=time.perf_counter() - started))


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="A read-only query in DuckDB's SQL dialect.")],
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    output: Annotated[str, typer.Option("--format", "-f", help="table, csv or json.")] = "table",
    max_rows: Annotated[int, typer.Option(help="Rows to show in table format.")] = 200,
) -> None:
    """Run a read-only SQL query and print the result. 执行只读 SQL 查询。"""
    opened = open_workspace(workspace)
    statement = parse_read_only(query)
    if output not in ("table", "csv", "json"):
        raise typer.BadParameter("use table, csv or json / 请使用 table、csv 或 json", param_hint="--format")
    with open_engine(opened, engine, read_only=True) as storage:
        result = storage.query(statement)
    print_result(result, output, max_rows, language_of(opened))


@demo_app.command("generate")
def demo_generate(
    directory: Annotated[Path, typer.Argument(help="Workspace folder to create or fill.")],
    persons: Annotated[int, typer.Option(min=100, help="Number of simulated customers.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same files.")] = 42,
    start: Annotated[str, typer.Option(help="First day of history (YYYY-MM-DD).")] = "2024-11-01",
    end: Annotated[str, typer.Option(help="Last day of history (YYYY-MM-DD).")] = "2026-10-31",
    views_per_visit: Annotated[float, typer.Option(
        min=1.0, help="Mean product views per web/app/mini-program visit (1.8 gives ~11 events per person, "
                      "20 about 50). 每次访问平均浏览商品数。")] = 1.8,
) -> None:
    """Generate a Chinese omnichannel retailer's source files. 生成演示零售数据。"""
    from jingzhun.demo import generate_demo

    first_day, last_day = _day(start, "--start"), _day(end, "--end")
    if last_day <= first_day:
        raise typer.BadParameter("must be after --start / 必须晚于 --start", param_hint="--end")
    try:
        opened = open_workspace(directory)
    except JingzhunError:
        opened = init_workspace(directory, WorkspaceConfig(name="演示零售品牌 demo retailer"))
        with open_engine(opened) as storage:
            migrate(storage)
    language = language_of(opened)
    console.print(t("demo.generating", language, persons=f"{persons:,}", seed=seed))
    with progress_bar() as progress:
        tasks: dict[str, int] = {}

        def report(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = progress.add_task(step, total=total)
            progress.update(tasks[step], completed=done, total=total)

        summary = generate_demo(opened.root, persons=persons, seed=seed, start=first_day,
                                end=last_day, progress=report, views_per_visit=views_per_visit)
    install_starter_templates(opened.root, brand_zh="精准", brand_en="Jingzhun", site_url=DEMO_SITE)
    install_example_sales(opened.root)  # the demo's sales team, for `jingzhun lead assign`
    console.print(_files_by_source(summary.files, opened.root, language))
    console.print(t("demo.done", language, path=opened.root, seconds=summary.seconds))


def _files_by_source(files: list, root: Path, language: str) -> Table:
    """One row per source: where its files are, how many rows, how many planted bad rows."""
    grouped: dict[str, list] = {}
    for file in files:
        grouped.setdefault(file.source, []).append(file)
    listing = Table(t("table.source", language), t("table.file", language), t("table.rows", language),
                    t("table.malformed", language))
    for source, parts in grouped.items():
        folders = sorted({str(part.path.parent.relative_to(root)) for part in parts})
        where = str(parts[0].path.relative_to(root)) if len(parts) == 1 else f"{', '.join(folders)}/ ({len(parts)})"
        listing.add_row(source, where, f"{sum(p.rows for p in parts):,}", f"{sum(p.malformed_rows for p in parts):,}")
    return listing


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a date; use YYYY-MM-DD / 请使用 YYYY-MM-DD 格式",
                                 param_hint=option) from None


