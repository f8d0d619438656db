"""A workspace: one folder holding a brand's configuration, definitions and data.

Layout::

    DIR/
      jingzhun.yaml      configuration (validated by core.config)
      definitions/       YAML definitions: tags, segments, campaigns, tracking plans
      warehouse.duckdb   the DuckDB engine's storage (default)
      spark-warehouse/   the Spark engine's Parquet tables (when used)
      log/               the collector's durable append-only log
      .jingzhun/         secrets that must not be shared (the PII salt)
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from jingzhun.core.config import CONFIG_FILE, WorkspaceConfig, dump_config, load_config
from jingzhun.core.errors import WorkspaceError

WORKSPACE_ENV = "JINGZHUN_WORKSPACE"
SUBFOLDERS = ("definitions", "log", ".jingzhun")


@dataclass(frozen=True)
class Workspace:
    """An opened workspace: its folder and its validated configuration."""

    root: Path
    config: WorkspaceConfig

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def definitions_dir(self) -> Path:
        return self.root / "definitions"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    def resolve(self, relative: str) -> Path:
        """A path from the config, taken relative to the workspace unless absolute."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self.root / path

    def pii_salt(self) -> bytes:
        """The secret salt for salted-hash PII storage (created by `init`)."""
        return self.resolve(self.config.pii.salt_file).read_bytes()


def resolve_workspace_dir(explicit: str | Path | None = None) -> Path:
    """The folder a command works on: --workspace, then JINGZHUN_WORKSPACE, then cwd."""
    chosen = explicit or os.environ.get(WORKSPACE_ENV) or Path.cwd()
    return Path(chosen).expanduser().resolve()


def open_workspace(explicit: str | Path | None = None) -> Workspace:
    """Open and validate the workspace, or explain how to create one."""
    root = resolve_workspace_dir(explicit)
    if not root.is_dir():
        raise WorkspaceError(
            f"workspace folder {root} does not exist.",
            fix=f"create it with `jingzhun init {root}` or pass --workspace PATH",
            message_zh=f"工作区目录 {root} 不存在。",
            fix_zh=f"用 `jingzhun init {root}` 创建，或用 --workspace 指定已有工作区",
        )
    if not (root / CONFIG_FILE).is_file():
        raise WorkspaceError(
            f"{root} is not a jingzhun workspace (no {CONFIG_FILE}).",
            fix=f"run `jingzhun init {root}`, pass --workspace PATH or set {WORKSPACE_ENV}",
            message_zh=f"{root} 不是 jingzhun 工作区（缺少 {CONFIG_FILE}）。",
            fix_zh=f"运行 `jingzhun init {root}`，或用 --workspace 指定，或设置 {WORKSPACE_ENV}",
        )
    return Workspace(root=root, config=load_config(root / CONFIG_FILE))


def init_workspace(directory: str | Path, config: WorkspaceConfig | None = None) -> Workspace:
    """Create a workspace in `directory` (created if missing, must not be one already)."""
    root = Path(directory).expanduser().resolve()
    if (root / CONFIG_FILE).exists():
        raise WorkspaceError(
            f"{root} is already a jingzhun workspace.",
            fix="use it as it is, or choose an empty folder",
            message_zh=f"{root} 已经是 jingzhun 工作区。", fix_zh="直接使用它，或换一个空目录",
        )
    config = config or WorkspaceConfig(name=root.name or "jingzhun")
    root.mkdir(parents=True, exist_ok=True)
    for folder in SUBFOLDERS:
        (root / folder).mkdir(exist_ok=True)
    workspace = Workspace(root=root, config=config)
    salt = workspace.resolve(config.pii.salt_file)
    salt.parent.mkdir(parents=True, exist_ok=True)
    if not salt.exists():
        salt.write_bytes(secrets.token_bytes(32))
        salt.chmod(0o600)
    (root / ".jingzhun" / ".gitignore").write_text("*\n", encoding="utf-8")
    workspace.config_path.write_text(dump_config(config), encoding="utf-8")
    return workspace
