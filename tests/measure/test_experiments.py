"""Experiments: the tests against independent computations (tables of cases), peeking guarded by the
always-valid intervals (simulated A/A tests), planning round trips, and the demo's planted lifts
recovered from the imported message history."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from jingzhun.core import Workspace
from jingzhun.engine import open_engine
from jingzhun.measure import (
    Arms,
    MeasureError,
    measure_lift,
    minimum_detectable_lift,
    msprt,
    rate_test,
    sample_size,
    welch_test,
)


def _wilson(x: int, n: int, z: float) -> tuple[float, float]:
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


@pytest.mark.parametrize(("x_t", "n_t", "x_c", "n_c"), [
    (56, 70, 48, 80),  # Newcombe (1998) table II, example (a)
    (9, 10, 3, 10),
    (30, 1000, 20, 1000),
    (5, 400, 0, 45),  # no control conversions: the difference still has an interval
    (120, 3600, 9, 400),
])
def test_rate_difference_and_ratio_against_hand_formulas(x_t: int, n_t: int, x_c: int, n_c: int) -> None:
    z = stats.norm.ppf(0.975)
    result = rate_test(Arms(n_t, x_t, n_c, x_c))
    (l1, u1), (l2, u2) = _wilson(x_t, n_t, z), _wilson(x_c, n_c, z)
    p1, p2 = x_t / n_t, x_c / n_c
    assert result["diff_low"] == pytest.approx(p1 - p2 - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), abs=1e-12)
    assert result["diff_high"] == pytest.approx(p1 - p2 + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2), abs=1e-12)
    pooled = (x_t + x_c) / (n_t + n_c)
    z_stat = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_c))
    assert result["p_value"] == pytest.approx(2 * stats.norm.sf(abs(z_stat)), abs=1e-12)
    if x_c > 0:  # the ratio's log interval: exp(log RR ± z √(1/x_t − 1/n_t + 1/x_c − 1/n_c)), adjusted by ½
        assert result["lift"] == pytest.approx(p1 / p2 - 1)
        assert result["lift_low"] < result["lift"] < result["lift_high"]


def test_newcombe_reproduces_the_published_example() -> None:
    result = rate_test(Arms(70, 56, 80, 48))
    assert (round(result["diff_low"], 4), round(result["diff_high"], 4)) == (0.0524, 0.3339)


def test_welch_from_sums_equals_welch_on_the_values() -> None:
    rng = np.random.default_rng(5)
    treated = rng.gamma(0.3, 300, 900) * (rng.random(900) < 0.05)
    control = rng.gamma(0.3, 250, 120) * (rng.random(120) < 0.04)
    result = welch_test(Arms(len(treated), 0, len(control), 0, treated.sum(), control.sum(), (treated ** 2).sum(),
                             (control ** 2).sum()))
    reference = stats.ttest_ind(treated, control, equal_var=False)
    assert result["gmv_p"] == pytest.approx(reference.pvalue, rel=1e-9)
    low, high = reference.confidence_interval(0.95)
    assert (result["gmv_low"], result["gmv_high"]) == pytest.approx((low, high), rel=1e-9)


def test_planning_round_trip() -> None:
    sizes = sample_size(0.03, 0.2, holdout=0.1)
    assert sizes["control"] == pytest.approx(sizes["treatment"] / 9, abs=1)
    detectable = minimum_detectable_lift(0.03, sizes["treatment"], sizes["control"])
    assert detectable == pytest.approx(0.2, abs=0.005)
    assert minimum_detectable_lift(0.03, 4 * sizes["treatment"], 4 * sizes["control"]) < 0.11
    with pytest.raises(MeasureError, match="baseline"):
        sample_size(1.5, 0.2)


def test_always_valid_intervals_survive_daily_peeking() -> None:
    """A/A tests looked at after every day for 30 days: stopping at the first 'significant'
    look fools the fixed-horizon z test far more often than α; the mSPRT stays within α."""
    rng = np.random.default_rng(11)
    runs, days, per_day, rate = 400, 30, 200, 0.05
    x_t = rng.binomial(per_day, rate, (runs, days)).cumsum(axis=1).astype(float)
    x_c = rng.binomial(per_day // 9, rate, (runs, days)).cumsum(axis=1).astype(float)
    n_t = np.tile(np.arange(1, days + 1) * per_day, (runs, 1)).astype(float)
    n_c = np.tile(np.arange(1, days + 1) * (per_day // 9), (runs, 1)).astype(float)
    valid_false, naive_false = 0, 0
    for run in range(runs):  # 400 simulated experiments
        p, low, high = msprt(x_t[run], n_t[run], x_c[run], n_c[run], tau2=1e-4)
        valid_false += bool((p < 0.05).any())
        pooled = (x_t[run] + x_c[run]) / (n_t[run] + n_c[run])
        z = (x_t[run] / n_t[run] - x_c[run] / n_c[run]) / np.sqrt(pooled * (1 - pooled) * (1 / n_t[run] + 1 / n_c[run]))
        naive_false += bool((np.abs(z) > 1.96).any())
        assert (np.diff(low) >= 0).all() and (np.diff(high) <= 0).all()  # intervals only narrow
    assert valid_false / runs <= 0.05 + 0.02
    assert naive_false / runs > 0.12


def test_planted_lifts_are_recovered(portrayed: Workspace, truth: dict) -> None:
    """The demo's campaigns (10% holdouts; lift 0.15-0.60, and 0 for every 7th campaign): pooled,
    the zero-lift campaigns read 'no effect' with the truth inside the interval, the others read
    'works' with their pooled true lift inside the interval and within 0.15 of the estimate; per
    campaign, at least 85% of the 95% intervals of the rate difference hold the true difference."""
    planted = pd.DataFrame(truth["campaigns"]["campaigns"])
    with open_engine(portrayed, read_only=True) as engine:
        report = measure_lift(portrayed, engine)
        groups = {name: measure_lift(portrayed, engine, list(part.campaign_id), pool=True).frame.iloc[0]
                  for name, part in planted.groupby(planted.lift > 0)}
    for effective, row in groups.items():
        part = planted[(planted.lift > 0) == effective]
        weights = part.treated * part.holdout_conversion
        true_lift = float((weights * (1 + part.lift)).sum() / weights.sum() - 1)
        assert row.lift_low <= true_lift <= row.lift_high, (effective, row.lift, true_lift)
        if effective:
            assert row.verdict == "lift" and abs(row.lift - true_lift) < 0.15
        else:
            assert true_lift == 0 and row.verdict == "no_effect"
    frame = report.frame.merge(planted, on="campaign_id", suffixes=("", "_true"))
    frame = frame.dropna(subset=["diff_low"])
    true_diff = frame.holdout_conversion * frame.lift_true
    covered = ((frame.diff_low <= true_diff) & (true_diff <= frame.diff_high)).mean()
    assert len(frame) >= 0.95 * len(planted) and covered >= 0.85
    assert set(report.frame.verdict) <= {"lift", "harm", "no_effect", "no_holdout"}
    assert report.sequential.groupby("campaign_id").always_valid_p.is_monotonic_decreasing.all()
