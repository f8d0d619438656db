"""One pydantic error → one ConfigError that names the key and the fix.

Every YAML file a user writes (`jingzhun.yaml`, `identity.yaml`, import mappings) is
validated by pydantic, whose errors read like a stack of type names. A user needs the
key, what is wrong with it, and what to type instead: a typo gets the closest allowed
key, a missing key gets "add it", anything else points at the file's documentation.
"""

from __future__ import annotations

import difflib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from jingzhun.core.errors import ConfigError


@dataclass(frozen=True)
class ConfigFile:
    """How to speak of one kind of file in an error: its name in both languages and its doc."""

    where_en: str = ""      # e.g. " in identity.yaml"; empty for the workspace file itself
    where_zh: str = ""      # e.g. "identity.yaml 中"
    doc: str = "docs/quickstart.md"


def known_keys(model: type[BaseModel], path: tuple[str | int, ...]) -> list[str]:
    """The keys allowed at `path` inside `model` (nested models and dicts of models)."""
    current: Any = model
    for part in path:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            current = field.annotation if field else None
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        else:
            return []
    if typing.get_origin(current) is dict:
        return []
    return list(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def config_error(error: dict[str, Any], location: Path | str, model: type[BaseModel], file: ConfigFile,
                 fixes: dict[str, tuple[str, str]] | None = None) -> ConfigError:
    """The ConfigError for pydantic's `error` (one item of `ValidationError.errors()`)."""
    loc = tuple(error["loc"])
    key = ".".join(str(part) for part in loc)
    reason = str(error["msg"]).removeprefix("Value error, ")
    if not key:  # a check across keys names its key at the start of the message
        key, _, reason = reason.partition(": ")
    where_en, where_zh = file.where_en, file.where_zh
    if error["type"] == "extra_forbidden":
        known = known_keys(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        fix = f"rename it to `{close[0]}`" if close else f"remove it; allowed keys here: {', '.join(known)}"
        fix_zh = f"改名为 `{close[0]}`" if close else f"删除它；此处允许的键：{'、'.join(known)}"
        return ConfigError(f"unknown key `{key}`{where_en}.", fix=fix, field=key, location=location,
                           message_zh=f"{where_zh}未知的键 `{key}`。", fix_zh=fix_zh)
    fix, fix_zh = (fixes or {}).get(key, (f"see {file.doc} for the allowed values", f"允许的取值见 {file.doc}"))
    if error["type"] == "missing":
        fix, fix_zh = f"add `{key}:` to the file", f"在文件中加上 `{key}:`"
    return ConfigError(f"invalid value for `{key}`{where_en}: {reason}", fix=fix, field=key, location=location,
                       message_zh=f"{where_zh}`{key}` 的值无效：{reason}", fix_zh=fix_zh)
