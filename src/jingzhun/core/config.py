"""The workspace configuration file, `jingzhun.yaml`, validated with pydantic.

A marketing team edits this file by hand, so every mistake must come back as one
sentence that names the key and the fix, never as a pydantic dump or a traceback.
Unknown keys are refused (a typo such as `timzone` would otherwise be ignored
silently) and the closest known key is suggested.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jingzhun.core.config_errors import ConfigFile, config_error
from jingzhun.core.errors import ConfigError

CONFIG_FILE = "jingzhun.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DuckDBSettings(_Strict):
    """Where the embedded database lives and how much of the machine it may use."""

    path: str = Field("warehouse.duckdb", description="Database file, relative to the workspace.")
    threads: int | None = Field(None, ge=1, description="Worker threads; default: all cores.")
    memory_limit: str | None = Field(None, description="e.g. '8GB'; default: half the machine's RAM.")


class SparkSettings(_Strict):
    """How to reach Spark and where its Parquet tables live."""

    master: str = Field("local[*]", description="spark.master, e.g. local[*], yarn, spark://host:7077")
    warehouse: str = Field(
        "spark-warehouse", description="Folder or URI for Parquet tables, relative to the workspace."
    )
    app_name: str = "jingzhun"
    conf: dict[str, str] = Field(default_factory=dict, description="Extra spark.* settings.")


class EngineSettings(_Strict):
    """Which engine runs the pipeline by default."""

    kind: Literal["duckdb", "spark"] = "duckdb"
    duckdb: DuckDBSettings = Field(default_factory=DuckDBSettings)
    spark: SparkSettings = Field(default_factory=SparkSettings)


class PiiPolicy(_Strict):
    """How personal identifiers (phone, email) are stored.

    `plain` keeps normalized values; `salted_hash` stores SHA-256(salt + value), the
    salt kept outside the config file so the config can be shared or committed.
    """

    mode: Literal["plain", "salted_hash"] = "plain"
    salt_file: str = Field(".jingzhun/pii_salt", description="File holding the salt (salted_hash).")
    default_country_code: str = Field("86", pattern=r"^[1-9][0-9]{0,2}$")


class WorkspaceConfig(_Strict):
    """Everything in `jingzhun.yaml`."""

    name: str = Field(..., min_length=1, max_length=100)
    timezone: str = "Asia/Shanghai"
    currency: str = "CNY"
    language: Literal["zh", "en"] = "zh"
    engine: EngineSettings = Field(default_factory=EngineSettings)
    pii: PiiPolicy = Field(default_factory=PiiPolicy)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as missing:
            close = difflib.get_close_matches(value, sorted(available_timezones()), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown time zone {value!r}.{hint}") from missing
        return value

    @field_validator("currency")
    @classmethod
    def _iso_currency(cls, value: str) -> str:
        if len(value) != 3 or not value.isalpha() or not value.isupper():
            raise ValueError(f"{value!r} is not an ISO 4217 code such as CNY, HKD or USD.")
        return value


_FIXES: dict[str, tuple[str, str]] = {
    "timezone": ("use an IANA time zone name such as Asia/Shanghai", "请使用 IANA 时区名，例如 Asia/Shanghai"),
    "currency": ("use a three-letter ISO 4217 code such as CNY", "请使用三位 ISO 4217 币种代码，例如 CNY"),
    "engine.kind": ("use duckdb (one machine) or spark (a cluster)", "请填写 duckdb（单机）或 spark（集群）"),
    "pii.mode": ("use plain or salted_hash", "请填写 plain 或 salted_hash"),
    "language": ("use zh or en", "请填写 zh 或 en"),
    "name": ("give the workspace a short name, e.g. name: 我的品牌", "请为工作区起一个简短的名字，例如 name: 我的品牌"),
}


def parse_config(data: object, location: Path) -> WorkspaceConfig:
    """Validate already-loaded YAML data; raise one ConfigError for the first problem."""
    if not isinstance(data, dict):
        raise ConfigError(
            "the file must be a YAML mapping of keys to values.", location=location,
            fix="start from the file `jingzhun init` writes",
            message_zh="文件必须是键值对形式的 YAML。", fix_zh="参考 `jingzhun init` 生成的文件",
        )
    try:
        return WorkspaceConfig.model_validate(data)
    except ValidationError as invalid:
        raise config_error(invalid.errors()[0], location, WorkspaceConfig, ConfigFile(), _FIXES) from None


def load_config(path: Path) -> WorkspaceConfig:
    """Read and validate `jingzhun.yaml`."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as broken:
        mark = getattr(broken, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            f"not valid YAML{where}: {getattr(broken, 'problem', broken)}.", location=path,
            fix="check the indentation and the colon after each key",
            message_zh=f"不是有效的 YAML{where}。", fix_zh="检查缩进和每个键后面的冒号",
        ) from None
    return parse_config(data or {}, path)


def dump_config(config: WorkspaceConfig) -> str:
    """The YAML text for `config`, keys in declaration order, Chinese kept readable."""
    return yaml.safe_dump(config.model_dump(mode="json"), allow_unicode=True, sort_keys=False)
