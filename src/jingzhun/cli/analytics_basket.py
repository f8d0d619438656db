"""`jingzhun report rules|cross-sell|lineup|bundles|fans-vs-buyers|compare-audiences|source-value`:
related products, audience portraits side by side, and what a data source is worth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
import yaml

from jingzhun.analytics import (
    Analysis,
    AnalyticsError,
    association_rules,
    bundle_suggestions,
    compare_audiences,
    cross_sell,
    fans_vs_buyers,
    livestream_lineup,
    load_partner_file,
    partner_freshness,
    partner_overlap,
    partner_tag_lift,
    rank_sources,
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
from jingzhun.cli.reports import instant, report_app
from jingzhun.core import open_workspace
from jingzhun.engine import open_engine

LevelOption = Annotated[str, typer.Option(help="product, subcategory or category. 商品层级。")]
SupportOption = Annotated[float | None, typer.Option(
    "--min-support", help="Share of baskets an itemset must be in (default per level). 最小支持度。")]
SinceOption = Annotated[str | None, typer.Option(help="Orders placed from this instant, ISO 8601. 起始时间。")]
UntilOption = Annotated[str | None, typer.Option(help="Orders placed before this instant, ISO 8601. 截止时间。")]
GoalOption = Annotated[str | None, typer.Option(
    help='The conversion: an event name or a JSON/YAML order/event rule; default any purchase. 转化目标。')]
WindowOption = Annotated[int, typer.Option("--window", help="Outcome window in days. 转化时间窗（天）。")]


def _run(workspace: Path | None, engine: str | None, make, output_format: str, output: Path | None,  # noqa: ANN001
         chart: Path | None, show_sql: bool, max_rows: int) -> None:
    """Open the workspace and engine, run `make(engine, workspace)` and print what it returns."""
    opened = open_workspace(workspace)
    with open_engine(opened, engine) as storage:
        analyses = make(storage, opened)
    parts = analyses if isinstance(analyses, list) else [analyses]
    for analysis in parts:
        if len(parts) > 1 and output_format == "table":
            console.print(f"\n== {analysis.name} ==", markup=False, highlight=False)
        emit_analysis(analysis, language_of(opened), output_format, _suffixed(output, analysis, len(parts)),
                      _suffixed(chart, analysis, len(parts)), show_sql, max_rows)


def _suffixed(path: Path | None, analysis: Analysis, parts: int) -> Path | None:
    """One file per part when a command prints several: out.csv → out-source_overlap.csv."""
    if path is None or parts == 1:
        return path
    return path.with_name(f"{path.stem}-{analysis.name}{path.suffix}")


@report_app.command("rules")
def rules(workspace: WorkspaceOption = None, engine: EngineOption = None, level: LevelOption = "subcategory",
          min_support: SupportOption = None,
          min_confidence: Annotated[float, typer.Option(help="Minimum confidence. 最小置信度。")] = 0.0,
          min_lift: Annotated[float, typer.Option(help="Minimum lift. 最小提升度。")] = 0.0,
          max_size: Annotated[int, typer.Option(help="2 for pairs, 3 to add triples. 最大项集。")] = 3,
          since: SinceOption = None, until: UntilOption = None, output_format: FormatOption = "table",
          output: OutputOption = None, chart: ChartOption = None, show_sql: SqlOption = False,
          max_rows: MaxRowsOption = 50) -> None:
    """Association rules of items bought together (support, confidence, lift, leverage, conviction). 关联规则。"""
    _run(workspace, engine, lambda e, _: association_rules(
        e, level, min_support, min_confidence, min_lift, max_size, instant(since), instant(until)),
         output_format, output, chart, show_sql, max_rows)


@report_app.command("cross-sell")
def cross_sell_command(item: Annotated[str | None, typer.Argument(help="One item; default every item. 商品。")] = None,
                       workspace: WorkspaceOption = None, engine: EngineOption = None, level: LevelOption = "product",
                       top: Annotated[int, typer.Option(help="Suggestions per item. 每个商品的推荐数。")] = 5,
                       min_support: SupportOption = None,
                       min_lift: Annotated[float, typer.Option(help="Minimum lift. 最小提升度。")] = 1.0,
                       since: SinceOption = None, until: UntilOption = None, output_format: FormatOption = "table",
                       output: OutputOption = None, chart: ChartOption = None, show_sql: SqlOption = False,
                       max_rows: MaxRowsOption = 50) -> None:
    """What each item's buyers add most often, with attach rate and lift. 连带推荐。"""
    _run(workspace, engine, lambda e, _: cross_sell(e, item, level, top, min_support, min_lift, instant(since),
                                                    instant(until)), output_format, output, chart, show_sql, max_rows)


@report_app.command("lineup")
def lineup(items: Annotated[list[str] | None, typer.Option("--item", help="An item to present (repeat); "
                                                           "default: chosen from everything. 直播商品。")] = None,
           workspace: WorkspaceOption = None, engine: EngineOption = None, level: LevelOption = "product",
           slots: Annotated[int, typer.Option(help="Items the stream presents. 位次数。")] = 12,
           min_lift: Annotated[float, typer.Option(help="Lift an add-on needs. 连带款最小提升度。")] = 1.5,
           min_support: SupportOption = None, since: SinceOption = None, until: UntilOption = None,
           output_format: FormatOption = "table", output: OutputOption = None, chart: ChartOption = None,
           show_sql: SqlOption = False, max_rows: MaxRowsOption = 50) -> None:
    """A livestream line-up: traffic drivers first, each followed by its add-ons. 直播排品。"""
    _run(workspace, engine, lambda e, _: livestream_lineup(e, items or None, level, slots, min_support, min_lift,
                                                           since=instant(since), until=instant(until)),
         output_format, output, chart, show_sql, max_rows)


@report_app.command("bundles")
def bundles(workspace: WorkspaceOption = None, engine: EngineOption = None, level: LevelOption = "product",
            min_support: SupportOption = None,
            min_lift: Annotated[float, typer.Option(help="Minimum lift. 最小提升度。")] = 1.5,
            min_baskets: Annotated[int, typer.Option(help="Baskets holding both, at least. 最少共同订单数。")] = 5,
            bundle_confidence: Annotated[float, typer.Option(
                help="Both attach rates at least this: a bundle, else a coupon pair. 组合装阈值。")] = 0.2,
            top: Annotated[int, typer.Option(help="Suggestions to show. 建议数。")] = 20,
            since: SinceOption = None, until: UntilOption = None, output_format: FormatOption = "table",
            output: OutputOption = None, chart: ChartOption = None, show_sql: SqlOption = False,
            max_rows: MaxRowsOption = 50) -> None:
    """Bundle and coupon-pair suggestions with expected attach rates. 组合装与优惠券搭配。"""
    _run(workspace, engine, lambda e, _: bundle_suggestions(e, level, min_support, min_lift, min_baskets,
                                                            bundle_confidence, top, instant(since), instant(until)),
         output_format, output, chart, show_sql, max_rows)


DimensionsOption = Annotated[str, typer.Option(
    "--by", help="Portrait dimensions, comma-separated. 画像维度（逗号分隔）。")]


def _dimensions(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@report_app.command("fans-vs-buyers")
def fans_vs_buyers_command(
        accounts: Annotated[list[str], typer.Option("--account", help="A social account (repeat). 社交账号。")],
        product_line: Annotated[str | None, typer.Option(help="Buyers of this product line. 产品线。")] = None,
        brand: Annotated[str | None, typer.Option(help="Buyers of this brand. 品牌。")] = None,
        subcategory: Annotated[str | None, typer.Option(help="Buyers of this subcategory. 子品类。")] = None,
        interactions: Annotated[bool, typer.Option(help="Anyone who interacted, not only followers. 含互动用户。")] = False,
        by: DimensionsOption = "age_band,gender,province,member_level",
        workspace: WorkspaceOption = None, engine: EngineOption = None, output_format: FormatOption = "table",
        output: OutputOption = None, chart: ChartOption = None, show_sql: SqlOption = False,
        max_rows: MaxRowsOption = 80) -> None:
    """Followers of social accounts against buyers: shares, TGI, divergence, verdict. 粉丝与购买者画像对比。"""
    product = {key: value for key, value in (("product_line", product_line), ("brand", brand),
                                             ("subcategory", subcategory)) if value}
    _run(workspace, engine, lambda e, ws: fans_vs_buyers(e, accounts, product=product or None,
                                                         dimensions=_dimensions(by), interactions=interactions,
                                                         timezone=ws.config.timezone),
         output_format, output, chart, show_sql, max_rows)


def _audience(text: str, where: str) -> object:
    """An audience from JSON/YAML text: {followers: [...]}, {rule: {...}}, {segment: id}, {sql: ...}."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as broken:
        raise AnalyticsError(f"cannot read {where}: {broken}.", field=where, fix='e.g. --a \'{"segment": "high_value"}\'',
                             message_zh=f"无法读取 {where}：{broken}。", fix_zh='例如 --a \'{"segment": "high_value"}\'') from None


@report_app.command("compare-audiences")
def compare_audiences_command(
        a: Annotated[str, typer.Option("--a", help='Audience A, JSON/YAML: {"followers": [...]}, {"rule": {...}}, '
                                       '{"segment": "id"} or {"sql": "SELECT person_id ..."}. 人群A。')],
        b: Annotated[str, typer.Option("--b", help="Audience B, described against A. 人群B。")],
        by: DimensionsOption = "age_band,gender,province,member_level",
        workspace: WorkspaceOption = None, engine: EngineOption = None, output_format: FormatOption = "table",
        output: OutputOption = None, chart: ChartOption = None, show_sql: SqlOption = False,
        max_rows: MaxRowsOption = 80) -> None:
    """Any two audiences' portraits side by side, with TGI and a verdict. 两个人群画像对比。"""
    _run(workspace, engine, lambda e, ws: compare_audiences(e, _audience(a, "--a"), _audience(b, "--b"),
                                                            _dimensions(by), timezone=ws.config.timezone),
         output_format, output, chart, show_sql, max_rows)


SECTIONS = ("overlap", "tags", "freshness", "ranking")


def _goal(text: str | None) -> object:
    if text is None:
        return None
    stripped = text.strip()
    return json.loads(stripped) if stripped.startswith("{") else yaml.safe_load(stripped) if ":" in stripped else stripped


def _id_columns(values: list[str] | None) -> dict[str, str] | list[str] | None:
    """`COLUMN:TYPE` pairs, or column names that are their own type."""
    if not values:
        return None
    if all(":" not in value for value in values):
        return values
    return {column: kind or column for column, _, kind in (value.partition(":") for value in values)}


@report_app.command("source-value")
def source_value(
        file: Annotated[Path | None, typer.Argument(help="A partner's CSV or Excel file; omit to rank our own "
                                                    "sources only. 合作方数据文件。")] = None,
        id_column: Annotated[list[str] | None, typer.Option(help="Identifier column, COLUMN or COLUMN:TYPE "
                                                            "(repeat); default: columns named like id types. 标识列。")] = None,
        tag_column: Annotated[list[str] | None, typer.Option(help="Tag column (repeat). 标签列。")] = None,
        score_column: Annotated[list[str] | None, typer.Option(help="Score column (repeat). 分数列。")] = None,
        time_column: Annotated[str | None, typer.Option(help="When each row was observed. 时间列。")] = None,
        encoding: Annotated[str, typer.Option(help="The CSV file's encoding. 文件编码。")] = "utf-8",
        name: Annotated[str | None, typer.Option(help="Name of the file in the warehouse. 数据名称。")] = None,
        goal: GoalOption = None, window: WindowOption = 30,
        as_of: Annotated[str | None, typer.Option(help="End of the outcome window, ISO 8601. 评估时点。")] = None,
        section: Annotated[list[str] | None, typer.Option(help="overlap, tags, freshness, ranking (repeat); "
                                                          "default all. 输出部分。")] = None,
        workspace: WorkspaceOption = None, engine: EngineOption = None, output_format: FormatOption = "table",
        output: OutputOption = None, chart: ChartOption = None, show_sql: SqlOption = False,
        max_rows: MaxRowsOption = 50) -> None:
    """What a data source is worth: overlap, tag lift, freshness, predictive rank. 数据源价值评估。"""
    chosen = section or (list(SECTIONS) if file is not None else ["ranking"])
    unknown = [s for s in chosen if s not in SECTIONS] + [s for s in chosen if s != "ranking" and file is None]
    if unknown:
        raise typer.BadParameter(f"use {', '.join(SECTIONS)} (all but ranking need a FILE) / 可选 {'、'.join(SECTIONS)}",
                                 param_hint="--section")

    def make(storage, opened):  # noqa: ANN001, ANN202
        moment = instant(as_of)
        partner = None if file is None else load_partner_file(
            storage, file, name=name, id_columns=_id_columns(id_column), tag_columns=tag_column,
            score_columns=score_column, time_column=time_column, timezone=opened.config.timezone,
            encoding=encoding, workspace=opened)
        parts = {"overlap": lambda: partner_overlap(storage, partner, opened),
                 "tags": lambda: partner_tag_lift(storage, partner, _goal(goal), window, moment, opened,
                                                  opened.config.timezone),
                 "freshness": lambda: partner_freshness(storage, partner, moment),
                 "ranking": lambda: rank_sources(storage, _goal(goal), window, moment, partner, opened,
                                                 opened.config.timezone)}
        return [parts[s]() for s in SECTIONS if s in chosen]

    _run(workspace, engine, make, output_format, output, chart, show_sql, max_rows)
