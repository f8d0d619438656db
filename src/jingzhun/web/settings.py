"""The server's settings: environment variables `JINGZHUN_WEB_*`, checked before anything listens.

Validators refuse unsafe values rather than run with them: a session secret that is
short or a well-known placeholder is an error, and when none is given the server
generates one and keeps it in the workspace's `.jingzhun/` folder (mode 0600), so
sessions survive a restart and no two workspaces share a secret. There is no
constant fallback anywhere.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from jingzhun.core.errors import ConfigError
from jingzhun.core.workspace import Workspace

SECRET_FILE = ".jingzhun/session_secret"
MIN_SECRET_CHARS = 32
WEAK_SECRETS = frozenset({"secret", "changeme", "change-me", "password", "jingzhun", "development", "dev",
                          "test", "default", "insecure", "please-change-me"})


class WebSettings(BaseSettings):
    """What `jingzhun serve` can be told through `JINGZHUN_WEB_<NAME>` (e.g. JINGZHUN_WEB_COOKIE_SECURE=always)."""

    model_config = SettingsConfigDict(env_prefix="JINGZHUN_WEB_", extra="ignore", frozen=True)

    session_secret: SecretStr | None = Field(
        None, description="Signs session and log-in cookies; generated and kept in the workspace if unset.")
    cookie_secure: Literal["auto", "always", "never"] = Field(
        "auto", description="Mark cookies Secure: auto = when the request came over https.")
    session_hours: int = Field(12, ge=1, le=24 * 30, description="How long a console log-in lasts.")
    login_attempts: int = Field(5, ge=1, le=100, description="Failed log-ins per user and address per window.")
    login_window_seconds: int = Field(900, ge=10, le=86_400, description="The window failed log-ins count in.")
    api_threads: int = Field(4, ge=1, le=32, description="API calls the engine process runs at once.")
    max_upload_mb: int = Field(512, ge=1, le=100_000, description="Largest import file accepted.")

    @field_validator("session_secret")
    @classmethod
    def _strong_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value()
        if len(text) < MIN_SECRET_CHARS or text.lower() in WEAK_SECRETS or len(set(text)) < 10:
            raise ValueError(f"the session secret must be at least {MIN_SECRET_CHARS} random characters, "
                             "not a placeholder; unset it to let jingzhun generate one")
        return value

    def secret(self) -> bytes:
        """The session secret (always set once `load_settings` returned)."""
        if self.session_secret is None:
            raise ConfigError("the session secret is not set.", field="session_secret",
                              fix="load the settings with load_settings(workspace)",
                              message_zh="未设置会话密钥。", fix_zh="请用 load_settings(workspace) 读取设置")
        return self.session_secret.get_secret_value().encode("utf-8")


def load_settings(workspace: Workspace, **overrides: object) -> WebSettings:
    """The environment's settings (and `overrides`), with the workspace's secret when none is set."""
    try:
        settings = WebSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as invalid:
        first = invalid.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "settings"
        raise ConfigError(f"invalid server setting {field}: {first['msg']}.", field=field,
                          fix=f"fix JINGZHUN_WEB_{field.upper()} (see docs/api.md, Settings)",
                          message_zh=f"服务设置 {field} 无效：{first['msg']}。",
                          fix_zh=f"请修正环境变量 JINGZHUN_WEB_{field.upper()}（见 docs/api.md 的 Settings）") from None
    if settings.session_secret is None:
        settings = settings.model_copy(update={"session_secret": SecretStr(workspace_secret(workspace))})
    return settings


def workspace_secret(workspace: Workspace) -> str:
    """The workspace's generated session secret, created on first use (exclusively, mode 0600)."""
    path: Path = workspace.resolve(SECRET_FILE)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return path.read_text(encoding="ascii").strip()
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(secrets.token_urlsafe(48))
            handle.flush()
            os.fsync(handle.fileno())
    return path.read_text(encoding="ascii").strip()
