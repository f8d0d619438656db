"""`jingzhun measure …`: campaign KPIs, lift against the holdout, attribution, the channel budget,
KPI alerts, and test planning — each with the SQL behind its numbers (`--sql`).

Reading commands open the database read-only; `alerts` writes the history of what fired.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import pandas as pd
import pyarrow as pa
import typer

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
from jingzhun.core import open_workspace
from jingzhun.engine import open_engine
from jingzhun.measure import (
    MODELS,
    compute_attribution,
    evaluate_alerts,
    load_measure_settings,
    measure_lift,
    minimum_detectable_lift,
    plan_budget,
    read_kpis,
    sample_size,
)
from jingzhun.schema import migrate

measure_app = typer.Typer(help="Measure: KPIs, lift, attribution, budget, alerts. 效果度量。", no_args_is_help=True)
app.add_typer(measure_app, name="measure")

MaxRows = Annotated[int, typer.Option(help="Rows to show in table format.")]


def _show(frame: pd.DataFrame, output: str, language: str, max_rows: int = 50) -> None:
    print_result(pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False), output, max_rows, language)


def _sql(queries: dict[str, str], shown: bool) -> None:
    for name, text in queries.items() if shown else ():
        console.print(f"-- {name}\n{text.strip()};", markup=False, highlight=False)


def _rounded(frame: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    numbers = frame.select_dtypes("number").columns
    return frame.assign(**{c: frame[c].round(digits) for c in numbers})


@measure_app.command("kpis")
def measure_kpis(
    campaign: Annotated[str | None, typer.Argument(help="One campaign; default: all.")] = None,
    by: Annotated[str, typer.Option(help="Comma-separated: campaign_id, channel, segment_id, day, arm, origin.")]
    = "campaign_id,channel,arm",
    since: Annotated[str | None, typer.Option(help="First local day, YYYY-MM-DD.")] = None,
    until: Annotated[str | None, typer.Option(help="Last local day, YYYY-MM-DD.")] = None,
    workspace: WorkspaceOption = None, engine: EngineOption = None, output: Format = "table",
    show_sql: ShowSql = False, max_rows: MaxRows = 50,
) -> None:
    """Sent, delivered, opened, clicked (CTR), converted (CVR), GMV, cost, ROI. 活动指标。"""
    opened = open_workspace(workspace)
    with open_engine(opened, engine, read_only=True) as storage:
        report = read_kpis(storage, [b.strip() for b in by.split(",") if b.strip()], campaign,
                           dt.date.fromisoformat(since) if since else None,
                           dt.date.fromisoformat(until) if until else None)
    frame = report.frame
    if output == "table":  # what fits a terminal; csv and json keep every column
        frame = frame[[c for c in frame.columns if c not in ("failed", "opened", "unsubscribed", "orders")]]
    _show(_rounded(frame), output, language_of(opened), max_rows)
    _sql({"kpis": report.sql}, show_sql)


@measure_app.command("lift")
def measure_lift_command(
    campaigns: Annotated[list[str] | None, typer.Argument(help="Campaign ids; default: every campaign.")] = None,
    pool: Annotated[bool, typer.Option(help="One row for the campaigns together.")] = False,
    population: Annotated[str | None, typer.Option(help="eligible (per protocol) or all (intent to treat).")] = None,
    workspace: WorkspaceOption = None, engine: EngineOption = None, output: Format = "table",
    show_sql: ShowSql = False, max_rows: MaxRows = 50,
) -> None:
    """Lift against the holdout with intervals, p-values and a verdict. 活动提升（对照组）。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    with open_engine(opened, engine, read_only=True) as storage:
        report = measure_lift(opened, storage, campaigns or None, pool=pool, population=population)
    frame = report.frame
    if output == "table":
        keep = ["campaign_id", "units_treatment", "units_control", "rate_t", "rate_c", "lift", "lift_low",
                "lift_high", "p_value", "status", "verdict"]
        frame = frame[[c for c in keep if c in frame]]
    _show(_rounded(frame), output, language, max_rows)
    if output == "table":
        column = "verdict_zh" if language == "zh" else "verdict_en"
        for row in report.frame.head(max_rows).itertuples():
            console.print(f"• {row.campaign_id}: {getattr(row, column)}", markup=False, highlight=False)
    _sql(report.sql, show_sql)


@measure_app.command("plan")
def measure_plan(
    baseline: Annotated[float, typer.Option(help="Expected conversion of the holdout, e.g. 0.03.")],
    lift: Annotated[float | None, typer.Option(help="Relative lift to detect, e.g. 0.2: the sample size.")] = None,
    treated: Annotated[int | None, typer.Option(help="Treated units: the minimum detectable lift.")] = None,
    holdout: Annotated[float, typer.Option(help="Share held out.")] = 0.1,
    power: Annotated[float, typer.Option(help="Power.")] = 0.8,
    alpha: Annotated[float, typer.Option(help="Significance level.")] = 0.05,
) -> None:
    """Sample size for a lift, or the smallest lift a given size detects. 样本量与最小可检测效应。"""
    if lift is not None:
        sizes = sample_size(baseline, lift, alpha, power, holdout)
        console.print(f"treatment {sizes['treatment']:,} · control {sizes['control']:,} · total {sizes['total']:,}")
    if treated is not None:
        control = round(treated * holdout / (1 - holdout))
        mde = minimum_detectable_lift(baseline, treated, control, alpha, power)
        console.print(f"minimum detectable lift: {mde:+.1%} (treatment {treated:,}, control {control:,})")
    if lift is None and treated is None:
        raise typer.BadParameter("give --lift (for a sample size) or --treated (for the detectable lift) / "
                                 "请给出 --lift 或 --treated", param_hint="--lift")


@measure_app.command("attribution")
def measure_attribution(
    model: Annotated[str, typer.Option(help=f"One of {', '.join(MODELS)}, or all.")] = "all",
    by: Annotated[str, typer.Option(help="touch_channel or campaign.")] = "touch_channel",
    workspace: WorkspaceOption = None, engine: EngineOption = None, output: Format = "table",
    show_sql: ShowSql = False, max_rows: MaxRows = 50,
) -> None:
    """Credit per touch channel (or campaign) by each model, with ROAS for ad channels. 归因。"""
    opened = open_workspace(workspace)
    with open_engine(opened, engine, read_only=True) as storage:
        result = compute_attribution(opened, storage)
        spend = storage.query("SELECT 'ad:' || channel AS touch_channel, CAST(SUM(spend) AS DOUBLE) AS spend "
                              "FROM ad_spend GROUP BY channel").to_pandas()
    credits = result.credits if model == "all" else result.credits[result.credits.model == model]
    keys = ["touch_channel"] if by == "touch_channel" else ["touch_channel", "campaign_id"]
    frame = credits.groupby([*keys, "model"], dropna=False)[["conversions", "value"]].sum().reset_index()
    frame = frame.merge(spend, on="touch_channel", how="left")
    frame["roas"] = frame["value"] / frame["spend"]
    _show(_rounded(frame.sort_values([*keys, "model"]), 2), output, language_of(opened), max_rows)
    _sql(result.sql, show_sql)


@measure_app.command("budget")
def measure_budget(
    total: Annotated[float | None, typer.Option(help="Daily budget to split; default: today's total.")] = None,
    bootstrap: Annotated[int | None, typer.Option(help="Bootstrap refits for the intervals.")] = None,
    workspace: WorkspaceOption = None, engine: EngineOption = None, output: Format = "table",
    show_sql: ShowSql = False,
) -> None:
    """Fit each ad channel's response curve and split the budget for the most return. 渠道预算分配。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    settings = load_measure_settings(opened).budget
    if bootstrap is not None:
        settings = settings.model_copy(update={"bootstrap": bootstrap})
    with open_engine(opened, engine, read_only=True) as storage:
        plan = plan_budget(opened, storage, total, settings)
    curves, allocation = plan.curves, plan.allocation
    if output == "table":
        curves = curves[["channel", "decay", "half_saturation", "max_effect", "r2_log"]]
        allocation = allocation[["channel", "current", "recommended", "change_share", "marginal_roi_current",
                                 "marginal_roi_recommended"]]
    _show(_rounded(curves, 3), output, language)
    _show(_rounded(allocation, 2), output, language)
    if output == "table":
        zh = (f"每日总预算 {plan.total:,.0f}：预计每日多带来 {plan.gain_per_day:,.0f}（90% 区间 {plan.gain_low:,.0f} 至 "
              f"{plan.gain_high:,.0f}；{plan.gain_positive:.0%} 的自助抽样中为正）")
        en = (f"Daily total {plan.total:,.0f}: expected {plan.gain_per_day:,.0f} more a day (90% interval "
              f"{plan.gain_low:,.0f} to {plan.gain_high:,.0f}; positive in {plan.gain_positive:.0%} of bootstrap draws)")
        console.print(zh if language == "zh" else en, markup=False, highlight=False)
    _sql(plan.sql, show_sql)


@measure_app.command("alerts")
def measure_alerts(
    day: Annotated[str | None, typer.Option(help="Judge this local day (YYYY-MM-DD); default: each KPI's latest.")]
    = None,
    notify: Annotated[bool, typer.Option(help="Send the notices of alerts that fire.")] = True,
    workspace: WorkspaceOption = None, engine: EngineOption = None, output: Format = "table",
    show_sql: ShowSql = False,
) -> None:
    """Judge every alert rule; fire, drill down and notify. KPI 告警。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    with open_engine(opened, engine) as storage:
        migrate(storage)
        run = evaluate_alerts(opened, storage, dt.date.fromisoformat(day) if day else None, notify=notify)
    _show(_rounded(run.judgements), output, language)
    for fired in run.fired if output == "table" else ():
        console.print(fired["message_zh"] if language == "zh" else fired["message_en"], markup=False, highlight=False)
        console.print(f"  notice: {fired['notify_status']}" + (f" ({fired['notify_error']})" if fired["notify_error"]
                                                               else ""), markup=False, highlight=False)
    _sql(run.sql, show_sql)
