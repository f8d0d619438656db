"""`jingzhun journey …`: create, list, run, pause and resume journeys, and see where everyone is.

`run` is what a scheduler calls every few minutes (or `jingzhun campaign run --due`, which
runs due campaigns and every active journey): it enters new persons, moves everyone who can
move, and sends the messages; it is safe to rerun at any time. While `jingzhun serve` runs,
its loader runs the journeys itself (docs/journeys.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import pandas as pd
import pyarrow as pa
import typer

from jingzhun.activation import (
    JourneyRun,
    RunReport,
    journey_paths,
    journey_status,
    list_journeys,
    read_journey_file,
    run_due,
    run_journeys,
    save_journey,
    set_journey_status,
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
from jingzhun.cli.reports import instant
from jingzhun.core import Workspace, open_workspace, t
from jingzhun.core.i18n import MESSAGES
from jingzhun.engine import open_engine
from jingzhun.schema import migrate

JOURNEY_MESSAGES: dict[str, dict[str, str]] = {
    "journey.saved": {"zh": "已保存旅程 {journey}（版本 {version}）", "en": "Saved journey {journey} (version {version})"},
    "journey.none": {"zh": "还没有旅程；用 `jingzhun journey create FILE` 创建。",
                     "en": "No journeys yet; create one with `jingzhun journey create FILE`."},
    "journey.ran": {"zh": "旅程 {journey}：进入 {entered} 人（对照组 {held_out}），移动 {moves}，"
                          "新消息 {planned}；发送 {sent}，失败 {failed}，未知 {unknown}（{seconds:.1f} 秒）",
                    "en": "Journey {journey}: {entered} entered ({held_out} held out), moves {moves}, "
                          "new messages {planned}; sent {sent}, failed {failed}, unknown {unknown} ({seconds:.1f} s)"},
    "journey.paused_note": {"zh": "旅程 {journey} 已暂停，未执行。", "en": "Journey {journey} is paused; nothing ran."},
    "journey.status": {"zh": "旅程 {journey} 现为 {status}", "en": "Journey {journey} is now {status}"},
    "journey.header": {"zh": "旅程 {journey}（版本 {version}，{status}）：各步骤人数",
                       "en": "Journey {journey} (version {version}, {status}): persons per step"},
    "journey.messages": {"zh": "各消息步骤的发送情况", "en": "What each message step sent"},
    "journey.failed": {"zh": "旅程 {journey} 运行失败：{error}", "en": "Journey {journey} failed: {error}"},
    "journey.nothing_due": {"zh": "现在没有到期的活动或旅程。", "en": "Nothing is due now: no campaign or journey."},
}
MESSAGES.update(JOURNEY_MESSAGES)

journey_app = typer.Typer(help="Journeys: multi-step paths after an entry. 用户旅程。", no_args_is_help=True)
app.add_typer(journey_app, name="journey")

Actor = Annotated[str, typer.Option(help="Who makes the change (audit log).")]


def _frame(frame: pd.DataFrame, output: str, language: str) -> None:
    print_result(pa.Table.from_pandas(frame, preserve_index=False), output, 10_000, language)


@journey_app.command("create")
def journey_create(
    definition: Annotated[Path, typer.Argument(help="YAML/JSON file: journey_id, entry, steps, ...")],
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    actor: Actor = "cli",
) -> None:
    """Check a journey (steps, templates, rules) and store it, or a new version. 创建或更新旅程。"""
    opened = open_workspace(workspace)
    journey = read_journey_file(definition)
    with open_engine(opened, engine) as storage:
        migrate(storage)
        version = save_journey(opened, storage, journey, actor)
    console.print(t("journey.saved", language_of(opened), journey=journey.journey_id, version=version))


@journey_app.command("list")
def journey_list(workspace: WorkspaceOption = None, engine: EngineOption = None, output: Format = "table") -> None:
    """Every journey's latest version and status. 列出旅程。"""
    opened = open_workspace(workspace)
    with open_engine(opened, engine, read_only=True) as storage:
        frame = list_journeys(storage)
    if frame.empty and output == "table":
        console.print(t("journey.none", language_of(opened)))
        return
    _frame(frame, output, language_of(opened))


@journey_app.command("run")
def journey_run(
    journey_ids: Annotated[list[str] | None, typer.Argument(metavar="[JOURNEY_ID]...",
                                                            help="Journeys to run (default: every active one).")] = None,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    now: Annotated[str | None, typer.Option("--now", help="Run as of this instant (ISO 8601; backfills, tests).")] = None,
    send: Annotated[bool, typer.Option(help="Send the messages (--no-send: plan only).")] = True,
) -> None:
    """Enter new persons, move everyone who can move, send the messages (safe to rerun). 运行旅程。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    with open_engine(opened, engine) as storage:
        migrate(storage)
        outcomes = run_journeys(opened, storage, journey_ids or None, now=instant(now), send=send)
    failures = [outcome for outcome in outcomes.values() if isinstance(outcome, Exception)]
    for journey_id, outcome in outcomes.items():
        if isinstance(outcome, Exception):
            console.print(t("journey.failed", language, journey=journey_id, error=outcome), highlight=False)
        else:
            print_journey_run(outcome, language)
    if failures:
        raise failures[0]


def print_journey_run(report: JourneyRun, language: str) -> None:
    """One line per journey run (also used by `campaign run --due`)."""
    if "paused" in report.notes:
        console.print(t("journey.paused_note", language, journey=report.journey_id))
        return
    moves = ", ".join(f"{k} {n}" for k, n in sorted(report.moves.items())) or "—"
    planned = ", ".join(f"{k} {n}" for k, n in sorted(report.planned.items())) or "—"
    console.print(t("journey.ran", language, journey=report.journey_id, entered=report.entered,
                    held_out=report.held_out, moves=moves, planned=planned, sent=report.sent, failed=report.failed,
                    unknown=report.unknown, seconds=report.seconds), highlight=False)


@journey_app.command("status")
def journey_status_command(
    journey_id: str,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    person: Annotated[str | None, typer.Option(help="Show this person's path instead.")] = None,
    output: Format = "table",
    show_sql: Annotated[bool, typer.Option("--sql", help="Also print the SQL behind the numbers.")] = False,
) -> None:
    """Persons per step and status, and what each message step sent (or one person's path). 旅程状态。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    with open_engine(opened, engine, read_only=True) as storage:
        if person is not None:
            _frame(journey_paths(storage, journey_id, person), output, language)
            return
        status = journey_status(storage, journey_id)
    if output == "table":
        console.print(t("journey.header", language, journey=journey_id, version=status.version, status=status.status))
    _frame(status.steps, output, language)
    if output == "table":
        console.print(t("journey.messages", language))
    _frame(status.messages, output, language)
    if show_sql:
        for name, sql in status.sql.items():
            console.print(f"-- {name}\n{sql}", highlight=False, soft_wrap=True)


def _set_status(journey_id: str, status: str, workspace: Path | None, engine: str | None, actor: str) -> None:
    opened = open_workspace(workspace)
    with open_engine(opened, engine) as storage:
        migrate(storage)
        set_journey_status(storage, journey_id, status, actor)
    console.print(t("journey.status", language_of(opened), journey=journey_id, status=status))


@journey_app.command("pause")
def journey_pause(journey_id: str, workspace: WorkspaceOption = None, engine: EngineOption = None,
                  actor: Actor = "cli") -> None:
    """Pause a journey: nobody enters, moves or gets a message until it resumes. 暂停旅程。"""
    _set_status(journey_id, "paused", workspace, engine, actor)


@journey_app.command("resume")
def journey_resume(journey_id: str, workspace: WorkspaceOption = None, engine: EngineOption = None,
                   actor: Actor = "cli") -> None:
    """Resume a paused journey (waits that ended meanwhile move on at the next run). 恢复旅程。"""
    _set_status(journey_id, "active", workspace, engine, actor)


def run_everything_due(workspace: Workspace, engine: str | None, actor: str,
                       print_campaign: Callable[[str, RunReport, str], None]) -> None:
    """`jingzhun campaign run --due`: every due campaign (at once, each on its own connection),
    then every active journey; the first error is raised after the others ran."""
    language = language_of(workspace)
    with open_engine(workspace, engine) as storage:
        migrate(storage)
        done = run_due(workspace, storage, lambda: open_engine(workspace, engine))
    failures = []
    for campaign_id, outcome in done.campaigns.items():
        if isinstance(outcome, Exception):
            failures.append(outcome)
        else:
            print_campaign(campaign_id, outcome, language)  # type: ignore[arg-type]
    for journey_id, outcome in done.journeys.items():
        if isinstance(outcome, Exception):
            console.print(t("journey.failed", language, journey=journey_id, error=outcome), highlight=False)
            failures.append(outcome)
        else:
            print_journey_run(outcome, language)  # type: ignore[arg-type]
    if not done.campaigns and not done.journeys:
        console.print(t("journey.nothing_due", language))
    if failures:
        raise failures[0]
