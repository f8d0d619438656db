"""`jingzhun report …` output: a table on screen, CSV / Excel / PNG files, the SQL.

Every report subcommand ends in `emit_analysis`, so all reports print, export and
draw the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import pyarrow as pa
import typer

from jingzhun.analytics.result import Analysis, Chart
from jingzhun.cli.common import console, print_result

FormatOption = Annotated[str, typer.Option("--format", "-f", help="table, csv or json. 输出格式。")]
OutputOption = Annotated[Path | None, typer.Option(
    "--output", "-o", help="Also write the rows to this .csv or .xlsx file. 导出文件。")]
ChartOption = Annotated[Path | None, typer.Option(
    "--chart", help="Also draw the chart to this .png file. 导出图表。")]
SqlOption = Annotated[bool, typer.Option("--sql", help="Also print the SQL that produced it. 显示 SQL。")]
MaxRowsOption = Annotated[int, typer.Option(help="Rows to show in table format. 显示行数。")]


def emit_analysis(analysis: Analysis, language: str, output_format: str = "table",
                  output: Path | None = None, chart: Path | None = None, show_sql: bool = False,
                  max_rows: int = 50) -> None:
    """Print `analysis` and write the files asked for."""
    if output_format not in ("table", "csv", "json"):
        raise typer.BadParameter("use table, csv or json / 可选 table、csv、json", param_hint="--format")
    print_result(pa.Table.from_pandas(analysis.frame, preserve_index=False), output_format, max_rows, language)
    if output_format == "table":
        for line in analysis.reading_lines(language):
            console.print(f"• {line}", markup=False, highlight=False)
    if output is not None:
        write_rows(analysis.frame, output)
    if chart is not None:
        draw_chart(analysis, chart, language)
    if show_sql:
        for name, sql in analysis.sql.items():
            console.print(f"-- {name}", markup=False, highlight=False)
            console.print(sql.strip() + ";", markup=False, highlight=False)


def write_rows(frame: pd.DataFrame, path: Path) -> None:
    """CSV (UTF-8 with BOM, so Excel opens Chinese correctly) or Excel, by the suffix."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame.to_csv(path, index=False, encoding="utf-8-sig")
    elif suffix == ".xlsx":
        frame.to_excel(path, index=False, engine="xlsxwriter")
    else:
        raise typer.BadParameter("the file must end in .csv or .xlsx / 文件须以 .csv 或 .xlsx 结尾",
                                 param_hint="--output")


def draw_chart(analysis: Analysis, path: Path, language: str) -> None:
    """A PNG of the analysis's chart (bar, line, pie, heatmap, funnel or scatter)."""
    if analysis.chart is None:
        raise typer.BadParameter("this report has no chart / 该报表没有图表", param_hint="--chart")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chinese = _use_cjk_font(plt)
    spec, frame = analysis.chart, analysis.frame
    figure, axes = plt.subplots(figsize=(10, 5.5), dpi=110)
    _plot(axes, spec, frame)
    title = spec.title(language if chinese else "en") or analysis.name
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _plot(axes, spec: Chart, frame: pd.DataFrame) -> None:
    if spec.kind == "heatmap" and spec.series:
        grid = frame.pivot_table(index=spec.series, columns=spec.x, values=spec.y[0], aggfunc="sum")
        image = axes.imshow(grid.to_numpy(dtype=float), aspect="auto", cmap="viridis")
        axes.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns], rotation=45, ha="right")
        axes.set_yticks(range(len(grid.index)), [str(i) for i in grid.index])
        axes.figure.colorbar(image, ax=axes)
        return
    if spec.kind == "pie":
        axes.pie(frame[spec.y[0]], labels=frame[spec.x].astype(str), autopct="%1.1f%%")
        return
    if spec.kind == "funnel":
        axes.barh(frame[spec.x].astype(str)[::-1], frame[spec.y[0]][::-1])
        return
    if spec.kind == "scatter":
        axes.scatter(frame[spec.x], frame[spec.y[0]])
        axes.set_xlabel(spec.x)
        axes.set_ylabel(spec.y[0])
        return
    table = frame.pivot_table(index=spec.x, columns=spec.series, values=spec.y[0], aggfunc="sum") \
        if spec.series else frame.set_index(spec.x)[list(spec.y)]
    table.plot(ax=axes, kind="line" if spec.kind == "line" else "bar", rot=45)


def _use_cjk_font(plt) -> bool:
    """Pick an installed font that has Chinese glyphs; False when there is none (then
    the chart is labelled in English rather than drawn with empty boxes)."""
    from matplotlib import font_manager

    for name in ("Noto Sans CJK SC", "WenQuanYi Micro Hei", "Source Han Sans SC", "SimHei",
                 "Microsoft YaHei", "PingFang SC"):
        try:
            font_manager.findfont(name, fallback_to_default=False)
        except ValueError:
            continue
        plt.rcParams["font.sans-serif"] = [name, "DejaVu Sans"]
        plt.rcParams["axes.unicode_minus"] = False
        return True
    return False
