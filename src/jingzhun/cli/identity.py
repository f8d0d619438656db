"""`jingzhun identity …`: the operator's hand on the ID graph — bind, unbind, unmerge,
erase on request, and the probabilistic-match review queue. Changes take effect on the
next `jingzhun pipeline` (the graph is rebuilt from the evidence and these decisions)."""

from __future__ import annotations

import getpass
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
from jingzhun.core import open_workspace
from jingzhun.engine import open_engine
from jingzhun.identity import bind_identifier, erase_person, unbind_identifier, unmerge_person
from jingzhun.identity.matching import decide_match, review_queue

identity_app = typer.Typer(help="ID graph operations (OneID). 身份图谱操作。", no_args_is_help=True)
app.add_typer(identity_app, name="identity")

ActorOption = Annotated[str | None, typer.Option(help="Who is acting (recorded); default the OS user.")]
ReasonOption = Annotated[str, typer.Option(help="Why (recorded with the decision).")]


def _split(identifier: str) -> tuple[str, str]:
    kind, sep, value = identifier.partition(":")
    if not sep or not kind or not value:
        raise typer.BadParameter("write TYPE:VALUE, e.g. phone:13812345678 / 请写成 类型:值", param_hint="ID")
    return kind, value


def _actor(actor: str | None) -> str:
    return actor or getpass.getuser()


@identity_app.command("bind")
def bind(
    identifier: Annotated[str, typer.Argument(metavar="ID", help="TYPE:VALUE")],
    other: Annotated[str, typer.Argument(metavar="OTHER", help="TYPE:VALUE of the identifier to join.")],
    workspace: WorkspaceOption = None, engine: EngineOption = None,
    actor: ActorOption = None, reason: ReasonOption = "",
) -> None:
    """Declare two identifiers the same person. 绑定两个标识为同一客户。"""
    opened = open_workspace(workspace)
    with open_engine(opened, engine) as storage:
        override = bind_identifier(storage, *_split(identifier), *_split(other), _actor(actor), reason,
                                   workspace=opened)
    console.print(f"bind {override} ✓ (next pipeline run / 下次运行流水线生效)")


@identity_app.command("unbind")
def unbind(
    identifier: Annotated[str, typer.Argument(metavar="ID", help="TYPE:VALUE")],
    other: Annotated[str | None, typer.Option("--from", help="TYPE:VALUE to keep it apart from.")] = None,
    workspace: WorkspaceOption = None, engine: EngineOption = None,
    actor: ActorOption = None, reason: ReasonOption = "",
) -> None:
    """Stop an identifier linking (to anything, or to one other). 解绑标识。"""
    opened = open_workspace(workspace)
    other_type, other_value = _split(other) if other else (None, None)
    with open_engine(opened, engine) as storage:
        override = unbind_identifier(storage, *_split(identifier), _actor(actor), reason,
                                     other_type=other_type, other_value=other_value, workspace=opened)
    console.print(f"unbind {override} ✓ (next pipeline run / 下次运行流水线生效)")


@identity_app.command("unmerge")
def unmerge(
    person_id: Annotated[str, typer.Argument(help="The person to split.")],
    identifier: Annotated[str, typer.Argument(metavar="ID", help="TYPE:VALUE of the part to split off.")],
    workspace: WorkspaceOption = None, engine: EngineOption = None,
    actor: ActorOption = None, reason: ReasonOption = "",
) -> None:
    """Split a wrongly merged person, showing the rule that merged it. 拆分误合并的客户。"""
    opened = open_workspace(workspace)
    with open_engine(opened, engine) as storage:
        result = unmerge_person(storage, person_id, *_split(identifier), _actor(actor), reason, workspace=opened)
    zh = language_of(opened) == "zh"
    console.print(("合并原因（规则）：" if zh else "Merged by rule(s): ") + ", ".join(result.rules or ["?"]))
    for link in result.links:
        console.print(f"  {link}", markup=False, highlight=False)
    console.print("拆分将在下次运行流水线时生效" if zh else "The split takes effect on the next pipeline run")


@identity_app.command("erase")
def erase(
    person_id: Annotated[str, typer.Argument(help="The person to delete (PIPL/GDPR request).")],
    workspace: WorkspaceOption = None, engine: EngineOption = None,
    actor: ActorOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: this cannot be undone.")] = False,
) -> None:
    """Delete a person everywhere and keep them from coming back. 按请求删除客户数据。"""
    if not yes:
        raise typer.BadParameter("erasure cannot be undone: add --yes to confirm / 删除不可撤销，请加 --yes 确认",
                                 param_hint="--yes")
    opened = open_workspace(workspace)
    with open_engine(opened, engine) as storage:
        result = erase_person(opened, storage, person_id, _actor(actor))
    console.print(f"{result.person_id}: {result.identifiers} identifiers, change {result.change_id}")
    for table, rows in sorted(result.removed.items()):
        console.print(f"  {table}: {rows:,}")


@identity_app.command("review")
def review(
    workspace: WorkspaceOption = None, engine: EngineOption = None,
    output: Annotated[str, typer.Option("--format", "-f", help="table, csv or json.")] = "table",
) -> None:
    """Probable matches waiting for a decision, both records side by side. 待审核的疑似同一客户。"""
    opened = open_workspace(workspace)
    with open_engine(opened, engine, read_only=True) as storage:
        queue = review_queue(storage)
    print_result(queue, output, 200, language_of(opened))


@identity_app.command("decide")
def decide(
    candidate_id: Annotated[str, typer.Argument(help="A candidate from `jingzhun identity review`.")],
    accept: Annotated[bool, typer.Option("--accept/--reject", help="Same person, or not.")],
    workspace: WorkspaceOption = None, engine: EngineOption = None, actor: ActorOption = None,
) -> None:
    """Accept or reject a probable match. 确认或否决疑似匹配。"""
    opened = open_workspace(workspace)
    with open_engine(opened, engine) as storage:
        status = decide_match(storage, candidate_id, accept, _actor(actor))
    console.print(f"{candidate_id}: {status}")
