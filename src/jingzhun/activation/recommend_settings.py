"""`definitions/recommend.yaml`: the recommender's settings, validated with pydantic.

The file is optional; without it the defaults below apply. Example::

    k: 10                         # recommendations per person and kind
    action_weights: {purchase: 5, cart: 3, view: 1}
    similarity_half_life_days: 180
    new_arrival_days: 60          # 新品上市: launched in the last 60 days
    default_cycle_days: 90        # a consumable may be recommended again after this
    cycle_days: {foundation: 90, facial_mask: 30}   # by subcategory, else category
    evaluation: {test_days: 60}
    category_labels:
      apparel: {zh: 服饰, en: apparel}

Every number changes what is recommended, so every number is part of the model
version (`RecommendSettings.fingerprint`): two runs with the same settings on the
same data carry the same version, and a version always leads back to its evaluation.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from jingzhun.core.config_errors import ConfigFile, config_error
from jingzhun.core.errors import ConfigError
from jingzhun.core.workspace import Workspace
from jingzhun.profiles.tags import read_yaml

CONFIG_FILE = "recommend.yaml"
RECOMMEND_FILE = ConfigFile(f" in {CONFIG_FILE}", f"{CONFIG_FILE} 中", "docs/recommendations.md")

# Days until a consumable is typically bought again: a foundation lasts about three
# months, a sheet-mask box one, a perfume half a year. Keys are subcategories (or
# categories); the workspace file overrides or extends them.
DEFAULT_CYCLE_DAYS: dict[str, int] = {
    "foundation": 90, "cushion": 90, "lipstick": 120, "eyeshadow": 150, "facial_mask": 30,
    "cleanser": 60, "toner": 75, "moisturizer": 75, "serum": 75, "sunscreen": 60, "perfume": 180,
    "beauty_sponge": 45, "towel": 180, "aroma_candle": 60, "diffuser": 90,
}

# How categories read in reasons; codes not listed are shown as they are.
DEFAULT_CATEGORY_LABELS: dict[str, dict[str, str]] = {
    "apparel": {"zh": "服饰", "en": "apparel"}, "cosmetics": {"zh": "美妆", "en": "cosmetics"},
    "beauty_tools": {"zh": "美容工具", "en": "beauty tools"}, "home": {"zh": "家居", "en": "home"},
    "shoes": {"zh": "鞋履", "en": "shoes"}, "bags": {"zh": "箱包", "en": "bags"},
    "food": {"zh": "食品", "en": "food"}, "electronics": {"zh": "数码", "en": "electronics"},
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActionWeights(_Strict):
    """How much one interaction says about a person's interest in a product."""

    purchase: float = Field(5.0, gt=0)
    cart: float = Field(3.0, ge=0)
    view: float = Field(1.0, ge=0)


class EvaluationSettings(_Strict):
    """The offline test: train before a cut-off, test on purchases in the days after it."""

    test_days: int = Field(60, ge=1, le=365, description="Days after the cut-off whose purchases are the test.")
    k: int | None = Field(None, ge=1, le=100, description="List length judged; default the recommender's k.")
    folds: int = Field(2, ge=1, le=24, description="Consecutive test windows ending at the latest data, pooled: "
                                                   "a small shop's single window has too few buyers to judge.")


class GuessSettings(_Strict):
    """猜你喜欢: how popularity, the person's tastes and similar items combine (recommend_lists.py)."""

    recent_items: int = Field(10, ge=1, description="The person's most recent items whose neighbours are candidates.")
    similar_boost: float = Field(
        0.5, ge=0, description="Score x (1 + this x similarity to the person's recent items, 0..1).")
    taste_prior: float = Field(
        4.0, ge=0, description="Visits (person x category x day) the person's category shares start from: "
                               "the store's shares, so one view does not decide everything.")
    taste_half_life_days: float = Field(180.0, gt=0, description="A visit this old counts half in tastes.")
    popularity_prior: float = Field(
        0.5, ge=0, description="Decayed purchases a product never bought is taken to have (so similar new "
                               "or rarely bought products can be recommended).")
    pool: int = Field(60, ge=1, description="Best sellers per category (and store-wide) considered.")

    def values(self) -> dict[str, float | int]:
        """The SQL placeholders of the 猜你喜欢 query."""
        return {"recent_items": self.recent_items, "similar_boost": float(self.similar_boost),
                "taste_prior": float(self.taste_prior),
                "popularity_prior": float(self.popularity_prior), "pool": self.pool}


class CategoryLabel(_Strict):
    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)


class RecommendSettings(_Strict):
    """Everything in `definitions/recommend.yaml`."""

    k: int = Field(10, ge=1, le=100, description="Recommendations kept per person and kind.")
    action_weights: ActionWeights = Field(default_factory=ActionWeights)
    similarity_half_life_days: float = Field(
        180.0, gt=0, description="Interactions this old count half in item similarity.")
    recent_half_life_days: float = Field(
        60.0, gt=0, description="…and half in what a person is interested in now.")
    popularity_half_life_days: float = Field(90.0, gt=0, description="…and half in popularity.")
    max_items_per_person: int = Field(
        50, ge=2, description="A person's strongest items used for similarity (bounds the self-join).")
    neighbours: int = Field(30, ge=1, le=200, description="Most similar items kept per item.")
    similarity_alpha: float = Field(
        0.5, ge=0, le=1, description="Asymmetric cosine: 0.5 is the cosine, 1 the share of i's interest that went to j.")
    similarity_shrinkage: float = Field(
        2.0, ge=0, description="Cosine × support / (support + this): few shared persons count less.")
    guess: GuessSettings = Field(default_factory=GuessSettings)
    min_group_buyers: int = Field(
        30, ge=1, description="A segment (gender × age band × city …) needs this many buyers to rank its own "
                              "popular items; smaller ones use the next broader segment.")
    popular_pool: int = Field(60, ge=1, description="Popular items per segment kept as candidates.")
    new_arrival_days: int = Field(60, ge=1, description="新品上市: products launched in these last days.")
    default_cycle_days: int = Field(90, ge=1, description="Repurchase cycle of a consumable not in cycle_days.")
    cycle_days: dict[str, int] = Field(default_factory=dict,
                                       description="Repurchase cycle in days by subcategory or category.")
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    category_labels: dict[str, CategoryLabel] = Field(default_factory=dict)

    def cycles(self) -> dict[str, int]:
        """The built-in repurchase cycles with this file's changes."""
        return {**DEFAULT_CYCLE_DAYS, **self.cycle_days}

    def labels(self) -> dict[str, CategoryLabel]:
        """The built-in category labels with this file's changes."""
        built_in = {key: CategoryLabel(**value) for key, value in DEFAULT_CATEGORY_LABELS.items()}
        return {**built_in, **self.category_labels}

    def fingerprint(self) -> dict[str, object]:
        """Every setting that changes the lists, as stored in `model_runs.params`."""
        return self.model_dump(mode="json", exclude={"category_labels"})


def parse_recommend_settings(data: object, location: Path | str = CONFIG_FILE) -> RecommendSettings:
    """Validate loaded YAML; raise one ConfigError naming the key and the fix."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{CONFIG_FILE} must be a YAML mapping of keys to values.", location=location,
            fix="start from the example in docs/recommendations.md",
            message_zh=f"{CONFIG_FILE} 必须是键值对形式的 YAML。", fix_zh="参考 docs/recommendations.md 中的示例",
        )
    try:
        return RecommendSettings.model_validate(data)
    except ValidationError as invalid:
        raise config_error(invalid.errors()[0], location, RecommendSettings, RECOMMEND_FILE) from None


def load_recommend_settings(workspace: Workspace | None) -> RecommendSettings:
    """The workspace's recommender settings (defaults when the file is absent)."""
    path = workspace.definitions_dir / CONFIG_FILE if workspace is not None else None
    if path is None or not path.is_file():
        return RecommendSettings()
    return parse_recommend_settings(read_yaml(path, ConfigError) or {}, path)


def model_version(settings: RecommendSettings, as_of: object) -> str:
    """A short hash of the settings and the instant the model was trained up to.

    Same settings on the same data give the same version on every engine, so a
    recommendation row's `model_version` leads to exactly one `model_runs` row.
    """
    document = json.dumps({"model": "recommend", "params": settings.fingerprint(), "as_of": str(as_of)},
                          sort_keys=True)
    return hashlib.sha256(document.encode()).hexdigest()[:16]
