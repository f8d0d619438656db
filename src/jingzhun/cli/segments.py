"""`jingzhun segment …`: audiences from the command line (create, preview, snapshot, changes,
export, overlap) and the tools that work on them (cluster, lookalike, insight)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import pyarrow as pa
import typer
import yaml

from jingzhun.cli.common import (
    EngineOption,
    WorkspaceOption,
    app,
    console,
    language_of,
    print_result,
    progress_bar,
    step_reporter,
)
from jingzhun.cli.common import FormatOption as Format
from jingzhun.cli.common import ShowSqlOption as ShowSql
from jingzhun.cli.reports import instant
from jingzhun.core import open_workspace, t
from jingzhun.core.i18n import MESSAGES
from jingzhun.engine import open_engine
from jingzhun.segments.audiences import (
    AudienceError,
    audience_changes,
    audience_overlap,
    export_audience,
    list_audiences,
    load_audiences,
    members_sql,
    parse_audience,
    preview_audience,
    save_audience,
    snapshot_audiences,
)
from jingzhun.segments.clustering import cluster_audience
from jingzhun.segments.insight import feature_insight
from jingzhun.segments.lookalike import find_lookalikes
from jingzhun.segments.realtime import live_changes, live_members

MESSAGES.update({
    "segment.live_now": {"zh": "实时成员（随事件更新）：{size:,} 人", "en": "Live members (updated as events arrive): {size:,}"},
})

segment_app = typer.Typer(help="Audiences: create, preview, snapshot, export, compare, expand. 人群。",
                          no_args_is_help=True)
app.add_typer(segment_app, name="segment")



def _frame(frame: pd.DataFrame, output: str, language: str, rows: int = 50) -> None:
    print_result(pa.Table.from_pandas(frame, preserve_index=False), output, rows, language)


def _sql(text: str, shown: bool) -> None:
    if shown:
        console.print(text, markup=False, highlight=False)


def _sql_parts(parts: dict[str, str], shown: bool) -> None:
    """Each named query behind a result, headed by its name."""
    for part, text in parts.items():
        _sql(f"-- {part}\n{text}", shown)


def _rule_data(rule: str | None, rule_file: Path | None) -> object:
    """A rule from --rule (JSON or YAML text) or --file (a YAML/JSON file)."""
    if (rule is None) == (rule_file is None):
        raise AudienceError("give the rule either as --rule TEXT or as --file PATH.", field="rule",
                            fix="e.g. --rule '{\"trait\": \"gender\", \"op\": \"=\", \"value\": \"F\"}'",
                            message_zh="请用 --rule 文本或 --file 文件二选一给出规则。",
                            fix_zh="例如 --rule '{\"trait\": \"gender\", \"op\": \"=\", \"value\": \"F\"}'")
    text = rule if rule is not None else Path(rule_file).read_text(encoding="utf-8")  # type: ignore[arg-type]
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as broken:
        raise AudienceError(f"cannot read the rule: {broken}.", field="rule", fix="write the rule as JSON or YAML",
                            message_zh=f"无法读取规则：{broken}。", fix_zh="请用 JSON 或 YAML 书写规则") from None


@segment_app.command("list")
def segment_list(workspace: WorkspaceOption = None, engine: EngineOption = None, output: Format = "table") -> None:
    """Every audience with its version and latest snapshot. 列出人群。"""
    opened = open_workspace(workspace)
    with open_engine(opened, engine, read_only=True) as storage:
        _frame(list_audiences(opened, storage), output, language_of(opened), 10_000)


@segment_app.command("create")
def segment_create(
    definition: Annotated[Path, typer.Argument(help="YAML/JSON file: segment_id, name_zh, name_en, rule.")],
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    actor: Annotated[str, typer.Option(help="Who makes the change (audit log).")] = "cli",
    snapshot: Annotated[bool, typer.Option(help="Also store today's members.")] = True,
) -> None:
    """Create or update an audience from a definition file, and snapshot it. 创建人群。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    audience = parse_audience(yaml.safe_load(definition.read_text(encoding="utf-8")), str(definition))
    with open_engine(opened, engine) as storage:
        version = save_audience(opened, storage, audience, actor)
        console.print(t("segment.saved", language, segment=audience.segment_id, version=version))
        if snapshot:
            result = snapshot_audiences(opened, storage, [audience.segment_id], actor=actor)
            for key, values in result.notes:
                console.print(t(key, language, **values))


@segment_app.command("preview")
def segment_preview(
    segment_id: Annotated[str | None, typer.Argument(help="An audience to size; or give --rule/--file.")] = None,
    rule: Annotated[str | None, typer.Option(help="A rule as JSON or YAML text.")] = None,
    rule_file: Annotated[Path | None, typer.Option("--file", help="A rule (or definition) file.")] = None,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    sample: Annotated[int, typer.Option(help="Members to show.")] = 10,
    show_sql: ShowSql = False,
) -> None:
    """How many persons a rule selects now, without storing it. 预估人群规模。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    with open_engine(opened, engine, read_only=True) as storage:
        if segment_id is not None:
            data: object = load_audiences(opened, storage).get(segment_id) or {"segment": segment_id}
        else:
            data = _rule_data(rule, rule_file)
            if isinstance(data, dict) and "rule" in data and "segment_id" in data:
                data = parse_audience(data)
        preview = preview_audience(opened, storage, data, sample=sample)
    console.print(t("segment.preview", language, size=preview.size, population=preview.population,
                    share=preview.share * 100, seconds=preview.seconds))
    if preview.live_members is not None:
        console.print(t("segment.live_now", language, size=preview.live_members))
    _frame(preview.sample, "table", language)
    _sql(preview.sql, show_sql)


@segment_app.command("live")
def segment_live(
    segment_id: str,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    history: Annotated[bool, typer.Option("--history", help="Every entry and exit instead of who is in now.")] = False,
    output: Format = "table",
    show_sql: ShowSql = False,
) -> None:
    """A real-time audience's members now (or its entries and exits). 实时人群成员。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    with open_engine(opened, engine, read_only=True) as storage:
        found = live_changes(storage, segment_id) if history else live_members(storage, segment_id)
    frame = found.changes if history else found.members
    if not history:
        console.print(t("segment.live_now", language, size=len(frame)))
    _frame(frame, output, language, 100)
    _sql(found.sql, show_sql)


@segment_app.command("snapshot")
def segment_snapshot(
    segment_ids: Annotated[list[str] | None, typer.Argument(metavar="[SEGMENT_ID]...", help="Default: all.")] = None,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    as_of: Annotated[str | None, typer.Option(help="Instant, ISO 8601; default the latest data.")] = None,
) -> None:
    """Store today's members of audiences, with who entered and left. 保存人群快照。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    with open_engine(opened, engine) as storage, progress_bar() as progress:
        on_step = step_reporter(progress, "segments")
        result = snapshot_audiences(opened, storage, segment_ids or None, instant(as_of), "cli", on_step)
    for key, values in result.notes:
        console.print(t(key, language, **values))


@segment_app.command("changes")
def segment_changes(
    segment_id: str,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    output: Format = "table",
    show_sql: ShowSql = False,
) -> None:
    """Who entered and who left since the snapshot before. 人群进出明细。"""
    opened = open_workspace(workspace)
    with open_engine(opened, engine, read_only=True) as storage:
        changes = audience_changes(storage, segment_id)
    console.print(f"{changes.since or '—'} → {changes.until}")
    _frame(changes.changes, output, language_of(opened), 100)
    _sql(changes.sql, show_sql)


@segment_app.command("export")
def segment_export(
    segment_id: str,
    path: Annotated[Path, typer.Argument(help="members.csv or members.xlsx")],
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    mask: Annotated[bool, typer.Option(help="Hide the middle digits of phone numbers.")] = False,
) -> None:
    """Write an audience's members to CSV or Excel. 导出人群名单。"""
    opened = open_workspace(workspace)
    with open_engine(opened, engine, read_only=True) as storage:
        exported = export_audience(storage, segment_id, path, mask=mask)
    console.print(t("segment.exported", language_of(opened), rows=exported.rows, path=str(exported.path),
                    date=str(exported.snapshot_date)))


@segment_app.command("overlap")
def segment_overlap(
    segment_ids: Annotated[list[str], typer.Argument(metavar="SEGMENT_ID...", help="Two or more audiences.")],
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    output: Format = "table",
    show_sql: ShowSql = False,
) -> None:
    """Common members between audiences (counts, share of the row audience, Jaccard). 人群重叠。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    with open_engine(opened, engine, read_only=True) as storage:
        overlap = audience_overlap(storage, segment_ids)
    for title, frame in (("count", overlap.counts), ("share_of_row", overlap.share_of_row.round(3)),
                         ("jaccard", overlap.jaccard.round(3))):
        console.print(f"[bold]{title}[/]")
        _frame(frame.reset_index(), output, language)
    _sql(overlap.sql, show_sql)


@segment_app.command("lookalike")
def segment_lookalike(
    seed: Annotated[str, typer.Argument(help="The seed audience (its latest snapshot).")],
    top_n: Annotated[int | None, typer.Option(help="Return the N most similar persons.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Or everyone at least this similar (0-1).")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="Features not to use (e.g. tag:high_value_member).")] = None,
    output_path: Annotated[Path | None, typer.Option("--output", "-o", help="Write the ranked persons to CSV.")] = None,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    show_sql: ShowSql = False,
) -> None:
    """Persons who look like the seed audience, and the features that drove it. 相似人群扩展。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    with open_engine(opened, engine, read_only=True) as storage:
        found = find_lookalikes(storage, members_sql(seed), top_n=top_n, threshold=threshold,
                                exclude=exclude or ())
    console.print(json.dumps(found.metrics, ensure_ascii=False, default=str))
    for zh, en in found.notes:
        console.print(zh if language == "zh" else en)
    name = "name_zh" if language == "zh" else "name_en"
    _frame(found.drivers[["feature", name, "gain_share", "seed_mean", "population_mean"]], "table", language, 10)
    _frame(found.ranked, "table", language, 20)
    if output_path is not None:
        found.ranked.to_csv(output_path, index=False, encoding="utf-8-sig")
    _sql_parts(found.sql, show_sql)


@segment_app.command("cluster")
def segment_cluster(
    segment_id: Annotated[str | None, typer.Argument(help="The audience to split; every active person if none.")] = None,
    k: Annotated[int | None, typer.Option("-k", help="Number of sub-groups; chosen by silhouette if not given.")] = None,
    traits: Annotated[list[str] | None, typer.Option("--trait", help="Traits to cluster on (repeat); "
                                                     "e.g. age, gender, aov, category_mix, tag:<id>.")] = None,
    output_path: Annotated[Path | None, typer.Option("--output", "-o", help="Write person → cluster to CSV.")] = None,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    show_sql: ShowSql = False,
) -> None:
    """Split an audience into sub-groups and describe each. 人群细分聚类。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    with open_engine(opened, engine, read_only=True) as storage:
        found = cluster_audience(storage, traits or None, k, members_sql(segment_id) if segment_id else None)
    console.print(f"k = {found.k}, silhouette = {found.silhouette:.3f}")
    description = "description_zh" if language == "zh" else "description_en"
    _frame(found.clusters[["cluster", "size", "share", description]], "table", language, found.k)
    if output_path is not None:
        found.assignments.to_csv(output_path, index=False, encoding="utf-8-sig")
    _sql_parts(found.sql, show_sql)


@segment_app.command("insight")
def segment_insight(
    goal: Annotated[str, typer.Argument(help="An event name (e.g. 'Order Completed') or an event/order rule "
                                        "as JSON, e.g. '{\"order\": {\"product\": {\"category\": \"cosmetics\"}}}'.")],
    segment_id: Annotated[str | None, typer.Option("--segment", help="Only persons of this audience.")] = None,
    window_days: Annotated[int, typer.Option("--window", help="Days after the cut-off in which the goal counts.")] = 30,
    as_of: Annotated[str | None, typer.Option(help="End of the outcome window, ISO 8601; default the latest data.")] = None,
    top: Annotated[int, typer.Option(help="Features to read out.")] = 10,
    output: Format = "table",
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    show_sql: ShowSql = False,
) -> None:
    """Which traits and tags separate those who reached a goal from those who did not. 转化特征洞察。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    parsed = goal if not goal.lstrip().startswith("{") else json.loads(goal)
    with open_engine(opened, engine, read_only=True) as storage:
        found = feature_insight(storage, parsed, members_sql(segment_id) if segment_id else None, window_days,
                                instant(as_of), timezone=opened.config.timezone)
    for line in found.readings(language, top):
        console.print(line)
    name = "name_zh" if language == "zh" else "name_en"
    shown = found.features if output != "table" else found.features[
        ["rank", "feature", name, "importance", "lift", "lift_low", "lift_high", "q_value"]].round(3)
    _frame(shown.head(top), output, language, top)
    _sql_parts(found.sql, show_sql)
