"""`definitions/identity.yaml`: the ID graph's settings, validated with pydantic.

The file is optional; without it the defaults below apply. Example::

    id_types:                       # change a built-in type or declare a new one
      member_id: {max_per_person: 1}
      loyalty_card: {strength: strong, priority: 75, max_per_person: 1}
    blocklist:
      values: [匿名]                 # any type, compared case-insensitively
      by_type:
        phone: ["02112345678"]      # normalized like the data (this one to +862112345678)
      patterns:
        email: ['@example\\.com$']
    shared_value_threshold: 3       # a value seen with more persons than this is junk
    sources:
      demo-web: {user_id_type: member_id}   # by source name or source_id
      partner-app: {user_id_type: user_id}
    marketplace:                    # Tmall/JD/Douyin buyers linked to members (模糊匹配)
      enabled: true
      auto_link_threshold: 0.99

Lists extend the built-in blocklist unless `blocklist.include_defaults: false`.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from jingzhun.core.config_errors import ConfigFile, config_error
from jingzhun.core.errors import ConfigError
from jingzhun.core.workspace import Workspace
from jingzhun.identity.registry import DEFAULT_REGISTRY, Registry

CONFIG_FILE = "identity.yaml"
IDENTITY_FILE = ConfigFile(f" in {CONFIG_FILE}", f"{CONFIG_FILE} 中", "docs/identity.md")

# Values people type when they have nothing to type. Compared on the trimmed,
# lower-cased raw value, for every id type.
DEFAULT_JUNK_TOKENS = (
    "null", "unknown", "none", "0", "test", "-", "", "undefined", "nan", "n/a", "na",
    "无", "未知", "空", "测试",
)
# Test and placeholder numbers that cashiers and sign-up forms are full of.
DEFAULT_JUNK_PHONES = (
    "13800138000", "13888888888", "13900139000", "13000000000", "13800000000",
    "18888888888", "13333333333", "15555555555", "18000000000",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IdTypeSettings(_Strict):
    """Changes to one id type (or a new type) in the registry."""

    strength: Literal["strong", "weak"] | None = None
    priority: int | None = Field(None, ge=0, le=1000)
    max_per_person: int | None = Field(None, ge=1)
    unlimited: bool = Field(False, description="Remove a built-in max_per_person limit.")
    pii: bool | None = None


class Blocklist(_Strict):
    """Junk identifier values that never link anything."""

    include_defaults: bool = True
    values: list[str] = Field(default_factory=list, description="Any id type, case-insensitive.")
    by_type: dict[str, list[str]] = Field(default_factory=dict)
    patterns: dict[str, list[str]] = Field(default_factory=dict, description="Regex per id type.")

    def tokens(self) -> list[str]:
        base = list(DEFAULT_JUNK_TOKENS) if self.include_defaults else []
        return sorted({value.strip().lower() for value in base + self.values})

    def typed_values(self) -> list[tuple[str, str]]:
        pairs = [("phone", phone) for phone in DEFAULT_JUNK_PHONES] if self.include_defaults else []
        pairs += [(kind, value) for kind, values in self.by_type.items() for value in values]
        return sorted(set(pairs))


class SourceSettings(_Strict):
    """How one source's Segment ids map to id types."""

    user_id_type: str = "member_id"
    anonymous_id_type: str = "anonymous_id"


class MarketplaceSettings(_Strict):
    """`marketplace:`: link marketplace buyer ids to CRM members by masked phone, surname and
    city (jingzhun.identity.marketplace, docs/matching.md)."""

    enabled: bool = True
    buyer_types: list[str] = Field(
        default_factory=lambda: ["tmall_open_uid", "jd_pin", "douyin_user_id"],
        description="Platform buyer ids whose masked receiver is compared with the members.")
    auto_link_threshold: float = Field(
        0.99, gt=0, le=1, description="Link without review at or above this probability.")
    review_threshold: float = Field(
        0.5, gt=0, le=1, description="Queue a buyer and member for review at or above this.")

    @model_validator(mode="after")
    def _review_below_auto(self) -> MarketplaceSettings:
        if self.review_threshold > self.auto_link_threshold:
            raise ValueError("review_threshold must not exceed auto_link_threshold")
        return self


class IdentityConfig(_Strict):
    """Everything in `definitions/identity.yaml`."""

    id_types: dict[str, IdTypeSettings] = Field(default_factory=dict)
    aliases: dict[str, str] = Field(default_factory=dict, description="source key -> id type")
    blocklist: Blocklist = Field(default_factory=Blocklist)
    shared_value_threshold: int = Field(
        3, ge=1, description="A strong value seen with more distinct values of one limited type is junk.")
    weak_shared_threshold: int = Field(
        1, ge=1, description="The same for weak values (a cookie or device shared by two members).")
    default_user_id_type: str = "member_id"
    sources: dict[str, SourceSettings] = Field(default_factory=dict)
    trait_identifiers: list[str] = Field(
        default_factory=lambda: ["phone", "email", "wechat_openid", "wechat_unionid", "douyin_openid",
                                 "alipay_user_id", "wecom_external_userid"],
        description="identify-call traits that are identifiers (trait name = id type).")
    probabilistic_priority: int = Field(
        30, ge=0, le=1000, description="Merge priority of links from the probabilistic matcher.")
    max_rounds: int = Field(60, ge=1, description="Safety cap on connected-component rounds.")
    matching: dict[str, Any] | None = Field(
        None, description="The probabilistic matcher's section, validated by jingzhun.identity.matching.")
    marketplace: MarketplaceSettings = Field(default_factory=MarketplaceSettings)

    @model_validator(mode="after")
    def _known_types(self) -> IdentityConfig:
        known = set(self.registry().names())
        used = [("default_user_id_type", self.default_user_id_type)]
        used += [(f"sources.{name}.user_id_type", s.user_id_type) for name, s in self.sources.items()]
        used += [(f"sources.{name}.anonymous_id_type", s.anonymous_id_type) for name, s in self.sources.items()]
        used += [(f"trait_identifiers[{i}]", kind) for i, kind in enumerate(self.trait_identifiers)]
        used += [(f"aliases.{key}", kind) for key, kind in self.aliases.items()]
        used += [(f"blocklist.by_type.{kind}", kind) for kind in self.blocklist.by_type]
        used += [(f"marketplace.buyer_types[{i}]", kind) for i, kind in enumerate(self.marketplace.buyer_types)]
        for where, kind in used:
            if kind not in known:
                close = difflib.get_close_matches(kind, sorted(known), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"{where}: unknown id type {kind!r}.{hint}")
        return self

    def registry(self) -> Registry:
        """The registry with this file's changes applied."""
        changes: dict[str, dict[str, object]] = {}
        for name, settings in self.id_types.items():
            fields = settings.model_dump(exclude_none=True, exclude={"unlimited"})
            if settings.unlimited:
                fields["max_per_person"] = None
            changes[name] = fields
        registry = DEFAULT_REGISTRY.with_changes(changes)
        return Registry(registry.types, {**registry.aliases, **self.aliases})


def parse_identity_config(data: object, location: Path) -> IdentityConfig:
    """Validate loaded YAML; raise one ConfigError naming the key and the fix."""
    if not isinstance(data, dict):
        raise ConfigError(
            "identity.yaml must be a YAML mapping of keys to values.", location=location,
            fix="start from the example in docs/identity.md",
            message_zh="identity.yaml 必须是键值对形式的 YAML。", fix_zh="参考 docs/identity.md 中的示例",
        )
    try:
        return IdentityConfig.model_validate(data)
    except ValidationError as invalid:
        raise config_error(invalid.errors()[0], location, IdentityConfig, IDENTITY_FILE) from None


def load_identity_config(workspace: Workspace | None) -> IdentityConfig:
    """The workspace's identity settings (defaults when the file is absent)."""
    if workspace is None:
        return IdentityConfig()
    path = workspace.definitions_dir / CONFIG_FILE
    if not path.is_file():
        return IdentityConfig()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as broken:
        raise ConfigError(
            f"identity.yaml is not valid YAML: {getattr(broken, 'problem', broken)}.", location=path,
            fix="check the indentation and the colon after each key",
            message_zh="identity.yaml 不是有效的 YAML。", fix_zh="检查缩进和每个键后面的冒号",
        ) from None
    return parse_identity_config(data or {}, path)
