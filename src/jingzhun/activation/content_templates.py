"""Message templates as YAML definitions, validated with pydantic, and the content settings.

A template (definitions/templates/ID.yaml) is one piece of push copy — 个性推荐, 定制专属福利,
猜你喜欢, 热门推荐, 新品上市, 限时特惠, 专属折扣, or any kind the marketer writes — with a
zh and an en variant per channel it may go out on, the products it shows and the coupon
it carries. The starter library ships in this package (`templates/`) and is copied into
a workspace by `jingzhun init` and `jingzhun demo generate`; a workspace file with the same
id replaces the starter, and `enabled: false` switches one off.

`definitions/templates/_settings.yaml` holds what every template shares: the brand, the
SMS signature registered with the carriers, the shop's URL and the unsubscribe page.

Every text is a Jinja template; the loader remembers the file line each one starts on,
so an error inside it can name the line of the YAML file, not of the snippet.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from jingzhun.activation.channels import CHANNELS, ContentError, wechat_key_type
from jingzhun.activation.coupons import CouponDefinition
from jingzhun.core.workspace import Workspace
from jingzhun.profiles.tags import read_yaml

LIBRARY_DIR = Path(__file__).parent / "templates"
TEMPLATES_DIR = "templates"  # under the workspace's definitions/
SETTINGS_FILE = "_settings.yaml"
TEMPLATE_KINDS = ("personalized_recommendation", "exclusive_benefit", "guess_you_like", "trending",
                  "new_arrival", "flash_sale", "exclusive_discount", "custom")
KIND_NAMES = {"personalized_recommendation": "个性推荐", "exclusive_benefit": "定制专属福利",
              "guess_you_like": "猜你喜欢", "trending": "热门推荐", "new_arrival": "新品上市",
              "flash_sale": "限时特惠", "exclusive_discount": "专属折扣", "custom": "自定义"}
LANGUAGES = ("zh", "en")


@dataclass(frozen=True)
class SourceMap:
    """Where each text of a template starts in its file, for error messages."""

    path: str | None
    lines: dict[tuple[str, ...], int]

    def line_of(self, key: tuple[str, ...], inner_line: int | None) -> int | None:
        """The file line of line `inner_line` (1-based) of the text at `key`."""
        start = self.lines.get(key)
        if start is None:
            return inner_line
        return start + (inner_line - 1 if inner_line else 0)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Text(_Model):
    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)


class Variant(_Model):
    """One language of one channel: which parts it has depends on the channel."""

    title: str | None = None
    body: str | None = None
    html: str | None = None
    fields: dict[str, str] = Field(default_factory=dict)
    remark: str | None = None


# Which parts each channel needs (and may have).
_PARTS: dict[str, tuple[set[str], set[str]]] = {
    "sms": ({"body"}, {"body"}),
    "app_push": ({"title", "body"}, {"title", "body"}),
    "email": ({"title", "body"}, {"title", "body", "html"}),
    "wechat": ({"fields"}, {"title", "fields", "remark"}),
}


class ChannelContent(_Model):
    """A channel's copy in zh and en, and the channel options the template chooses."""

    zh: Variant | None = None
    en: Variant | None = None
    max_parts: int | None = Field(None, ge=1, le=7, description="SMS: most parts one message may take.")
    truncate: bool = Field(False, description="Push body / WeChat thing fields: cut with … when too long.")
    template_id: str | None = Field(None, description="WeChat: the template id registered in the MP admin.")

    def variant(self, language: str) -> Variant | None:
        return self.zh if language == "zh" else self.en


class ProductSource(_Model):
    """Which products a message shows: the person's recommendations, or a fallback list.

    `recommendations` reads the `recommendations` table (optionally only some `kinds`)
    and fills up with popular products in the person's favourite category; `popular`
    and `new_arrivals` rank the catalogue directly.
    """

    source: Literal["recommendations", "popular", "new_arrivals", "none"] = "recommendations"
    kinds: list[str] = Field(default_factory=list)
    count: int = Field(3, ge=0, le=10)


class MessageTemplate(_Model):
    """One template as written in YAML (see docs/content.md)."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{1,62}$")
    kind: Literal["personalized_recommendation", "exclusive_benefit", "guess_you_like", "trending",
                  "new_arrival", "flash_sale", "exclusive_discount", "custom"] = "custom"
    name: Text
    description: Text | None = None
    purpose: Literal["marketing", "transactional"] = "marketing"
    products: ProductSource = Field(default_factory=ProductSource)
    coupon: CouponDefinition | None = None
    link: str | None = Field(None, description="Landing page (a Jinja text); default the site's URL.")
    channels: dict[Literal["sms", "wechat", "app_push", "email"], ChannelContent] = Field(min_length=1)
    enabled: bool = True
    _source: SourceMap = PrivateAttr(default_factory=lambda: SourceMap(None, {}))

    @model_validator(mode="after")
    def _parts_fit_channels(self) -> MessageTemplate:
        for channel, content in self.channels.items():
            needed, allowed = _PARTS[channel]
            if content.zh is None and content.en is None:
                raise ValueError(f"channels.{channel}: write at least one language (zh or en).")
            for language in LANGUAGES:
                variant = content.variant(language)
                if variant is None:
                    continue
                given = {part for part in ("title", "body", "html", "fields", "remark") if getattr(variant, part)}
                where = f"channels.{channel}.{language}"
                if needed - given:
                    raise ValueError(f"{where}: {channel} needs {', '.join(sorted(needed - given))}.")
                if given - allowed:
                    raise ValueError(f"{where}: {channel} has no {', '.join(sorted(given - allowed))}.")
                bad = [key for key in variant.fields if wechat_key_type(key) is None]
                if bad:
                    raise ValueError(f"{where}.fields: {bad[0]!r} is not a WeChat field key "
                                     f"(first, keyword1…, remark, or thing1, time2, amount3 …).")
        return self

    def texts(self, channel: str, language: str) -> dict[str, str]:
        """The Jinja texts of one variant by part (`fields.thing1`, `title`, …), in order."""
        content = self.channels.get(channel)  # type: ignore[call-overload]
        variant = content.variant(language) if content is not None else None
        if variant is None:
            return {}
        parts = {part: getattr(variant, part) for part in ("title", "body", "html", "remark")}
        parts.update({f"fields.{key}": value for key, value in variant.fields.items()})
        return {part: text for part, text in parts.items() if text}


class ContentSettings(_Model):
    """definitions/templates/_settings.yaml: what every template shares."""

    brand: Text | None = None
    sms_signature: Text | None = Field(None, description="The 【签名】 registered with the SMS provider.")
    site_url: str | None = Field(None, pattern=r"^https?://\S+$")
    unsubscribe_url: str | None = Field(None, pattern=r"^https?://\S+$")
    sms_max_parts: int = Field(2, ge=1, le=7)

    @model_validator(mode="after")
    def _signature_length(self) -> ContentSettings:
        for text in (self.sms_signature.zh, self.sms_signature.en) if self.sms_signature else ():
            if not 2 <= len(text) <= 12 or re.search(r"[【】\[\]]", text):
                raise ValueError(f"sms_signature: {text!r} must be 2-12 characters, without brackets "
                                 f"(they are added: 【{text.strip('【】[]')}】).")
        return self


def source_map(template: MessageTemplate) -> SourceMap:
    """Where the template's texts start in its file (empty for one built in code)."""
    return template._source


# ---- reading ---------------------------------------------------------------------------------------


def _line_map(text: str) -> dict[tuple[str, ...], int]:
    """Each scalar's first content line (1-based) by its key path."""
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                walk(value, (*path, str(key.value)))
        elif isinstance(node, yaml.ScalarNode):
            lines[path] = node.start_mark.line + 1 + (1 if node.style in ("|", ">") else 0)

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
    return lines


def _read_yaml(path: Path) -> tuple[object, dict[tuple[str, ...], int]]:
    """The file's data (a syntax error names the line) and where each text starts."""
    data = read_yaml(path, ContentError)
    return data, _line_map(path.read_text(encoding="utf-8"))


def parse_template(data: object, location: str | Path | None = None,
                   lines: dict[tuple[str, ...], int] | None = None) -> MessageTemplate:
    """Validate template data; an error names the key, the file and its line."""
    if isinstance(data, MessageTemplate):
        return data
    try:
        template = MessageTemplate.model_validate(data)
    except ValidationError as invalid:
        first = invalid.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        reason = str(first["msg"]).removeprefix("Value error, ")
        if not key:
            key, _, reason = reason.partition(": ")
        line = (lines or {}).get(tuple(key.split(".")))
        at = f" (line {line})" if line else ""
        raise ContentError(f"invalid template key `{key}`{at}: {reason}", field=key, location=location,
                           fix="see docs/content.md for the template format",
                           message_zh=f"模板的 `{key}`{at} 无效：{reason}", fix_zh="模板格式见 docs/content.md") from None
    template._source = SourceMap(str(location) if location else None, lines or {})
    return template


def _folder_templates(folder: Path) -> dict[str, MessageTemplate]:
    found: dict[str, MessageTemplate] = {}
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        if path.name.startswith("_"):
            continue
        data, lines = _read_yaml(path)
        template = parse_template(data, path, lines)
        if template.id in found:
            raise ContentError(f"template id {template.id!r} is defined twice in {folder}.", field="id",
                               location=path, fix="give each template its own id",
                               message_zh=f"模板 ID {template.id!r} 在 {folder} 中重复定义。", fix_zh="每个模板使用不同的 ID")
        found[template.id] = template
    return found


def workspace_templates_dir(workspace: Workspace) -> Path:
    return workspace.definitions_dir / TEMPLATES_DIR


def list_templates(workspace: Workspace, *, include_disabled: bool = False) -> list[MessageTemplate]:
    """The starter library overlaid with the workspace's templates (same id replaces)."""
    merged = {**_folder_templates(LIBRARY_DIR), **_folder_templates(workspace_templates_dir(workspace))}
    return [template for template in merged.values() if include_disabled or template.enabled]


def load_template(workspace: Workspace, template_id: str) -> MessageTemplate:
    """One template by id; an unknown id lists the ones there are."""
    templates = {template.id: template for template in list_templates(workspace, include_disabled=True)}
    if template_id not in templates:
        known = ", ".join(sorted(templates))
        raise ContentError(f"no message template {template_id!r}.", field="template",
                           fix=f"use one of: {known}, or add definitions/templates/{template_id}.yaml",
                           message_zh=f"没有消息模板 {template_id!r}。",
                           fix_zh=f"可用模板：{known}；或新建 definitions/templates/{template_id}.yaml")
    return templates[template_id]


def load_settings(workspace: Workspace | None) -> ContentSettings:
    """The workspace's _settings.yaml, else the starter one (which names no brand)."""
    folder = workspace_templates_dir(workspace) if workspace is not None else None
    path = folder / SETTINGS_FILE if folder is not None and (folder / SETTINGS_FILE).is_file() \
        else LIBRARY_DIR / SETTINGS_FILE
    data, _ = _read_yaml(path)
    try:
        return ContentSettings.model_validate(data or {})
    except ValidationError as invalid:
        first = invalid.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "settings"
        reason = str(first["msg"]).removeprefix("Value error, ")
        raise ContentError(f"invalid `{key}` in {SETTINGS_FILE}: {reason}", field=key, location=path,
                           fix="see docs/content.md, 'Settings'", message_zh=f"{SETTINGS_FILE} 中 `{key}` 无效：{reason}",
                           fix_zh="见 docs/content.md 的“设置”一节") from None


def install_starter_templates(workspace_root: Path, *, brand_zh: str | None = None, brand_en: str | None = None,
                              site_url: str | None = None, overwrite: bool = False) -> list[Path]:
    """Copy the starter templates into definitions/templates/ and write its _settings.yaml.

    The brand (zh and en) becomes the brand name and the SMS signature; without it the
    settings name none, and SMS previews ask for one (a signature must be the one the
    carriers know). Files already there are kept unless `overwrite`.
    """
    brand = Text(zh=brand_zh, en=brand_en or brand_zh) if brand_zh else None
    target = Path(workspace_root) / "definitions" / TEMPLATES_DIR
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sorted(LIBRARY_DIR.glob("*.yaml")):
        if source.name != SETTINGS_FILE and (overwrite or not (target / source.name).exists()):
            shutil.copyfile(source, target / source.name)
            written.append(target / source.name)
    settings_path = target / SETTINGS_FILE
    if overwrite or not settings_path.exists():
        settings = {"brand": brand.model_dump() if brand else None,
                    "sms_signature": brand.model_dump() if brand else None,
                    "site_url": site_url, "unsubscribe_url": None, "sms_max_parts": 2}
        header = ("# What every message template shares (see docs/content.md).\n"
                  "# sms_signature must be the 【签名】 registered with your SMS provider.\n")
        settings_path.write_text(header + yaml.safe_dump(settings, allow_unicode=True, sort_keys=False),
                                 encoding="utf-8")
        written.append(settings_path)
    return written


def channels_of(template: MessageTemplate) -> list[str]:
    """The template's channels in the usual order."""
    return [channel for channel in CHANNELS if channel in template.channels]
