"""Mapping files: which source column feeds which canonical field, and how.

A mapping is YAML written by an operator who knows the export, not Python. Like
`jingzhun.yaml`, every mistake comes back as one sentence naming the key and the
fix (unknown keys are refused, the closest known key is suggested), because a
typo such as `requred: true` would otherwise silently load bad rows.
"""

from __future__ import annotations

import difflib
from datetime import date, timedelta
from importlib import resources
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from jingzhun.core.config_errors import ConfigFile, config_error
from jingzhun.core.errors import ConfigError

EARLIEST_TIMESTAMP = date(1990, 1, 1)
FieldType = Literal[
    "string", "integer", "decimal", "float", "boolean", "date", "timestamp", "phone", "email", "ean13", "json"
]
FileFormat = Literal["csv", "excel", "jsonl", "parquet"]


def _known_zone(value: str | None) -> str | None:
    """An IANA zone name, refused (with a suggestion) when unknown."""
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(value, sorted(available_timezones()), n=1)
        raise ValueError(f"unknown time zone {value!r}" + (f"; did you mean {close[0]!r}?" if close else "")) from None
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldMap(_Strict):
    """One canonical field: where it comes from and what makes it valid."""

    source: str | None = Field(None, description="Source column; default: the field's own name.")
    type: FieldType = "string"
    required: bool = False
    default: str | None = Field(None, description="Used when the source value is empty.")
    values: dict[str, str | None] | None = Field(None, description="Value map, e.g. 男: M.")
    strict_values: bool = Field(False, description="Quarantine values missing from `values`.")
    formats: list[str] = Field(default_factory=list, description="strptime formats for dates/times.")
    min: float | None = Field(None, description="Smallest allowed number, e.g. 0 for quantities.")
    timezone: str | None = Field(None, description="Zone of naive local times; default: the mapping's.")
    not_before: date | None = Field(None, description="Earliest plausible date or time (local); default for "
                                                      f"timestamps: {EARLIEST_TIMESTAMP}.")
    not_after: date | None = Field(None, description="Latest plausible date or time (local); default for "
                                                     "timestamps: the day after the import.")
    references: str | None = Field(None, pattern=r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$",
                                   description="table.column the value must exist in.")
    check_mojibake: bool = Field(False, description="Quarantine garbled text (UTF-8 read as GBK or "
                                                    "Windows-1252), with the likely original.")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return _known_zone(value)

    @model_validator(mode="after")
    def _mojibake_on_text(self) -> FieldMap:
        if self.check_mojibake and self.type != "string":
            raise ValueError("`check_mojibake` applies to text fields (type: string) only")
        return self

    @model_validator(mode="after")
    def _window_on_times(self) -> FieldMap:
        bounded = self.not_before is not None or self.not_after is not None
        if bounded and self.type not in ("date", "timestamp"):
            raise ValueError("`not_before` and `not_after` apply to dates and timestamps only")
        if self.not_before and self.not_after and self.not_before > self.not_after:
            raise ValueError("`not_before` must not be later than `not_after`")
        return self

    def plausible_window(self, today: date) -> tuple[date | None, date | None]:
        """The dates a value must fall in (inclusive, local), or None for an open end.

        Timestamps get a window by default: exports fill unknown times with
        placeholders (1970-01-01, 1900-01-01, 2099-12-31) that parse as valid times
        and would silently date an order decades away. Dates (birthdays, store
        openings) have none unless the mapping sets one.
        """
        if self.type != "timestamp":
            return self.not_before, self.not_after
        return (self.not_before or EARLIEST_TIMESTAMP, self.not_after or today + timedelta(days=1))

    @field_validator("formats")
    @classmethod
    def _formats(cls, value: list[str]) -> list[str]:
        # Formats are handed to DuckDB's strptime as SQL literals: keep them to strptime text.
        for fmt in value:
            if "'" in fmt or "\\" in fmt or "%" not in fmt:
                raise ValueError(f"{fmt!r} is not a strptime format such as '%Y-%m-%d %H:%M:%S'")
        return value


class Mapping(_Strict):
    """A whole mapping file: the kind it loads, the file's shape, and its fields."""

    kind: str
    format: FileFormat | None = Field(None, description="Default: from the file extension.")
    encoding: str | None = Field(None, description="CSV encoding; default: detected.")
    sheet: str | int | None = Field(None, description="Excel sheet name or index; default: all.")
    timezone: str | None = Field(None, description="Zone of naive local times; default: workspace.")
    natural_key: list[str] = Field(default_factory=list, description="Fields identifying a row.")
    group_by: str | None = Field(None, description="Rows sharing this field load or fail together.")
    fields: dict[str, FieldMap]

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return _known_zone(value)

    @model_validator(mode="after")
    def _keys_are_fields(self) -> Mapping:
        for name in [*self.natural_key, *([self.group_by] if self.group_by else [])]:
            if name not in self.fields:
                raise ValueError(f"`{name}` is used as a key but is not one of `fields`")
        return self

    def source_of(self, name: str) -> str:
        """The source column feeding field `name`."""
        return self.fields[name].source or name


MAPPING_FILE = ConfigFile(" in the mapping", "映射文件中", "docs/importing.md")


def parse_mapping(data: object, location: Path | str) -> Mapping:
    """Validate loaded YAML; raise one ConfigError naming the first bad key."""
    if not isinstance(data, dict):
        raise ConfigError("a mapping file must be a YAML mapping with `kind` and `fields`.",
                          location=location, fix="start from a built-in mapping in collect/mappings/",
                          message_zh="映射文件必须是包含 `kind` 和 `fields` 的 YAML。",
                          fix_zh="参考 collect/mappings/ 中的内置映射")
    try:
        return Mapping.model_validate(data)
    except ValidationError as invalid:
        raise config_error(invalid.errors()[0], location, Mapping, MAPPING_FILE) from None


def load_mapping(path: str | Path) -> Mapping:
    """Read and validate a mapping YAML file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as broken:
        raise ConfigError(f"cannot read the mapping: {broken}", location=path,
                          fix="check the path and the YAML indentation",
                          message_zh=f"无法读取映射文件：{broken}", fix_zh="检查路径和 YAML 缩进") from None
    return parse_mapping(data, path)


def builtin_kinds() -> list[str]:
    """Kinds that ship with a mapping for the demo's (and common) exports."""
    folder = resources.files("jingzhun.collect") / "mappings"
    return sorted(item.name.removesuffix(".yaml") for item in folder.iterdir() if item.name.endswith(".yaml"))


def builtin_mapping(kind: str) -> Mapping:
    """The shipped mapping for `kind`, or an error listing the kinds that have one."""
    if kind not in builtin_kinds():
        close = difflib.get_close_matches(kind, builtin_kinds(), n=1)
        hint = f"did you mean `{close[0]}`? " if close else ""
        raise ConfigError(
            f"no built-in mapping for kind `{kind}`.", field="kind",
            fix=f"{hint}pass --mapping M.yaml, or use one of: {', '.join(builtin_kinds())}",
            message_zh=f"没有类型 `{kind}` 的内置映射。",
            fix_zh=f"{hint}用 --mapping M.yaml 指定映射，或使用：{'、'.join(builtin_kinds())}",
        )
    text = (resources.files("jingzhun.collect") / "mappings" / f"{kind}.yaml").read_text(encoding="utf-8")
    return parse_mapping(yaml.safe_load(text), f"mappings/{kind}.yaml")
