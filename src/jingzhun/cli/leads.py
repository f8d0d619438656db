"""`jingzhun lead score|assign|list|outcome`: sales leads scored, handed to reps, and closed.

Leads arrive with `jingzhun import prospects FILE.csv`; reps, quotas and territories are
in `definitions/sales.yaml` (docs/leads.md). The writing commands wait (`--wait`) while
another process holds the database, so two `lead assign` runs started together (two cron
jobs, two terminals) take turns, and the second finds the quota the first used.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated

import duckdb
import pyarrow as pa
import typer

from jingzhun.activation import (
    assign_leads,
    list_leads,
    load_sales_settings,
    record_lead_outcome,
    score_leads,
)
from jingzhun.cli.common import (
    EngineOption,
    WorkspaceOption,
    app,
    console,
    errors,
    language_of,
    print_result,
)
from jingzhun.cli.common import FormatOption as Format
from jingzhun.cli.common import ShowSqlOption as ShowSql
from jingzhun.cli.reports import instant
from jingzhun.core import open_workspace
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, open_engine

lead_app = typer.Typer(help="Sales leads: score, assign to reps, record outcomes. 销售线索评分与分配。",
                       no_args_is_help=True)
app.add_typer(lead_app, name="lead")

At = Annotated[str | None, typer.Option(
    "--at", help="The instant it happens (ISO 8601), to replay a past day; default now.")]
Wait = Annotated[float, typer.Option(
    help="Seconds to wait while another process holds the database. 数据库被占用时的等待秒数。")]


def _storage(workspace: Workspace, kind: str | None, wait: float) -> Engine:
    """The workspace's engine, waiting up to `wait` seconds while DuckDB's file lock is held
    by another process (said once on stderr; past it, the lock error is reported as usual)."""
    deadline, said = time.monotonic() + wait, False
    while True:
        try:
            return open_engine(workspace, kind)
        except duckdb.IOException as failure:
            if "lock" not in str(failure).lower() or time.monotonic() >= deadline:
                raise
            if not said:
                errors.print(f"数据库正被另一进程占用，最多等待 {wait:g} 秒…" if language_of(workspace) == "zh"
                             else f"the database is held by another process; waiting up to {wait:g} s…",
                             highlight=False)
                said = True
            time.sleep(0.1)


@lead_app.command("score")
def lead_score(
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="Score as of this instant (ISO 8601); default the latest data.")] = None,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    output: Format = "table",
    show_sql: ShowSql = False,
    wait: Wait = 60.0,
) -> None:
    """Score every lead (freshness, intent, fit) with a model fitted on past outcomes. 线索评分。"""
    opened = open_workspace(workspace)
    zh = language_of(opened) == "zh"
    with _storage(opened, engine, wait) as storage:
        result = score_leads(opened, storage, as_of=instant(as_of))
    summary = {"as_of": result.as_of.isoformat(), "model_version": result.model_version, "statuses": result.statuses,
               "test": result.test.as_json() if result.test else None, "coefficients": result.coefficients()}
    if output == "json":
        sys.stdout.write(json.dumps(summary, ensure_ascii=False) + "\n")
    else:
        statuses = ", ".join(f"{k} {v:,}" for k, v in result.statuses.items())
        console.print(f"[bold]{'线索' if zh else 'leads'}[/]: {statuses} · {result.model_version}", highlight=False)
        if result.test:
            test = result.test
            console.print(("时间切分测试" if zh else "time-split test") + f" ({test.train_rows:,} / {test.test_rows:,}): "
                          f"AUC {test.auc:.3f} · {'仅新鲜度' if zh else 'freshness only'} {test.freshness_auc:.3f} · "
                          f"Brier {test.brier:.3f} ({'基准' if zh else 'base rate'} {test.base_rate_brier:.3f}) · "
                          f"ECE {test.calibration_error:.3f}", highlight=False)
        else:
            console.print("已结案的线索太少，未拟合模型：按新鲜度排序" if zh
                          else "too few decided leads for a model: ranked by freshness")
        rows = [{"feature": k, "coefficient": v} for k, v in result.coefficients().items()]
        print_result(pa.Table.from_pylist(rows), "table", 100, language_of(opened))
        if not result.statuses.get("open"):
            console.print(f"截至 {result.as_of:%Y-%m-%d %H:%M} 没有进行中的线索；用 --as-of 重放更早的一天"
                          if zh else f"no lead is open as of {result.as_of:%Y-%m-%d %H:%M}: nothing to assign; "
                          "replay an earlier day with --as-of", highlight=False)
    if show_sql:
        for name, text in result.sql.items():
            console.print(f"-- {name}\n{text}", markup=False, highlight=False)


@lead_app.command("assign")
def lead_assign(
    at: At = None,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    output: Format = "table",
    show_sql: ShowSql = False,
    wait: Wait = 60.0,
) -> None:
    """Hand today's (or this week's) quota of the best open leads to each rep, by territory. 分配线索。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    with _storage(opened, engine, wait) as storage:
        result = assign_leads(opened, storage, now=instant(at))
    if output == "table":
        per_rep = ", ".join(f"{rep} {count}" for rep, count in result.per_rep.items())
        console.print(f"[bold]{'已分配' if language == 'zh' else 'assigned'}[/]: {per_rep}", highlight=False)
    columns = ["lead_id", "rep_id", "territory", "score", "contact_name", "city", "intent_tags", "attempt"]
    frame = result.assignments[[c for c in columns if c in result.assignments.columns]]
    print_result(pa.Table.from_pandas(frame, preserve_index=False), output, 1000, language)
    if show_sql:
        console.print(result.sql, markup=False, highlight=False)


@lead_app.command("list")
def lead_list(
    status: Annotated[str, typer.Option(help="open, won, lost or all.")] = "open",
    rep: Annotated[str | None, typer.Option(help="Only the leads this rep holds.")] = None,
    assigned: Annotated[bool | None, typer.Option("--assigned/--unassigned", help="Held by a rep or not.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    output: Format = "table",
    show_sql: ShowSql = False,
) -> None:
    """Leads, best first, with who holds them. 线索列表。"""
    opened = open_workspace(workspace)
    settings = load_sales_settings(opened)
    with open_engine(opened, engine, read_only=True) as storage:
        frame, sql = list_leads(storage, status=None if status == "all" else status, rep_id=rep, assigned=assigned,
                                limit=limit, settings=settings)
    if output == "table" and not frame.empty:
        frame = frame.drop(columns=["freshness_part", "intent_part", "fit_part", "model_version"]).round(3)
    print_result(pa.Table.from_pandas(frame, preserve_index=False), output, limit, language_of(opened))
    if show_sql:
        console.print(sql, markup=False, highlight=False)


@lead_app.command("outcome")
def lead_outcome(
    lead: Annotated[str, typer.Argument(metavar="LEAD", help="The lead id.")],
    outcome: Annotated[str, typer.Argument(metavar="OUTCOME", help="won, lost or no_answer.")],
    rep: Annotated[str | None, typer.Option(help="The rep recording it (checked against the assignment).")] = None,
    note: Annotated[str | None, typer.Option(help="A note kept with the outcome.")] = None,
    at: At = None,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    wait: Wait = 60.0,
) -> None:
    """Record what happened with an assigned lead; the next scoring learns from it. 记录线索结果。"""
    opened = open_workspace(workspace)
    settings = load_sales_settings(opened)
    with _storage(opened, engine, wait) as storage:
        row = record_lead_outcome(storage, lead, outcome, rep_id=rep, note=note, now=instant(at),
                                  settings=settings)
    zh = language_of(opened) == "zh"
    console.print(f"{row['lead_id']} · {row['rep_id']} · {row['outcome']} "
                  + ("已记录" if zh else "recorded"), highlight=False)
