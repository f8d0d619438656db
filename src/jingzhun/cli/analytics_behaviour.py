"""`jingzhun report funnel|retention|paths|seasonality|hypotheses`: how people move and why
numbers change. Each prints the analysis's table and readings, and can write CSV / Excel,
a PNG chart and the SQL (see `report_output.emit_analysis`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
import yaml

from jingzhun.analytics import (
    Analysis,
    UserHypothesis,
    funnel,
    hypothesis_checks,
    paths,
    retention,
    retention_triangle,
    seasonality,
)
from jingzhun.cli.common import EngineOption, WorkspaceOption, language_of
from jingzhun.cli.report_output import (
    ChartOption,
    FormatOption,
    MaxRowsOption,
    OutputOption,
    SqlOption,
    draw_chart,
    emit_analysis,
    write_rows,
)
from jingzhun.cli.reports import report_app
from jingzhun.core import open_workspace
from jingzhun.core.workspace import Workspace
from jingzhun.engine import open_engine

FromOption = Annotated[str | None, typer.Option("--from", help="First local day, YYYY-MM-DD. 开始日期。")]
ToOption = Annotated[str | None, typer.Option("--to", help="Last local day, YYYY-MM-DD. 结束日期。")]


def _day(text: str | None, hint: str) -> dt.date | None:
    if text is None:
        return None
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter("use YYYY-MM-DD, e.g. 2025-11-11 / 请使用 YYYY-MM-DD 格式",
                                 param_hint=hint) from None


def _structured(text: str, hint: str) -> object:
    """A step or hypothesis given as JSON/YAML text; plain words stay a string."""
    try:
        return yaml.safe_load(text) if text.lstrip().startswith(("{", "[")) else text
    except yaml.YAMLError as broken:
        raise typer.BadParameter(f"cannot read it as JSON/YAML: {broken} / 无法解析", param_hint=hint) from None


def _emit_brief(result: Analysis, columns: list[str], language: str, output_format: str, output: Path | None,
                chart: Path | None, show_sql: bool, max_rows: int) -> None:
    """Files and CSV/JSON get every column; the on-screen table only `columns` (the readings
    say the rest), so it stays readable in a terminal."""
    if output is not None:
        write_rows(result.frame, output)
    shown = dataclasses.replace(result, frame=result.frame[columns]) if output_format == "table" else result
    emit_analysis(shown, language, output_format, None, chart, show_sql, max_rows)


def _run(workspace: Path | None, engine_kind: str | None, analyse, *, read_only: bool = True) -> tuple[Analysis, str]:
    """Open the workspace and engine, run `analyse(engine, workspace)`, return it and the language."""
    opened: Workspace = open_workspace(workspace)
    with open_engine(opened, engine_kind, read_only=read_only) as storage:
        result = analyse(storage, opened)
    return result, language_of(opened)


@report_app.command("funnel")
def funnel_command(
    step: Annotated[list[str] | None, typer.Option(
        "--step", "-s", help='A step, in order: an event name, "order", or JSON such as '
                             '\'{"event": "Product Viewed", "where": [{"property": "category", "op": "=", '
                             '"value": "cosmetics"}]}\'. Repeat for each step. 漏斗步骤。')] = None,
    steps_file: Annotated[Path | None, typer.Option(help="A YAML list of steps instead of --step.")] = None,
    window: Annotated[str, typer.Option(help="Conversion window: 24h, 7d, 2w. 转化窗口。")] = "7d",
    order: Annotated[str, typer.Option(help="strict (the given order) or any. 步骤顺序。")] = "strict",
    by: Annotated[str | None, typer.Option(help="Breakdown: channel, platform, gender, age_band, member_level, "
                                                "province, city, preferred_channel, audience. 拆分维度。")] = None,
    start: FromOption = None, end: ToOption = None,
    workspace: WorkspaceOption = None, engine: EngineOption = None, output_format: FormatOption = "table",
    output: OutputOption = None, chart: ChartOption = None, show_sql: SqlOption = False,
    max_rows: MaxRowsOption = 50,
) -> None:
    """Funnel: persons at each step within a conversion window. 转化漏斗。"""
    if steps_file is not None:
        steps = yaml.safe_load(steps_file.read_text(encoding="utf-8"))
    else:
        steps = [_structured(text, "--step") for text in step or []]
    first, last = _day(start, "--from"), _day(end, "--to")
    result, language = _run(workspace, engine, lambda storage, ws: funnel(
        storage, steps, window=window, order=order, breakdown=by, start=first, end=last,
        timezone=ws.config.timezone))
    emit_analysis(result, language, output_format, output, chart, show_sql, max_rows)


@report_app.command("retention")
def retention_command(
    cohort: Annotated[str, typer.Option(help="first_purchase, first_visit or registration. 分组依据。")]
    = "first_purchase",
    period: Annotated[str, typer.Option(help="day, week or month. 周期。")] = "week",
    activity: Annotated[str, typer.Option(help="What counts as coming back: any, purchase or visit. 回访行为。")]
    = "any",
    layout: Annotated[str, typer.Option(help="triangle (a column per offset) or long. 表格形式。")] = "triangle",
    unbounded: Annotated[bool, typer.Option(help="Show unbounded retention in the triangle. 显示无界留存。")] = False,
    offsets: Annotated[int, typer.Option(help="Period offsets the on-screen triangle shows (files get all).")] = 12,
    start: FromOption = None, end: ToOption = None,
    workspace: WorkspaceOption = None, engine: EngineOption = None, output_format: FormatOption = "table",
    output: OutputOption = None, chart: ChartOption = None, show_sql: SqlOption = False,
    max_rows: MaxRowsOption = 50,
) -> None:
    """Retention cohorts: who comes back, period by period. 留存分析。"""
    if layout not in ("triangle", "long"):
        raise typer.BadParameter("use triangle or long / 可选 triangle、long", param_hint="--layout")
    first, last = _day(start, "--from"), _day(end, "--to")
    result, language = _run(workspace, engine, lambda storage, ws: retention(
        storage, cohort=cohort, period=period, activity=activity, start=first, end=last,
        timezone=ws.config.timezone))
    shown = result
    if layout == "triangle":
        triangle = retention_triangle(result.frame, "unbounded_retention" if unbounded else "retention")
        shown = dataclasses.replace(result, frame=triangle, chart=None)
    if output is not None:  # files get every offset, as numbers
        write_rows(shown.frame, output)
    if layout == "triangle" and output_format == "table":  # the screen: a readable corner, in percent
        cells = shown.frame.iloc[:, 2: 2 + offsets].map(lambda v: "" if v != v else f"{v:.0%}")
        shown = dataclasses.replace(shown, frame=shown.frame.iloc[:, :2].join(cells))
    emit_analysis(shown, language, output_format, None, None, show_sql, max_rows)
    if chart is not None:
        draw_chart(result, chart, language)


@report_app.command("paths")
def paths_command(
    event: Annotated[str, typer.Option("--event", help="The step to start from, e.g. 'Product Viewed'. 起点事件。")],
    direction: Annotated[str, typer.Option(help="next or previous. 方向。")] = "next",
    depth: Annotated[int, typer.Option(help="Steps to follow (1-10). 深度。")] = 3,
    top: Annotated[int, typer.Option(help="Steps kept by name at each depth; the rest are (other).")] = 8,
    prop: Annotated[str | None, typer.Option("--property", help="Append this event property to step names.")]
    = None,
    start: FromOption = None, end: ToOption = None,
    workspace: WorkspaceOption = None, engine: EngineOption = None, output_format: FormatOption = "table",
    output: OutputOption = None, chart: ChartOption = None, show_sql: SqlOption = False,
    max_rows: MaxRowsOption = 50,
) -> None:
    """Paths: the most common next or previous steps within sessions. 行为路径。"""
    first, last = _day(start, "--from"), _day(end, "--to")
    result, language = _run(workspace, engine, lambda storage, ws: paths(
        storage, event, direction=direction, depth=depth, top=top, prop=prop, start=first, end=last,
        timezone=ws.config.timezone))
    emit_analysis(result, language, output_format, output, chart, show_sql, max_rows)


def _pools(pool: list[str] | None) -> dict[str, list[str]] | None:
    """--pool 'apparel+cosmetics=apparel,cosmetics' → {"apparel+cosmetics": ["apparel", "cosmetics"]}."""
    pooled: dict[str, list[str]] = {}
    for text in pool or []:
        label, _, members = text.partition("=")
        names = [name.strip() for name in members.split(",") if name.strip()]
        if not label.strip() or not names:
            raise typer.BadParameter("use LABEL=CAT1,CAT2 / 格式为 名称=品类1,品类2", param_hint="--pool")
        pooled[label.strip()] = names
    return pooled or None


@report_app.command("seasonality")
def seasonality_command(
    by: Annotated[str, typer.Option(help="Groups: gender, age_band, member_level, province, city, "
                                         "preferred_channel or audience. 人群维度。")] = "gender",
    holiday: Annotated[list[str] | None, typer.Option(
        help="womens_day, 618, double_11, spring_festival (repeat; default all). 节日。")] = None,
    window_days: Annotated[int, typer.Option(help="Days on each side of a holiday. 节日前后天数。")] = 3,
    pool: Annotated[list[str] | None, typer.Option(
        help="Pool categories into one column: LABEL=CAT1,CAT2 (repeat). 合并品类。")] = None,
    per_holiday: Annotated[bool, typer.Option(help="Also one row per holiday. 按节日分别显示。")] = False,
    confidence: Annotated[float, typer.Option(help="Interval level. 置信水平。")] = 0.95,
    start: FromOption = None, end: ToOption = None,
    workspace: WorkspaceOption = None, engine: EngineOption = None, output_format: FormatOption = "table",
    output: OutputOption = None, chart: ChartOption = None, show_sql: SqlOption = False,
    max_rows: MaxRowsOption = 50,
) -> None:
    """Seasonality: holiday lift per group × category, against all other lines. 节日季节性。"""
    from jingzhun.analytics.seasonality import HOLIDAYS

    first, last = _day(start, "--from"), _day(end, "--to")
    result, language = _run(workspace, engine, lambda storage, ws: seasonality(
        storage, dimension=by, holidays=holiday or HOLIDAYS, window_days=window_days, categories=_pools(pool),
        per_holiday=per_holiday, start=first, end=last, confidence=confidence, timezone=ws.config.timezone))
    brief = [*(["holiday"] if per_holiday else []), "segment", "category", "lines_inside", "lines_outside",
             "lift", "lift_low", "lift_high", "p_value"]
    _emit_brief(result, brief, language, output_format, output, chart, show_sql, max_rows)


def _user_hypotheses(hypothesis: list[str] | None, hypotheses_file: Path | None) -> list[UserHypothesis | dict]:
    """--hypothesis NAME=SQL (repeat) and/or a YAML file: a list of {name, sql, elasticity}."""
    found: list[UserHypothesis | dict] = []
    for text in hypothesis or []:
        name, _, sql = text.partition("=")
        if not name.strip() or not sql.strip():
            raise typer.BadParameter("use NAME=SELECT … / 格式为 名称=SELECT …", param_hint="--hypothesis")
        found.append(UserHypothesis(name=name.strip(), sql=sql.strip()))
    if hypotheses_file is not None:
        loaded = yaml.safe_load(hypotheses_file.read_text(encoding="utf-8")) or []
        found += loaded if isinstance(loaded, list) else [loaded]
    return found


@report_app.command("hypotheses")
def hypotheses_command(
    baseline: Annotated[str, typer.Option(
        help="Baseline period: 2025-03-03..2025-04-13, 2025-03, 2025-W10, 春节2025±7. 基准期。")],
    current: Annotated[str, typer.Option(help="Current period, written the same way. 当前期。")],
    kpi: Annotated[str, typer.Option(help="gmv, orders, search_index or custom. 指标。")] = "gmv",
    category: Annotated[str | None, typer.Option(help="Product category, e.g. cosmetics (美妆). 品类。")] = None,
    kpi_sql: Annotated[str | None, typer.Option(help="For --kpi custom: SELECT day, value FROM …")] = None,
    hypothesis: Annotated[list[str] | None, typer.Option(
        help="Your own hypothesis: NAME=SELECT period, value FROM … (repeat). 自定义假设。")] = None,
    hypotheses_file: Annotated[Path | None, typer.Option(help="YAML list of {name, sql, elasticity}.")] = None,
    alpha: Annotated[float, typer.Option(help="Significance level. 显著性水平。")] = 0.05,
    min_share: Annotated[float, typer.Option(help="Share of the change a supported cause explains.")] = 0.2,
    price_elasticity: Annotated[float, typer.Option(help="KPI change per relative price change.")] = -1.0,
    workspace: WorkspaceOption = None, engine: EngineOption = None, output_format: FormatOption = "table",
    output: OutputOption = None, chart: ChartOption = None, show_sql: SqlOption = False,
    max_rows: MaxRowsOption = 50,
) -> None:
    """Hypothesis checks: rank the candidate causes of a KPI change. 假设检验。"""
    extra = _user_hypotheses(hypothesis, hypotheses_file)
    # Stock-out spells are materialized (inventory_stockouts), so the engine opens for writing.
    result, language = _run(workspace, engine, lambda storage, ws: hypothesis_checks(
        storage, baseline=baseline, current=current, kpi=kpi, category=category, kpi_query=kpi_sql,
        user_hypotheses=extra, alpha=alpha, min_share=min_share, price_elasticity=price_elasticity,
        timezone=ws.config.timezone), read_only=False)
    brief = ["rank", "hypothesis", "subject", "change", "explained_share", "p_value", "driver_break", "verdict"]
    _emit_brief(result, brief, language, output_format, output, chart, show_sql, max_rows)
