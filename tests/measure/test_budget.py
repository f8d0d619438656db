"""Channel budget: the demo's planted response curves recovered within stated tolerances, more budget
for the under-invested channel, and the allocator against a general-purpose optimizer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from jingzhun.core import Workspace
from jingzhun.engine import open_engine
from jingzhun.measure import Curve, MeasureError, allocate, fit_curve, plan_budget
from jingzhun.measure.budget import adstock, daily_series, fit_channels
from jingzhun.measure.settings import BudgetSettings

# Tolerances: decay ±0.08 (absolute), half-saturation ±25%, maximum effect ±10%, and the fitted
# daily incremental sales explain at least 95% of the true series' variance.
DECAY, HALF, MAX_EFFECT, R2 = 0.08, 0.25, 0.10, 0.95


@pytest.fixture(scope="module")
def demo_fits(portrayed: Workspace, truth: dict):
    """Each channel fitted on its platform-reported value, calibrated by the over-attribution an
    incrementality test would measure (the demo states it), without bootstrap."""
    channels = truth["ads"]["channels"]
    calibration = {name: 1 / params["platform_over_attribution"] for name, params in channels.items()}
    with open_engine(portrayed, read_only=True) as engine:
        wide, _ = daily_series(engine)
    return wide, {fit.channel: fit for fit in fit_channels(wide, BudgetSettings(bootstrap=0, calibration=calibration))}


def test_planted_curves_are_recovered(demo_fits, truth: dict, portrayed: Workspace) -> None:
    wide, fits = demo_fits
    response = pd.read_parquet(portrayed.root / "demo-truth" / "ad_response.parquet")
    response["date"] = pd.to_datetime(response["date"])
    for channel, params in truth["ads"]["channels"].items():
        curve = fits[channel].curve
        assert abs(curve.decay - params["decay"]) <= DECAY, channel
        assert abs(curve.half_saturation / params["half_saturation"] - 1) <= HALF, channel
        assert abs(curve.max_effect / params["max_effect"] - 1) <= MAX_EFFECT, channel
        true = response[response.channel == channel].set_index("date")["incremental_sales"]
        a = adstock(wide["spend"][channel].to_numpy(), curve.decay)
        fitted = pd.Series(curve.max_effect * a / (a + curve.half_saturation), index=wide.index)
        both = pd.concat([fitted, true], axis=1, join="inner").to_numpy()
        r2 = 1 - ((both[:, 0] - both[:, 1]) ** 2).sum() / ((both[:, 1] - both[:, 1].mean()) ** 2).sum()
        assert r2 >= R2, (channel, r2)


def test_the_under_invested_channel_gets_more(portrayed: Workspace, truth: dict) -> None:
    """Without any calibration (the platforms' own numbers), as a marketer would first run it."""
    with open_engine(portrayed, read_only=True) as engine:
        plan = plan_budget(portrayed, engine, settings=BudgetSettings(bootstrap=8))
    allocation = plan.allocation.set_index("channel")
    under = truth["ads"]["under_invested_channel"]
    assert allocation.loc[under, "recommended"] > allocation.loc[under, "current"]
    assert allocation["change_share"].idxmax() == under
    assert allocation["recommended"].sum() == pytest.approx(plan.total)
    assert plan.gain_low <= plan.gain_per_day <= plan.gain_high and plan.gain_per_day > 0
    assert 0 <= plan.gain_positive <= 1 and len(plan.curves) == len(truth["ads"]["channels"])
    # the platforms over-report: uncalibrated maxima carry each channel's over-attribution
    curves = plan.curves.set_index("channel")
    for channel, params in truth["ads"]["channels"].items():
        reported = params["max_effect"] * params["platform_over_attribution"]
        assert abs(curves.loc[channel, "max_effect"] / reported - 1) <= MAX_EFFECT, channel
        assert curves.loc[channel, "max_effect_low"] <= curves.loc[channel, "max_effect_high"]


def test_a_synthetic_curve_is_recovered() -> None:
    rng = np.random.default_rng(2)
    spend = rng.lognormal(6, 0.5, 600) * (1 + (np.arange(600) % 90 < 20))
    true = Curve(0.4, 1500.0, 5000.0)
    a = adstock(spend, true.decay)
    y = true.max_effect * a / (a + true.half_saturation) * rng.lognormal(0, 0.1, 600)
    curve, r2 = fit_curve(spend, y)
    assert curve.decay == pytest.approx(0.4, abs=0.05) and r2 > 0.5
    assert curve.half_saturation == pytest.approx(1500, rel=0.15) and curve.max_effect == pytest.approx(5000, rel=0.1)
    with pytest.raises(MeasureError, match="too few days"):
        fit_curve(spend[:40], y[:40])


def test_allocation_matches_a_general_optimizer() -> None:
    rng = np.random.default_rng(4)
    for _ in range(5):  # random channel sets
        curves = [Curve(rng.uniform(0, 0.7), rng.uniform(200, 3000), rng.uniform(1000, 9000)) for _ in range(5)]
        current = rng.uniform(100, 1500, 5)
        lower, upper, total = current * 0.5, current * 2.0, current.sum()
        best = allocate(curves, total, lower, upper)
        assert best.sum() == pytest.approx(total) and (best >= lower - 1e-9).all() and (best <= upper + 1e-9).all()
        value = sum(c.steady_return(x) for c, x in zip(curves, best, strict=True))
        found = minimize(lambda x, cs=curves: -sum(c.steady_return(v) for c, v in zip(cs, x, strict=True)), current,
                         method="SLSQP", bounds=list(zip(lower, upper, strict=True)),
                         constraints=[{"type": "eq", "fun": lambda x, t=total: x.sum() - t}], options={"ftol": 1e-12})
        assert value >= -found.fun - 1e-6 * abs(found.fun)
    with pytest.raises(MeasureError, match="bounds"):
        allocate(curves, upper.sum() * 2, lower, upper)
