"""`definitions/measure.yaml`: the windows, thresholds and mappings the measure stage uses.

Every key has a default, so a workspace without the file measures with these::

    conversion_window: {delivery_days: 7, click_days: 7}
    lift: {alpha: 0.05, population: eligible, mixture_variance: 0.0001}
    attribution:
      lookback_days: 30
      half_life_days: 7
      session_gap_minutes: 30
      ad_sources: {baidu: baidu_sem, douyin: douyin_ads, wechat: wechat_moments, tmall: tmall_ztc,
                   weibo: weibo_ads, xiaohongshu: xiaohongshu}
      paid_mediums: [cpc, cpm, cpa, cpv, paid, paid_social, social, display]
    responses: {window_days: 180, smoothing: 8}
    budget: {lower: 0.5, upper: 2.0, bootstrap: 100, history_days: 0, calibration: {}}

Errors name the key and the fix in Chinese and English, like every other definitions file.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from jingzhun.core.config_errors import ConfigFile, config_error
from jingzhun.core.errors import JingzhunError
from jingzhun.core.workspace import Workspace

MEASURE_FILE = "measure.yaml"
MEASURE_DOC = ConfigFile(f" in {MEASURE_FILE}", f"{MEASURE_FILE} 中", "docs/measure.md")
# utm_source → the ad_spend channel it is paid from (the demo's ad platforms).
AD_SOURCES = {"baidu": "baidu_sem", "douyin": "douyin_ads", "wechat": "wechat_moments", "tmall": "tmall_ztc",
              "weibo": "weibo_ads", "xiaohongshu": "xiaohongshu"}
PAID_MEDIUMS = ("cpc", "cpm", "cpa", "cpv", "paid", "paid_social", "social", "display")


class MeasureError(JingzhunError):
    """A measurement cannot run as asked (bad settings, unknown campaign, too little data)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConversionWindow(_Strict):
    """An order counts for a message when placed within `delivery_days` of the send (or of the
    planned send, for the control arm), or within `click_days` of a click on it."""

    delivery_days: int = Field(7, ge=1, le=90)
    click_days: int = Field(7, ge=1, le=90)


class LiftSettings(_Strict):
    """`population`: `eligible` compares the sent with the held-out persons the policy would
    have sent to (per protocol, both decided by the same rules); `all` is intent to treat."""

    alpha: float = Field(0.05, gt=0, lt=0.5)
    population: str = Field("eligible", pattern="^(eligible|all)$")
    mixture_variance: float = Field(1e-4, gt=0, description="τ² of the mSPRT normal mixture (rate difference²)")


class AttributionSettings(_Strict):
    lookback_days: int = Field(30, ge=1, le=365)
    half_life_days: float = Field(7.0, gt=0)
    session_gap_minutes: int = Field(30, ge=1, le=24 * 60)
    ad_sources: dict[str, str] = Field(default_factory=lambda: dict(AD_SOURCES))
    paid_mediums: tuple[str, ...] = PAID_MEDIUMS


class ResponseSettings(_Strict):
    window_days: int = Field(180, ge=7, le=3650)
    smoothing: float = Field(8.0, ge=0, description="pseudo-sends of the channel's hourly rate per hour")


class BudgetSettings(_Strict):
    """Bounds are multiples of each channel's current daily spend; `calibration` multiplies a
    channel's platform-reported conversion value (e.g. an incrementality test's ratio)."""

    lower: float = Field(0.5, ge=0)
    upper: float = Field(2.0, gt=0)
    bootstrap: int = Field(100, ge=0, le=2000)
    history_days: int = Field(0, ge=0, description="days of history to fit on; 0 = all")
    recent_days: int = Field(90, ge=7, description="the current allocation is the mean of these last days")
    calibration: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _bounds(self) -> BudgetSettings:
        if self.lower > self.upper:
            raise ValueError("lower: must not be above `upper`")
        return self


class MeasureSettings(_Strict):
    conversion_window: ConversionWindow = ConversionWindow()
    lift: LiftSettings = LiftSettings()
    attribution: AttributionSettings = AttributionSettings()
    responses: ResponseSettings = ResponseSettings()
    budget: BudgetSettings = BudgetSettings()


def load_measure_settings(workspace: Workspace | None) -> MeasureSettings:
    """The workspace's `definitions/measure.yaml`, or the defaults."""
    if workspace is None:
        return MeasureSettings()
    path = workspace.definitions_dir / MEASURE_FILE
    if not path.is_file():
        return MeasureSettings()
    from jingzhun.profiles.tags import read_yaml

    data = read_yaml(path, MeasureError)
    try:
        return MeasureSettings.model_validate(data or {})
    except ValidationError as invalid:
        raise config_error(invalid.errors()[0], path, MeasureSettings, MEASURE_DOC) from None
