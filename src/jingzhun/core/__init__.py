"""Configuration, workspace, errors and i18n: no SQL, no I/O policy beyond the workspace."""

from jingzhun.core.config import WorkspaceConfig, load_config
from jingzhun.core.errors import (
    ConfigError,
    EngineError,
    JingzhunError,
    ReadOnlyQueryError,
    SchemaError,
    UnsupportedOnEngine,
    WorkspaceError,
)
from jingzhun.core.i18n import current_language, t
from jingzhun.core.workspace import Workspace, init_workspace, open_workspace

__all__ = [
    "ConfigError",
    "EngineError",
    "JingzhunError",
    "ReadOnlyQueryError",
    "SchemaError",
    "UnsupportedOnEngine",
    "Workspace",
    "WorkspaceConfig",
    "WorkspaceError",
    "current_language",
    "init_workspace",
    "load_config",
    "open_workspace",
    "t",
]
