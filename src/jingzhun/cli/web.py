"""`jingzhun user …` and `jingzhun apikey …`: who may use the server, from the command line.

Like every command that writes, these need the database to themselves: while `jingzhun
serve` runs, use the API instead (`/api/v1/users`, `/api/v1/api-keys`); the error says so.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import duckdb
import typer
from rich.table import Table

from jingzhun.cli.common import EngineOption, WorkspaceOption, app, console, language_of
from jingzhun.core import JingzhunError, open_workspace
from jingzhun.core.workspace import Workspace, resolve_workspace_dir
from jingzhun.engine import Engine, open_engine
from jingzhun.schema import migrate
from jingzhun.web import (
    ROLES,
    AccountError,
    create_api_key,
    create_user,
    list_api_keys,
    list_users,
    revoke_api_key,
    set_password,
    update_user,
)
from jingzhun.web.security import generated_password

user_app = typer.Typer(help="Console users and roles. 控制台用户与角色。", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys for machines. 机器调用的 API 密钥。", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(apikey_app, name="apikey")

RoleOption = Annotated[str, typer.Option(help=f"One of {', '.join(ROLES)}. 角色。")]
PasswordStdin = Annotated[bool, typer.Option("--password-stdin", help="Read the password from standard input.")]
Generate = Annotated[bool, typer.Option("--generate-password", help="Generate a password and print it once.")]
Actor = "cli"

# What to call instead of each writing command while the server holds the database.
API_INSTEAD: dict[str, str] = {
    "pipeline": "POST /api/v1/pipeline/runs", "import": "POST /api/v1/imports",
    "quarantine retry": "POST /api/v1/quarantine/retry", "source add": "POST /api/v1/sources",
    "segment create": "POST /api/v1/audiences", "segment snapshot": "POST /api/v1/audiences/{id}/snapshot",
    "segment export": "GET /api/v1/audiences/{id}/export", "tag apply": "POST /api/v1/tags/apply",
    "campaign create": "POST /api/v1/campaigns", "campaign run": "POST /api/v1/campaigns/{id}/run",
    "campaign pause": "POST /api/v1/campaigns/{id}/pause", "campaign resume": "POST /api/v1/campaigns/{id}/resume",
    "user add": "POST /api/v1/users", "user passwd": "PUT /api/v1/users/{name}/password",
    "user disable": "PATCH /api/v1/users/{name}", "apikey create": "POST /api/v1/api-keys",
    "apikey revoke": "DELETE /api/v1/api-keys/{id}", "profile": "GET /api/v1/persons/{id}",
    "report": "GET /api/v1/analytics/…", "segment": "GET /api/v1/audiences/…", "campaign": "GET /api/v1/campaigns/…",
}


def database_in_use(failure: duckdb.IOException, argv: list[str]) -> JingzhunError | None:
    """The error to show when DuckDB refuses the file because `jingzhun serve` holds it (None otherwise)."""
    if "lock" not in str(failure).lower():
        return None
    from jingzhun.web import running_server

    workspace = _workspace_from(argv)
    server = running_server(workspace) if workspace is not None else None
    if workspace is not None and server is None:  # no server here: another command holds it
        return JingzhunError(
            "the database is held by another process (e.g. another jingzhun command): DuckDB lets one "
            "process open it at a time.", field="workspace", fix="wait for it to finish and run this command again",
            message_zh="数据库正被另一个进程（如另一条 jingzhun 命令）占用：DuckDB 同一时间只允许一个进程打开它。",
            fix_zh="请等它结束后再运行本命令")
    where = f" (pid {server['pid']}, {server.get('url') or 'its address'})" if server else ""
    command = _command_of(argv)
    api = next((API_INSTEAD[key] for key in (command, command.split(" ")[0]) if key in API_INSTEAD), None)
    docs = f"{server['url']}/docs" if server and server.get("url") else "/docs on the server"
    instead_en = f"use the API instead: {api} (see {docs})," if api else f"use the API instead (see {docs}),"
    instead_zh = f"请改用 API：{api}（见 {docs}），" if api else f"请改用 API（见 {docs}），"
    return JingzhunError(
        f"the database is held by `jingzhun serve`{where}: DuckDB lets no other process open it while the "
        "server runs.", field="workspace",
        fix=f"{instead_en} or stop the server and run the command again",
        message_zh=f"数据库正被 `jingzhun serve`{where} 占用：服务运行期间 DuckDB 不允许其他进程打开它。",
        fix_zh=f"{instead_zh}或先停止服务再运行此命令")


def _command_of(argv: list[str]) -> str:
    words = [word for word in argv[1:] if not word.startswith("-")]
    return " ".join(words[:2])


def _workspace_from(argv: list[str]) -> Workspace | None:
    explicit = None
    for index, word in enumerate(argv):
        if word in ("--workspace", "-w") and index + 1 < len(argv):
            explicit = argv[index + 1]
        elif word.startswith("--workspace="):
            explicit = word.split("=", 1)[1]
    try:
        return open_workspace(resolve_workspace_dir(explicit))
    except JingzhunError:
        return None


def _engine(workspace: Path | None, kind: str | None) -> tuple[Workspace, Engine]:
    opened = open_workspace(workspace)
    engine = open_engine(opened, kind)
    migrate(engine)
    return opened, engine


def _password(stdin: bool, generate: bool, language: str) -> tuple[str, bool]:
    """The password to set, and whether it was generated (then it is printed once)."""
    if stdin and generate:
        raise AccountError("give either --password-stdin or --generate-password.", field="password",
                           fix="choose one", message_zh="--password-stdin 与 --generate-password 只能二选一。",
                           fix_zh="请只选一个")
    if generate:
        return generated_password(), True
    if stdin:
        return sys.stdin.readline().rstrip("\n"), False
    prompt = "密码" if language == "zh" else "Password"
    return typer.prompt(prompt, hide_input=True, confirmation_prompt=True), False


@user_app.command("add")
def user_add(
    username: Annotated[str, typer.Argument(help="Lower-case letters, digits, _ . -")],
    role: RoleOption = "viewer",
    display_name: Annotated[str | None, typer.Option(help="The name the console shows.")] = None,
    password_stdin: PasswordStdin = False,
    generate_password: Generate = False,
    update: Annotated[bool, typer.Option("--update", help="If the user exists, set this role and password.")] = False,
    workspace: WorkspaceOption = None,
    engine: EngineOption = None,
) -> None:
    """Add a console user with a role. 添加控制台用户。"""
    opened, storage = _engine(workspace, engine)
    language = language_of(opened)
    password, generated = _password(password_stdin, generate_password, language)
    with storage:
        existing = {row["username"] for row in list_users(storage).to_pylist()}
        if update and username in existing:
            set_password(storage, username, password, Actor)
            update_user(storage, username, role=role, display_name=display_name, disabled=False, actor=Actor)
        else:
            create_user(storage, username, role, password, display_name, Actor)
    said = "已设置用户" if language == "zh" else "User ready"
    console.print(f"{said}: {username} ({role})", highlight=False)
    if generated:
        console.print(f"{'密码（仅显示一次）' if language == 'zh' else 'password (shown once)'}: {password}",
                      highlight=False, markup=False)


@user_app.command("list")
def user_list(workspace: WorkspaceOption = None, engine: EngineOption = None) -> None:
    """Every user, role and state. 列出用户。"""
    opened, storage = _engine(workspace, engine)
    with storage:
        rows = list_users(storage).to_pylist()
    table = Table("username", "display_name", "role", "created_at", "last_login_at", "status")
    for row in rows:
        table.add_row(row["username"], row["display_name"] or "", row["role"], str(row["created_at"]),
                      str(row["last_login_at"] or ""), "disabled" if row["disabled_at"] else "enabled")
    console.print(table)


@user_app.command("passwd")
def user_passwd(username: str, password_stdin: PasswordStdin = False, generate_password: Generate = False,
                workspace: WorkspaceOption = None, engine: EngineOption = None) -> None:
    """Set a user's password; their sessions end. 修改用户密码。"""
    opened, storage = _engine(workspace, engine)
    language = language_of(opened)
    password, generated = _password(password_stdin, generate_password, language)
    with storage:
        set_password(storage, username, password, Actor)
    console.print(("已修改密码: " if language == "zh" else "Password changed: ") + username, highlight=False)
    if generated:
        console.print(password, highlight=False, markup=False)


@user_app.command("disable")
def user_disable(username: str,
                 enable: Annotated[bool, typer.Option("--enable", help="Enable the user again instead.")] = False,
                 workspace: WorkspaceOption = None, engine: EngineOption = None) -> None:
    """Stop a user from logging in (their sessions end), or --enable them again. 停用用户。"""
    opened, storage = _engine(workspace, engine)
    with storage:
        update_user(storage, username, disabled=not enable, actor=Actor)
    state = ("已启用" if enable else "已停用") if language_of(opened) == "zh" else ("enabled" if enable else "disabled")
    console.print(f"{username}: {state}", highlight=False)


@apikey_app.command("create")
def apikey_create(name: Annotated[str, typer.Argument(help="The machine or job that uses it.")],
                  role: RoleOption = "viewer", workspace: WorkspaceOption = None,
                  engine: EngineOption = None) -> None:
    """Create an API key; the secret is printed once. 创建 API 密钥（仅显示一次）。"""
    opened, storage = _engine(workspace, engine)
    with storage:
        row, secret = create_api_key(storage, name, role, Actor)
    language = language_of(opened)
    console.print(f"{row['key_id']} ({row['name']}, {row['role']})", highlight=False)
    console.print("密钥只显示这一次，请妥善保存：" if language == "zh" else "The key is shown only once; keep it safe:")
    console.print(secret, highlight=False, markup=False, soft_wrap=True)


@apikey_app.command("list")
def apikey_list(workspace: WorkspaceOption = None, engine: EngineOption = None) -> None:
    """Every API key (never its secret). 列出 API 密钥。"""
    _, storage = _engine(workspace, engine)
    with storage:
        rows = list_api_keys(storage).to_pylist()
    table = Table("key_id", "name", "prefix", "role", "created_at", "last_used_at", "status")
    for row in rows:
        table.add_row(row["key_id"], row["name"], row["key_prefix"] or "", row["role"], str(row["created_at"]),
                      str(row["last_used_at"] or ""), "revoked" if row["revoked_at"] else "active")
    console.print(table)


@apikey_app.command("revoke")
def apikey_revoke(key_id: str, workspace: WorkspaceOption = None, engine: EngineOption = None) -> None:
    """Revoke an API key: it stops working at once. 吊销 API 密钥。"""
    opened, storage = _engine(workspace, engine)
    with storage:
        revoke_api_key(storage, key_id, Actor)
    console.print(("已吊销 " if language_of(opened) == "zh" else "Revoked ") + key_id, highlight=False)
