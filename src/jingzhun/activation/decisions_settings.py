"""`definitions/decisions.yaml`: the decision API's placements and how its snapshot is kept fresh.

A placement is a slot the site, app or push service asks about: where the offer comes
from, how many, whether it is a marketing message (then consent, suppressions, campaign
frequency caps and quiet hours apply, as for a campaign on that channel), how often one
person may be shown it per day, a coupon campaign whose personal codes it hands out,
and its copy — inline zh/en texts or a message template's texts for a channel. The file
is optional; it adds placements or replaces the defaults below by name. Example::

    placements:
      home_banner: {offers: 5, daily_cap: 50}
      checkout_coupon:
        source: recommendations
        kinds: [guess_you_like]
        offers: 1
        coupon_campaign: spring_sale          # codes issued by the campaign (coupons table)
        copy:
          zh: {title: "专属福利", body: "{{ coupon.name }}，券码 {{ coupon.code }}"}
          en: {title: "Your perk", body: "{{ coupon.name }}, code {{ coupon.code }}"}
      wechat_push: {message_channel: wechat, copy: {template: exclusive_benefit, channel: wechat}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from jingzhun.core.config_errors import ConfigFile, config_error
from jingzhun.core.errors import ConfigError
from jingzhun.core.workspace import Workspace
from jingzhun.profiles.tags import read_yaml

DECISIONS_FILE = "decisions.yaml"
DECISIONS_DOC = ConfigFile(f" in {DECISIONS_FILE}", f"{DECISIONS_FILE} 中", "docs/decisions.md")
Kind = Literal["guess_you_like", "popular", "new_arrival"]
MessageChannel = Literal["app_push", "sms", "wechat", "email"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CopyText(_Strict):
    title: str = Field(min_length=1)
    body: str = Field(min_length=1)


class PlacementCopy(_Strict):
    """Inline texts (zh and en, Jinja in the content sandbox) or a message template's texts."""

    template: str | None = Field(None, description="A message template id (definitions/templates).")
    channel: MessageChannel = Field("app_push", description="Whose texts of the template to use.")
    zh: CopyText | None = None
    en: CopyText | None = None

    @model_validator(mode="after")
    def _one_source(self) -> PlacementCopy:
        if self.template is None and (self.zh is None or self.en is None):
            raise ValueError("copy: write both zh and en (title and body), or name a template")
        if self.template is not None and (self.zh is not None or self.en is not None):
            raise ValueError("copy: give either a template or zh/en texts, not both")
        return self


class Placement(_Strict):
    """One slot an app or site asks the decision API to fill."""

    source: Literal["recommendations", "related", "cart"] = Field(
        "recommendations", description="The person's lists, a product's related products, or the cart's.")
    kinds: tuple[Kind, ...] = Field(("guess_you_like", "popular", "new_arrival"), min_length=1,
                                    description="Which lists, in order of preference (also fills related/cart).")
    offers: int = Field(3, ge=1, le=20, description="Products per decision.")
    message_channel: MessageChannel | None = Field(
        None, description="Set for a marketing message: consent, suppressions, caps and quiet hours apply.")
    daily_cap: int | None = Field(20, ge=1, le=100_000, description="Decisions per person per day (local).")
    coupon_campaign: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]{1,100}$",
                                        description="Hand out the person's code of this campaign, if they hold one.")
    copy_text: PlacementCopy | None = Field(None, alias="copy")


_BANNER = PlacementCopy(
    zh=CopyText(title="猜你喜欢", body="{{ person.greeting }}，{{ product.name }}{% if product.reason %}："
                                       "{{ product.reason }}{% endif %}"),
    en=CopyText(title="Picked for you", body="{{ product.name }}{% if product.reason %}: "
                                             "{{ product.reason }}{% endif %}"))
_RELATED = PlacementCopy(
    zh=CopyText(title="搭配推荐", body="{% for p in products %}{{ p.name }}{% if not loop.last %}、{% endif %}"
                                       "{% endfor %}"),
    en=CopyText(title="Goes well with", body="{% for p in products %}{{ p.name }}{% if not loop.last %}, "
                                             "{% endif %}{% endfor %}"))
_CART = PlacementCopy(
    zh=CopyText(title="凑单好物", body="{{ person.greeting }}，再看看{{ product.name }}（{{ product.price_text }}）"),
    en=CopyText(title="Add to your order", body="How about {{ product.name }} ({{ product.price_text }})?"))

DEFAULT_PLACEMENTS: dict[str, Placement] = {
    "home_banner": Placement(offers=3, daily_cap=30, copy=_BANNER),
    "product_page": Placement(source="related", offers=4, daily_cap=200, copy=_RELATED),
    "cart": Placement(source="cart", kinds=("guess_you_like",), offers=3, daily_cap=100, copy=_CART),
    "push": Placement(kinds=("guess_you_like",), offers=3, message_channel="app_push", daily_cap=1,
                      copy=PlacementCopy(template="guess_you_like", channel="app_push")),
}


class DecisionSettings(_Strict):
    """The whole file: placements (merged over the defaults) and the snapshot's upkeep."""

    placements: dict[str, Placement] = Field(default_factory=dict)
    fallback_offers: int = Field(20, ge=1, le=200, description="Popular products kept for unknown visitors.")
    check_seconds: float = Field(30, ge=1, le=3600, description="How often the server checks for new data.")
    max_age_seconds: float = Field(900, ge=10, le=86_400,
                                   description="Rebuild at least this often (campaign sends count toward caps).")
    flush_seconds: float = Field(1.0, gt=0, le=60, description="The decision log is written at least this often.")
    flush_rows: int = Field(1000, ge=1, le=100_000, description="… or when this many decisions wait.")

    @model_validator(mode="after")
    def _names(self) -> DecisionSettings:
        for name in self.placements:
            if not name.replace("_", "").isalnum() or not name[:1].isalpha() or len(name) > 64:
                raise ValueError(f"placements.{name}: a placement name is letters, digits and _ (e.g. home_banner)")
        return self

    def all_placements(self) -> dict[str, Placement]:
        return {**DEFAULT_PLACEMENTS, **self.placements}

    def message_channels(self) -> tuple[str, ...]:
        return tuple(sorted({p.message_channel for p in self.all_placements().values() if p.message_channel}))

    def coupon_campaigns(self) -> tuple[str, ...]:
        return tuple(sorted({p.coupon_campaign for p in self.all_placements().values() if p.coupon_campaign}))

    def max_offers(self) -> int:
        return max(p.offers for p in self.all_placements().values())


def load_decision_settings(workspace: Workspace) -> DecisionSettings:
    """The workspace's decisions.yaml; the defaults when it is absent."""
    path = workspace.definitions_dir / DECISIONS_FILE
    if not path.is_file():
        return DecisionSettings()
    return parse_decision_settings(read_yaml(path, ConfigError), path)


def parse_decision_settings(data: object, location: Path | str = DECISIONS_FILE) -> DecisionSettings:
    try:
        return DecisionSettings.model_validate(data or {})
    except ValidationError as invalid:
        raise config_error(invalid.errors()[0], location, DecisionSettings, DECISIONS_DOC) from None
