"""`jingzhun report cube|compare|root-cause`: slice the cube, compare periods, find why a KPI moved.

    jingzhun report cube -m gmv -m aov -b month -b category --period 2026-Q1 --pivot category
    jingzhun report compare -m gmv -b category --period 春节2026±7 --against yoy
    jingzhun report compare -m gmv --where category=cosmetics --period 2026-Q2 \\
        --benchmark industry_trade_index --subject industry --benchmark-category 美妆
    jingzhun report root-cause -m views --period 2025-09-27 --base 2025-09-13..2025-09-26
"""

from __future__ import annotations

from typing import Annotated

import typer

from jingzhun.analytics import (
    DIMENSIONS,
    MEASURES,
    CubeQuery,
    Thresholds,
    allowed_dimensions,
    compare_periods,
    compare_with_benchmark,
    find_root_cause,
    run_cube,
)
from jingzhun.cli.common import EngineOption, WorkspaceOption, console, language_of
from jingzhun.cli.report_output import (
    ChartOption,
    FormatOption,
    MaxRowsOption,
    OutputOption,
    SqlOption,
    emit_analysis,
)
from jingzhun.cli.reports import report_app
from jingzhun.core import open_workspace
from jingzhun.engine import open_engine

MeasureOption = Annotated[list[str] | None, typer.Option("--measure", "-m", help="Measure (repeat for several). 指标。")]
ByOption = Annotated[list[str] | None, typer.Option(
    "--by", "-b", help="Dimension to break down by (repeat); tag:<id> for one tag. 维度。")]
WhereOption = Annotated[list[str] | None, typer.Option(
    "--where", help="Keep only these values: dimension=v1,v2 (repeat). 过滤。")]
PeriodOption = Annotated[str | None, typer.Option(
    "--period", "-p", help="2026, 2026-Q1, 2026-03, 2026-W12, 2026-03-08, A..B, 春节2026±7. 时间段。")]


def where_filters(items: list[str] | None) -> dict[str, tuple[str, ...]]:
    """`["category=cosmetics,apparel"]` → `{"category": ("cosmetics", "apparel")}`."""
    found: dict[str, tuple[str, ...]] = {}
    for item in items or []:
        name, sep, values = item.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise typer.BadParameter("write dimension=value[,value…], e.g. category=cosmetics / "
                                     "请写成 维度=取值，例如 category=cosmetics", param_hint="--where")
        found[name.strip()] = tuple(v.strip() for v in values.split(",") if v.strip())
    return found


@report_app.command("cube")
def cube_command(measure: MeasureOption = None, by: ByOption = None, where: WhereOption = None,
                 period: PeriodOption = None,
                 pivot: Annotated[str | None, typer.Option(help="Dimension whose values become columns. 透视列。")] = None,
                 list_all: Annotated[bool, typer.Option("--list", help="List measures and dimensions. 列出指标与维度。")] = False,
                 workspace: WorkspaceOption = None, engine: EngineOption = None, output_format: FormatOption = "table",
                 output: OutputOption = None, chart: ChartOption = None, show_sql: SqlOption = False,
                 max_rows: MaxRowsOption = 50) -> None:
    """Measures by time, place, channel, people and product (roll up, drill down, slice, dice, pivot). 多维分析。"""
    if list_all:
        _list_cube()
        return
    if not measure:
        raise typer.BadParameter("name at least one measure, e.g. -m gmv (see --list) / 请至少指定一个指标",
                                 param_hint="--measure")
    opened = open_workspace(workspace)
    query = CubeQuery(measures=tuple(measure), by=tuple(by or ()), where=where_filters(where), period=period)
    with open_engine(opened, engine) as storage:
        analysis = run_cube(storage, query, opened.config.timezone, pivot=pivot)
    emit_analysis(analysis, language_of(opened), output_format, output, chart, show_sql, max_rows)


def _list_cube() -> None:
    for name, measure in MEASURES.items():
        console.print(f"{name:20} {measure.label_zh} / {measure.label_en}", markup=False, highlight=False)
        console.print(f"{'':20}   by: {', '.join(allowed_dimensions(measure))}", markup=False, highlight=False)
    console.print("dimensions: " + ", ".join(DIMENSIONS), markup=False, highlight=False)


@report_app.command("compare")
def compare_command(measure: MeasureOption = None, by: ByOption = None, where: WhereOption = None,
                    period: PeriodOption = None,
                    against: Annotated[str, typer.Option(help="yoy, mom or wow. 同比/环比/周环比。")] = "yoy",
                    align: Annotated[str, typer.Option(help="auto, date, weekday or holiday. 对齐方式。")] = "auto",
                    benchmark: Annotated[str | None, typer.Option(
                        help="A benchmark series to compare with (indexed growth). 行业/竞品基准序列。")] = None,
                    subject: Annotated[str | None, typer.Option(help="The benchmark's subject. 基准主体。")] = None,
                    benchmark_category: Annotated[str | None, typer.Option(
                        help="The benchmark's category. 基准类目。")] = None,
                    workspace: WorkspaceOption = None, engine: EngineOption = None,
                    output_format: FormatOption = "table", output: OutputOption = None, chart: ChartOption = None,
                    show_sql: SqlOption = False, max_rows: MaxRowsOption = 50) -> None:
    """Year on year, month on month, week on week (calendar-aware), or against a benchmark. 同比环比与基准对比。"""
    if not measure:
        raise typer.BadParameter("name a measure, e.g. -m gmv / 请指定指标", param_hint="--measure")
    opened = open_workspace(workspace)
    query = CubeQuery(measures=tuple(measure), by=tuple(by or ()), where=where_filters(where), period=period)
    timezone = opened.config.timezone
    with open_engine(opened, engine) as storage:
        if benchmark:
            analysis = compare_with_benchmark(storage, query, benchmark, subject, benchmark_category, against,
                                              align, timezone)
        else:
            analysis = compare_periods(storage, query, against, align, timezone)
    emit_analysis(analysis, language_of(opened), output_format, output, chart, show_sql, max_rows)


@report_app.command("root-cause")
def root_cause_command(measure: Annotated[str, typer.Option("--measure", "-m", help="The KPI. 指标。")],
                       period: Annotated[str, typer.Option("--period", "-p", help="The period to explain. 分析期。")],
                       base: Annotated[str | None, typer.Option(
                           help="The period to compare with (default: as many days just before). 对比期。")] = None,
                       dimension: Annotated[list[str] | None, typer.Option(
                           "--dimension", "-d", help="Dimensions to try (default: all). 候选维度。")] = None,
                       where: WhereOption = None,
                       max_depth: Annotated[int, typer.Option(help="Levels to drill. 下钻层数。")] = 3,
                       min_share: Annotated[float, typer.Option(
                           help="Drill into a cause only if it explains this share. 下钻所需解释度。")] = 0.5,
                       recent_days: Annotated[int, typer.Option(
                           help="A product launched this many days before is recent. 新品天数。")] = 30,
                       workspace: WorkspaceOption = None, engine: EngineOption = None,
                       output_format: FormatOption = "table", output: OutputOption = None, chart: ChartOption = None,
                       show_sql: SqlOption = False, max_rows: MaxRowsOption = 50) -> None:
    """Which dimension values explain a KPI's change (Adtributor), drilling into the top cause. 根因下钻。"""
    opened = open_workspace(workspace)
    filters = {name: values[0] for name, values in where_filters(where).items()}
    thresholds = Thresholds(max_depth=max_depth, min_share=min_share, recent_days=recent_days)
    with open_engine(opened, engine) as storage:
        analysis = find_root_cause(storage, measure, period, base, dimension, filters, thresholds,
                                   opened.config.timezone)
    emit_analysis(analysis, language_of(opened), output_format, output, chart, show_sql, max_rows)
