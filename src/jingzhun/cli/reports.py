"""`jingzhun report NAME`: named reports, each a query the user can see and rerun."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

import typer

from jingzhun.cli.common import (
    EngineOption,
    WorkspaceOption,
    app,
    console,
    language_of,
    print_result,
)
from jingzhun.collect import inventory, inventory_checks
from jingzhun.core import open_workspace
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, TableHandle, open_engine

Report = Callable[[Engine, Workspace, datetime | None], TableHandle]

REPORTS: dict[str, tuple[str, Report]] = {
    "stock": ("Stock on hand per SKU x location / 各门店各商品库存", lambda engine, ws, as_of:
              inventory.compute_stock_on_hand(engine, as_of, timezone=ws.config.timezone)),
    "stockouts": ("Stock-out spells / 缺货时段", lambda engine, ws, as_of:
                  inventory.compute_stockouts(engine, timezone=ws.config.timezone)),
    "reconciliation": ("Cycle counts vs the ledger / 盘点对账", lambda engine, ws, as_of:
                       inventory.compute_reconciliation(engine, timezone=ws.config.timezone)),
    "inventory-checks": ("Stock data-quality findings / 库存数据质量检查", lambda engine, ws, as_of:
                         inventory_checks.compute_inventory_findings(engine, as_of=as_of,
                                                                     timezone=ws.config.timezone)),
}


@app.command()
def report(
    name: Annotated[str, typer.Argument(help="Report name; `jingzhun report list` shows them.")],
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    as_of: Annotated[str | None, typer.Option(help="Instant to report at, ISO 8601 (UTC if no zone).")] = None,
    output: Annotated[str, typer.Option("--format", "-f", help="table, csv or json.")] = "table",
    show_sql: Annotated[bool, typer.Option("--sql", help="Also print the SQL that produced it.")] = False,
    max_rows: Annotated[int, typer.Option(help="Rows to show in table format.")] = 50,
) -> None:
    """Run a named report (stock, stockouts, reconciliation, inventory-checks). 运行报表。"""
    if name == "list":
        for key, (title, _) in REPORTS.items():
            console.print(f"{key:18} {title}")
        return
    if name not in REPORTS:
        raise typer.BadParameter(f"unknown report; choose one of {', '.join(REPORTS)} / 未知报表",
                                 param_hint="NAME")
    opened = open_workspace(workspace)
    with open_engine(opened, engine) as storage:
        handle = REPORTS[name][1](storage, opened, instant(as_of))
        result = handle.to_arrow()
    print_result(result, output, max_rows, language_of(opened))
    if show_sql:
        console.print(handle.sql, markup=False, highlight=False)


def instant(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter("use ISO 8601, e.g. 2026-10-31T20:00:00+08:00 / 请使用 ISO 8601 格式",
                                 param_hint="--as-of") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
