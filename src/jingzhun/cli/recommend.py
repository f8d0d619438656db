"""`jingzhun recommend …`: a person's recommendations, a product's related products, and the
offline evaluation of the recommender against a popularity baseline."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
import pyarrow as pa
import typer

from jingzhun.activation import evaluate_recommender, recommend_for, related_products
from jingzhun.cli.common import (
    EngineOption,
    WorkspaceOption,
    app,
    console,
    language_of,
    print_result,
)
from jingzhun.cli.common import FormatOption as Format
from jingzhun.cli.common import ShowSqlOption as ShowSql
from jingzhun.cli.reports import instant
from jingzhun.core import open_workspace
from jingzhun.engine import open_engine

recommend_app = typer.Typer(help="Recommendations: for a person, beside a product, and how good they are. 商品推荐。",
                            no_args_is_help=True)
app.add_typer(recommend_app, name="recommend")

TopK = Annotated[int, typer.Option("--k", "-k", help="How many to show.")]


def _shown(frame: pd.DataFrame, output: str, language: str) -> None:
    """The rows, with the reason in the reader's language (both in CSV and JSON)."""
    if output == "table":
        reason = "reason_zh" if language == "zh" else "reason_en"
        keep = [c for c in frame.columns if c not in ("reason_zh", "reason_en", "computed_at")] + [reason]
        frame = frame[keep]
    print_result(pa.Table.from_pandas(frame, preserve_index=False), output, 10_000, language)


def _sql(text: str, shown: bool) -> None:
    if shown:
        console.print(text, markup=False, highlight=False)


@recommend_app.command("for")
def recommend_person(
    identifier: Annotated[str, typer.Argument(
        metavar="ID", help="A person id or any identifier: TYPE:VALUE (phone:138…, member_id:JZ…) or a bare value.")],
    kind: Annotated[str, typer.Option(help="guess_you_like (猜你喜欢), popular (热门推荐), new_arrival (新品上市) "
                                           "or all.")] = "guess_you_like",
    k: TopK = 10,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    output: Format = "table",
    show_sql: ShowSql = False,
) -> None:
    """One customer's recommendations, each with why. 某位顾客的推荐及理由。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    with open_engine(opened, engine, read_only=True) as storage:
        found = recommend_for(storage, identifier, k=k, kind=kind, workspace=opened)
    if output == "table":
        console.print(f"[bold]{'客户' if language == 'zh' else 'Person'} {found.person_id}[/]")
    _shown(found.items, output, language)
    _sql(found.sql, show_sql)


@recommend_app.command("related")
def recommend_related(
    product_id: Annotated[str, typer.Argument(metavar="PRODUCT", help="A product_id from the catalogue.")],
    k: TopK = 10,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    output: Format = "table",
    show_sql: ShowSql = False,
) -> None:
    """The products to show beside a product (product pages). 相关商品。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    with open_engine(opened, engine, read_only=True) as storage:
        found = related_products(storage, product_id, k=k)
    if output == "table":
        console.print(f"[bold]{found.product_id} {found.name or ''}[/]")
    _shown(found.items, output, language)
    _sql(found.sql, show_sql)


@recommend_app.command("evaluate")
def recommend_evaluate(
    cutoff: Annotated[str | None, typer.Option(
        help="The time split (ISO 8601); default: test-days before the latest data.")] = None,
    test_days: Annotated[int | None, typer.Option(help="Days of purchases after the cut-off to test on.")] = None,
    k: Annotated[int | None, typer.Option("--k", "-k", help="List length judged.")] = None,
    folds: Annotated[int | None, typer.Option(help="Consecutive test windows, pooled (default: evaluation.folds, 2).")] = None,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    output: Format = "table",
    show_sql: ShowSql = False,
) -> None:
    """Offline test on a time split: our recommender beside the popularity baseline. 离线评估。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    with open_engine(opened, engine) as storage:
        result = evaluate_recommender(opened, storage, cutoff=instant(cutoff), test_days=test_days, k=k,
                                      folds=folds)
    if output == "table":
        cutoffs = ", ".join(f"{cutoff:%Y-%m-%d}" for cutoff in result.cutoffs)
        console.print(f"[bold]{'切分日期' if language == 'zh' else 'cut-offs'}: {cutoffs} (UTC), "
                      f"{'测试' if language == 'zh' else 'test'} {result.test_days} d, k = {result.k}[/]")
    frame = result.metrics.reset_index(names="model")
    if output == "table":
        frame = frame.round(4)
    print_result(pa.Table.from_pandas(frame, preserve_index=False), output, 10, language)
    _sql(result.sql, show_sql)
