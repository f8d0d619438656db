"""The one exception root of jingzhun.

Every error a user can cause carries what went wrong, where (`field`, `location`)
and how to fix it, in Chinese and English, so the CLI and the web console can show
one clear message instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path


class JingzhunError(Exception):
    """Root of every error jingzhun raises on purpose.

    Args:
        message: what went wrong, in English.
        fix: what the user should do about it, in English.
        field: the key, column or rule path at fault, if any.
        location: the file or table the problem is in, if any.
        message_zh: the same message in Chinese.
        fix_zh: the same fix in Chinese.
    """

    def __init__(
        self,
        message: str,
        *,
        fix: str = "",
        field: str | None = None,
        location: str | Path | None = None,
        message_zh: str | None = None,
        fix_zh: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.field = field
        self.location = str(location) if location is not None else None
        self.message_zh = message_zh or message
        self.fix_zh = fix_zh or fix

    def describe(self, language: str = "zh") -> str:
        """One human sentence (plus the fix) in the requested language."""
        zh = language.startswith("zh")
        text = self.message_zh if zh else self.message
        fix = self.fix_zh if zh else self.fix
        where = f"{self.location}: " if self.location else ""
        label = "修复" if zh else "Fix"
        return f"{where}{text}" + (f"\n{label}: {fix}" if fix else "")

    def __str__(self) -> str:
        return self.describe("en")


class ConfigError(JingzhunError):
    """`jingzhun.yaml` (or another definition file) is invalid."""


class WorkspaceError(JingzhunError):
    """The workspace folder is missing, not a workspace, or already one."""


class EngineError(JingzhunError):
    """A query failed or cannot run on the chosen engine."""


class UnsupportedOnEngine(EngineError):
    """A query uses a feature the chosen engine does not have."""


class SchemaError(JingzhunError):
    """The stored schema does not match what this version of jingzhun expects."""


class ReadOnlyQueryError(JingzhunError):
    """A query given to `jingzhun sql` would change data."""
