"""The identifier-type registry: what kinds of customer ids exist and how much each is trusted.

Every id_type string used anywhere in jingzhun is declared here, with:

- `strength`: `strong` ids (phone, member id, unionid, platform user ids) identify a person;
  `weak` ones (browser cookies, device ids) identify a device that people may share.
- `priority` (merge priority): when links conflict, the link whose weaker end has the
  lower priority is the one dropped (see docs/identity.md, "Limits").
- `max_per_person`: how many distinct values of this type one person may hold; `None`
  is unlimited. Two persons each holding a different value of a type with limit 1 are
  never merged.
- `normalizer`: which SQL normalization applies (phone, masked_phone, email, md5,
  sha256, text).
- `pii`: stored as a salted SHA-256 under the workspace's `pii.mode: salted_hash`.
- `links`: `False` for evidence-only types (masked phones) that never join anything.

`definitions/identity.yaml` may change priorities and limits or add types
(see `jingzhun.identity.config`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Strength = Literal["strong", "weak"]
Normalizer = Literal["phone", "masked_phone", "email", "md5", "sha256", "text"]


@dataclass(frozen=True)
class IdType:
    """One kind of identifier and the rules the ID graph applies to it."""

    name: str
    strength: Strength
    priority: int
    max_per_person: int | None = None
    normalizer: Normalizer = "text"
    pii: bool = False
    links: bool = True
    label_zh: str = ""
    label_en: str = ""

    @property
    def limited(self) -> bool:
        return self.max_per_person is not None


def _t(name: str, strength: Strength, priority: int, max_per_person: int | None, zh: str, en: str,
       normalizer: Normalizer = "text", pii: bool = False, links: bool = True) -> IdType:
    return IdType(name, strength, priority, max_per_person, normalizer, pii, links, zh, en)


# member_id allows two per person: the CRM holds people who registered twice (a second
# member id sharing their phone); those are duplicates that should merge. A third member
# id on one person is refused, so a shared phone cannot chain a store's members together.
DEFAULT_ID_TYPES: tuple[IdType, ...] = (
    _t("member_id", "strong", 100, 2, "会员编号", "member id"),
    _t("wechat_unionid", "strong", 95, 1, "微信 UnionID", "WeChat unionid"),
    _t("alipay_user_id", "strong", 90, 1, "支付宝用户 ID", "Alipay user id"),
    _t("tmall_open_uid", "strong", 90, 1, "天猫买家 open_uid", "Tmall buyer open_uid"),
    _t("jd_pin", "strong", 90, 1, "京东 pin", "JD pin"),
    _t("douyin_user_id", "strong", 90, 1, "抖音用户 ID", "Douyin user id"),
    _t("weibo_user_id", "strong", 90, 1, "微博用户 ID", "Weibo user id"),
    _t("wecom_external_userid", "strong", 85, None, "企业微信外部联系人 ID", "WeCom external_userid"),
    _t("phone", "strong", 80, None, "手机号", "phone", normalizer="phone", pii=True),
    _t("email", "strong", 70, None, "邮箱", "e-mail", normalizer="email", pii=True),
    _t("wechat_openid", "strong", 65, None, "微信 OpenID（小程序/应用）", "WeChat openid (app)"),
    _t("wechat_oa_openid", "strong", 65, None, "公众号 OpenID", "WeChat official-account openid"),
    _t("douyin_openid", "strong", 65, None, "抖音 OpenID", "Douyin openid"),
    _t("user_id", "strong", 60, None, "用户 ID", "user id"),
    _t("phone_md5", "strong", 50, None, "手机号 MD5", "phone MD5", normalizer="md5"),
    _t("phone_sha256", "strong", 50, None, "手机号 SHA-256", "phone SHA-256", normalizer="sha256"),
    _t("email_md5", "strong", 50, None, "邮箱 MD5", "e-mail MD5", normalizer="md5"),
    _t("email_sha256", "strong", 50, None, "邮箱 SHA-256", "e-mail SHA-256", normalizer="sha256"),
    _t("device_id", "weak", 20, None, "设备 ID", "device id"),
    _t("anonymous_id", "weak", 10, None, "匿名 ID（Cookie）", "anonymous id (cookie)"),
    _t("phone_masked", "weak", 0, None, "掩码手机号", "masked phone", normalizer="masked_phone", links=False),
)

# Keys some sources use for the canonical types above.
DEFAULT_ALIASES: dict[str, str] = {
    "mobile": "phone",
    "openid": "wechat_openid",
    "unionid": "wechat_unionid",
    "buyer_open_uid": "tmall_open_uid",
    "buyer_pin": "jd_pin",
}


@dataclass(frozen=True)
class Registry:
    """The id types in force for one workspace (defaults plus identity.yaml changes)."""

    types: tuple[IdType, ...]
    aliases: dict[str, str]

    def get(self, name: str) -> IdType | None:
        return next((kind for kind in self.types if kind.name == name), None)

    def names(self) -> list[str]:
        return [kind.name for kind in self.types]

    @property
    def linkable(self) -> tuple[IdType, ...]:
        return tuple(kind for kind in self.types if kind.links)

    @property
    def limited(self) -> tuple[IdType, ...]:
        return tuple(kind for kind in self.types if kind.limited)

    def with_changes(self, changes: dict[str, dict[str, object]]) -> Registry:
        """A registry with per-type changes applied; unknown names become new types."""
        by_name = {kind.name: kind for kind in self.types}
        for name, fields in changes.items():
            base = by_name.get(name) or IdType(name, "strong", 60)
            by_name[name] = replace(base, **fields)
        return Registry(tuple(by_name.values()), dict(self.aliases))


DEFAULT_REGISTRY = Registry(DEFAULT_ID_TYPES, dict(DEFAULT_ALIASES))
