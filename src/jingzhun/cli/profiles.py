"""`jingzhun profile ID`: one customer's portrait from any identifier they carry."""

from __future__ import annotations

from typing import Annotated

import pyarrow as pa
import typer
from rich.table import Table

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
from jingzhun.cli.reports import instant
from jingzhun.core import open_workspace, t
from jingzhun.engine import open_engine
from jingzhun.profiles.portrait import TIMELINE_LIMIT, find_person, person_portrait
from jingzhun.profiles.tags import apply_tags, list_tags

SECTIONS = {
    "identities": ("身份标识", "Identities"),
    "traits": ("属性", "Traits"),
    "tags": ("标签", "Tags"),
    "scores": ("预测分", "Scores"),
    "timeline": ("最近行为", "Recent timeline"),
}


@app.command()
def profile(
    identifier: Annotated[str, typer.Argument(
        metavar="ID", help="Any identifier: TYPE:VALUE (phone:138…, member_id:JZ…, wechat_openid:…) "
                           "or a bare phone, e-mail, member id or person id.")],
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    timeline: Annotated[int, typer.Option(help="Timeline entries to show.")] = TIMELINE_LIMIT,
    output: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    show_sql: Annotated[bool, typer.Option("--sql", help="Also print the SQL behind each part.")] = False,
) -> None:
    """Show one customer's portrait: identities, traits, tags, scores, timeline. 客户画像。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    with open_engine(opened, engine, read_only=True) as storage:
        person_id = find_person(storage, identifier, opened)
        portrait = person_portrait(storage, person_id, timeline)
    console.print(f"[bold]{'客户' if language == 'zh' else 'Person'} {person_id}[/]")
    for name, titles in SECTIONS.items():
        console.print(f"\n[bold]{titles[0] if language == 'zh' else titles[1]}[/]")
        print_result(getattr(portrait, name), output, 10_000, language)
        if show_sql:
            console.print(portrait.queries[name], markup=False, highlight=False)


tag_app = typer.Typer(help="Tags: list and apply. 标签：查看与计算。", no_args_is_help=True)
app.add_typer(tag_app, name="tag")


@tag_app.command("list")
def tag_list(
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    category: Annotated[str | None, typer.Option(help="base, marketing, intent, scenario or predictive.")] = None,
    output: Annotated[str, typer.Option("--format", "-f", help="table, csv or json.")] = "table",
) -> None:
    """Every enabled tag with its category, version and current holders. 列出标签。"""
    opened = open_workspace(workspace)
    with open_engine(opened, engine, read_only=True) as storage:
        frame = list_tags(opened, storage)
    if category is not None:
        frame = frame[frame["category"] == category]
    print_result(pa.Table.from_pandas(frame, preserve_index=False), output, 10_000, language_of(opened))


@tag_app.command("apply")
def tag_apply(
    tag_ids: Annotated[list[str] | None, typer.Argument(metavar="[TAG_ID]...", help="Tags to compute; all when none.")] = None,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
    as_of: Annotated[str | None, typer.Option(help="Instant the tags describe, ISO 8601; default the latest data.")] = None,
) -> None:
    """Compute tags and record who entered and left each. 计算标签并记录变化。"""
    opened = open_workspace(workspace)
    language = language_of(opened)
    with open_engine(opened, engine) as storage, progress_bar() as progress:
        on_step = step_reporter(progress, "tags")
        result = apply_tags(opened, storage, tag_ids or None, instant(as_of), on_step)
    for key, values in result.notes:
        console.print(t(key, language, **values))
    table = Table("tag", "version", "holders", "entered", "left")
    for change in result.changes.values():
        table.add_row(change.tag_id, str(change.version), f"{change.holders:,}", f"{change.entered:,}",
                      f"{change.exited:,}")
    console.print(table)
