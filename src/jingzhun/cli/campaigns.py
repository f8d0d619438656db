"""`jingzhun campaign …`: create, list, run, pause and resume campaigns, and read their results.

`run` plans the due run under the send policy and sends through the adapters of
definitions/delivery.yaml; it is safe to rerun at any time (a crash resumes where it
stopped, and nothing is sent twice). DuckDB allows one writer process: stop `jingzhun
serve` while a campaign runs on the same workspace (docs/campaigns.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import pyarrow as pa
import typer

from jingzhun.activation import (
    RunReport,
    campaign_results,
    check_template,
    check_trigger,
    list_campaigns,
    read_campaign_file,
    run_campaigns,
    save_campaign,
    set_campaign_status,
)
from jingzhun.cli.common import (
    EngineOption,
    WorkspaceOption,
    app,
    console,
    language_of,
    print_result,
)
from jingzhun.cli.common import FormatOption as Format
from jingzhun.core import open_workspace, t
from jingzhun.core.i18n import MESSAGES
from jingzhun.engine import open_engine
from jingzhun.schema import migrate

CAMPAIGN_MESSAGES: dict[str, dict[str, str]] = {
    "campaign.saved": {"zh": "已保存活动 {campaign}（版本 {version}）", "en": "Saved campaign {campaign} (version {version})"},
    "campaign.none": {"zh": "还没有活动；用 `jingzhun campaign create FILE` 创建。",
                      "en": "No campaigns yet; create one with `jingzhun campaign create FILE`."},
    "campaign.planned": {"zh": "活动 {campaign} 第 {runs} 轮已排期：{counts}",
                         "en": "Campaign {campaign} run {runs} planned: {counts}"},
    "campaign.sent": {"zh": "已发送 {sent} 条，失败 {failed} 条，状态未知 {unknown} 条，延后 {deferred} 条（{seconds:.1f} 秒）",
                      "en": "Sent {sent}, failed {failed}, unknown {unknown}, deferred {deferred} ({seconds:.1f} s)"},
    "campaign.not_due": {"zh": "还没到活动的发送时间。", "en": "The campaign is not due yet."},
    "campaign.paused_mid": {"zh": "活动已暂停，其余消息保持排队，恢复后继续发送。",
                            "en": "The campaign was paused; the rest stays queued until it is resumed."},
    "campaign.quiet_hours": {"zh": "进入免打扰时段：其余消息已按设置延后或取消。",
                             "en": "Quiet hours began: the rest was deferred or dropped, as the campaign says."},
    "campaign.status": {"zh": "活动 {campaign} 现为 {status}", "en": "Campaign {campaign} is now {status}"},
    "campaign.reasons": {"zh": "未发送原因", "en": "Why not sent"},
}
MESSAGES.update(CAMPAIGN_MESSAGES)

campaign_app = typer.Typer(help="Campaigns: create, run, pause, results. 营销活动。", no_args_is_help=True)
app.add_typer(campaign_app, name="campaign")

# What fits a terminal; csv and json have every column (pending, unknown, cost, rates too).
TABLE_COLUMNS = ("run_id", "channel", "arm", "audience", "held_out", "suppressed", "deferred", "sent", "failed",
                 "opened", "clicked")
Actor = Annotated[str, typer.Option(help="Who makes the change (audit log).")]


def _frame(frame: pd.DataFrame, output: str, language: str) -> None:
    print_result(pa.Table.from_pandas(frame, preserve_index=False), output, 10_000, language)


@campaign_app.command("create")
def campaign_create(
    definition: Annotated[Path, typer.Argument(help="YAML/JSON file: campaign_id, audience, template_id, ...")],
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    actor: Actor = "cli",
) -> None:
    """Create a campaign, or a new version of it, from a definition file. 创建或更新活动。"""
    opened = open_workspace(workspace)
    campaign = read_campaign_file(definition)
    check_template(opened, campaign)
    with open_engine(opened, engine) as storage:
        migrate(storage)
        check_trigger(opened, storage, campaign)
        version = save_campaign(storage, campaign, actor)
    console.print(t("campaign.saved", language_of(opened), campaign=campaign.campaign_id, version=version))


@campaign_app.command("list")
def campaign_list(workspace: WorkspaceOption = None, engine: EngineOption = None, output: Format = "table") -> None:
    """Every campaign's latest version and status. 列出活动。"""
    opened = open_workspace(workspace)
    with open_engine(opened, engine, read_only=True) as storage:
        frame = list_campaigns(storage)
    if frame.empty and output == "table":
        console.print(t("campaign.none", language_of(opened)))
        return
    _frame(frame, output, language_of(opened))


@campaign_app.command("run")
def campaign_run(
    campaign_ids: Annotated[list[str] | None, typer.Argument(metavar="[CAMPAIGN_ID]...",
                                                             help="Campaigns to run (at once).")] = None,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    actor: Actor = "cli",
    due: Annotated[bool, typer.Option("--due", help="Run everything due now: campaigns with an occurrence or "
                                      "messages waiting (delayed triggers too), and every active journey.")] = False,
) -> None:
    """Plan the due run and send (resumes an interrupted one; never sends twice). 执行活动。

    Several campaigns run at once, each on its own connection; frequency caps hold across them.
    `--due` (for cron) finds what is due itself (docs/journeys.md).
    """
    opened = open_workspace(workspace)
    language = language_of(opened)
    if due or not campaign_ids:
        from jingzhun.cli.journeys import run_everything_due

        if not due:
            raise typer.BadParameter("name the campaigns to run, or pass --due / 请填写活动 ID，或使用 --due")
        run_everything_due(opened, engine, actor, _print_report)
        return
    with open_engine(opened, engine) as storage:
        migrate(storage)
        outcomes = run_campaigns(opened, campaign_ids, lambda: open_engine(opened, engine), actor=actor)
        failures = [outcome for outcome in outcomes.values() if isinstance(outcome, Exception)]
        for campaign_id, outcome in outcomes.items():
            if not isinstance(outcome, Exception):
                _print_report(campaign_id, outcome, language)
    if failures:
        raise failures[0]


def _print_report(campaign_id: str, report: RunReport, language: str) -> None:
    if report.planned or report.runs:
        counts = ", ".join(f"{status} {n}" for status, n in sorted(report.planned.items())) or "—"
        console.print(t("campaign.planned", language, campaign=campaign_id, runs=", ".join(report.runs) or "—",
                        counts=counts))
    for note in dict.fromkeys(report.notes):
        console.print(t(f"campaign.{'paused_mid' if note == 'paused' else note}", language))
    console.print(t("campaign.sent", language, sent=report.sent, failed=report.failed, unknown=report.unknown,
                    deferred=report.deferred, seconds=report.seconds))


@campaign_app.command("results")
def campaign_results_command(
    campaign_id: str,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    output: Format = "table",
    show_sql: Annotated[bool, typer.Option("--sql", help="Also print the SQL behind the numbers.")] = False,
) -> None:
    """Per run, channel and arm: sent, left out (and why), opened, clicked. 活动结果。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    with open_engine(opened, engine, read_only=True) as storage:
        results = campaign_results(storage, campaign_id)
    funnel = results.funnel[[c for c in TABLE_COLUMNS if c in results.funnel]] if output == "table" else results.funnel
    _frame(funnel, output, language)
    if output == "table" and not results.reasons.empty:
        console.print(t("campaign.reasons", language))
        _frame(results.reasons, output, language)
    if show_sql:
        for name, sql in results.sql.items():
            console.print(f"-- {name}\n{sql}", markup=False, highlight=False)


@campaign_app.command("pause")
def campaign_pause(campaign_id: str, workspace: WorkspaceOption = None, engine: EngineOption = None,
                   actor: Actor = "cli") -> None:
    """Pause: nothing new is planned and a running send stops between batches. 暂停活动。"""
    _set_status(campaign_id, "paused", workspace, engine, actor)


@campaign_app.command("resume")
def campaign_resume(campaign_id: str, workspace: WorkspaceOption = None, engine: EngineOption = None,
                    actor: Actor = "cli") -> None:
    """Resume a paused campaign (run it again to send what is queued). 恢复活动。"""
    _set_status(campaign_id, "active", workspace, engine, actor)


def _set_status(campaign_id: str, status: str, workspace: Path | None, engine: str | None, actor: str) -> None:
    opened = open_workspace(workspace)
    with open_engine(opened, engine) as storage:
        set_campaign_status(storage, campaign_id, status, actor)
    console.print(t("campaign.status", language_of(opened), campaign=campaign_id, status=status))
