"""Serve: the one server (`jingzhun serve`) — collector, REST API, console — and who may use it.

Public API: `create_app(workspace, …)` (the FastAPI app), `running_server(workspace)`,
`load_settings`, and the accounts (`create_user`, `list_users`, `set_password`,
`update_user`, `create_api_key`, `list_api_keys`, `revoke_api_key`, `ROLES`). The app
itself is imported only when asked for, so the CLI's account commands stay quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jingzhun.web.accounts import (
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
from jingzhun.web.settings import WebSettings, load_settings

if TYPE_CHECKING:
    from jingzhun.web.app import create_app, running_server

__all__ = ["ROLES", "AccountError", "WebSettings", "create_api_key", "create_app", "create_user", "list_api_keys",
           "list_users", "load_settings", "revoke_api_key", "running_server", "set_password", "update_user"]


def __getattr__(name: str) -> Any:
    if name in ("create_app", "running_server"):
        from jingzhun.web import app

        return getattr(app, name)
    raise AttributeError(name)
