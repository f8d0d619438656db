"""`jingzhun report NAME …`: named reports, each a query the user can see and rerun.

`report` is a command group: every report is a subcommand with its own options
(`jingzhun report stock`, `jingzhun report cube --measure gmv --by month`), and
`jingzhun report list` names them all. Analytics modules of the CLI add their
reports to `report_app`.
"""

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

report_app = typer.Typer(
    name="report", no_args_is_help=True,
    help="Named reports and analyses; `jingzhun report list` names them. 报表与分析。",
)
app.add_typer(report_app, name="report")

Report = Callable[[Engine, Workspace, datetime | None], TableHandle]

STOCK_REPORTS: dict[str, tuple[str, Report]] = {
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

AsOfOption = Annotated[str | None, typer.Option(help="Instant to report at, ISO 8601 (UTC if no zone).")]
TableFormatOption = Annotated[str, typer.Option("--format", "-f", help="table, csv or json.")]
ShowSqlOption = Annotated[bool, typer.Option("--sql", help="Also print the SQL that produced it.")]
RowsOption = Annotated[int, typer.Option(help="Rows to show in table format.")]


@report_app.command("list")
def list_reports() -> None:
    """Every report and what it shows. 列出所有报表。"""
    commands = typer.main.get_command(report_app).commands  # a group: its subcommands by name
    for name in sorted(commands):
        if name != "list":
            summary = (commands[name].help or "").strip().splitlines()[0]
            console.print(f"{name:18} {summary}", markup=False, highlight=False)


def _stock_command(name: str, title: str, report: Report) -> None:
    def run(workspace: WorkspaceOption = None, engine: EngineOption = None, as_of: AsOfOption = None,
            output: TableFormatOption = "table", show_sql: ShowSqlOption = False,
            max_rows: RowsOption = 50) -> None:
        opened = open_workspace(workspace)
        with open_engine(opened, engine) as storage:
            handle = report(storage, opened, instant(as_of))
            result = handle.to_arrow()
        print_result(result, output, max_rows, language_of(opened))
        if show_sql:
            console.print(handle.sql, markup=False, highlight=False)

    run.__doc__ = f"{title}."
    report_app.command(name)(run)


for _name, (_title, _report) in STOCK_REPORTS.items():
    _stock_command(_name, _title, _report)


def instant(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter("use ISO 8601, e.g. 2026-10-31T20:00:00+08:00 / 请使用 ISO 8601 格式",
                                 param_hint="--as-of") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
