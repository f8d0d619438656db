"""Did the campaign cause anything? Holdout and A/B lift with intervals, planning, and a verdict.

The **unit** is a person in a campaign (for imported history, a recipient not resolved
to a person counts as its own unit). A unit converts when an order follows one of its
sends within the conversion window (docs/measure.md): the treatment arm's sends when
they went, the control arm's when they would have gone. `population: eligible` (the
default) compares treated units the policy let through with held-out units whose
recorded reason is empty — both decided by the same rules, so the comparison stays
randomized; `all` is intent to treat. The engine counts units, conversions and GMV sums
per campaign, arm and day (`lift_counts_sql`); the statistics over those few numbers are
statsmodels and scipy:

- conversion: rate difference with Newcombe's hybrid score interval and the rate ratio
  with its log interval (`confint_proportions_2indep`), the pooled two-proportion z test
  (`proportions_ztest`);
- GMV per unit: Welch's t from each arm's count, sum and sum of squares;
- planning: sample size for a relative lift and the minimum detectable effect of a given
  size, by Cohen's h (`NormalIndPower`);
- peeking: a running campaign is read with **always-valid** intervals — the mSPRT of
  Johari, Pekelis & Walsh (2017) with a normal mixture of variance τ² over the rate
  difference, intersected day by day — so looking every day never inflates the error;
  a campaign whose conversion window has closed is read once, at its fixed horizon.

The verdict (zh/en) says: works (the interval is above zero), harms (below), no effect
detected (finished, with the smallest effect it could have detected), or too early.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlglot import exp

from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, parse_sql, to_local_time
from jingzhun.measure.settings import (
    LiftSettings,
    MeasureError,
    MeasureSettings,
    load_measure_settings,
)
from jingzhun.measure.sources import CONVERSION_ORDERS, SENDS, matched_orders_sql


def lift_counts_sql(settings: MeasureSettings, timezone: str, campaign_ids: Sequence[str] | None = None,
                    population: str | None = None) -> exp.Expression:
    """Per campaign, arm and local day of a unit's first send: units, converted units, GMV
    sum and sum of squares, cost — the sufficient statistics of every test here."""
    chosen = population or settings.lift.population
    eligible = "AND s.eligible" if chosen == "eligible" else ""
    only = (f"AND s.campaign_id IN ({', '.join(exp.convert(c).sql('duckdb') for c in campaign_ids)})"
            if campaign_ids else "")
    day = exp.cast(to_local_time(exp.column("first_anchor"), timezone), exp.DataType.build("DATE")).sql("duckdb")
    return parse_sql(f"""
WITH pop AS (SELECT s.* FROM ({SENDS}) AS s WHERE s.unit_id IS NOT NULL {eligible} {only}),
conversion_orders AS ({CONVERSION_ORDERS}),
matched AS ({matched_orders_sql(settings.conversion_window, 'pop')}),
unit_orders AS (
  SELECT DISTINCT p.campaign_id, p.unit_id, p.arm, m.order_id, m.amount
  FROM pop AS p JOIN matched AS m ON m.delivery_id = p.delivery_id
),
units AS (
  SELECT campaign_id, unit_id, arm, MIN(anchor_at) AS first_anchor, SUM(cost) AS cost
  FROM pop GROUP BY campaign_id, unit_id, arm
),
valued AS (
  SELECT u.campaign_id, u.unit_id, u.arm, u.first_anchor, u.cost,
    CASE WHEN COUNT(o.order_id) > 0 THEN 1 ELSE 0 END AS converted,
    CAST(COALESCE(SUM(o.amount), 0) AS DOUBLE) AS gmv
  FROM units AS u LEFT JOIN unit_orders AS o
    ON o.campaign_id = u.campaign_id AND o.unit_id = u.unit_id AND o.arm = u.arm
  GROUP BY u.campaign_id, u.unit_id, u.arm, u.first_anchor, u.cost
)
SELECT campaign_id, arm, {day} AS day, CAST(COUNT(*) AS BIGINT) AS units,
  CAST(SUM(converted) AS BIGINT) AS converted,
  SUM(gmv) AS gmv, SUM(gmv * gmv) AS gmv_sq, CAST(SUM(cost) AS DOUBLE) AS cost,
  MAX(first_anchor) AS last_anchor
FROM valued GROUP BY campaign_id, arm, {day}""")


# ---- statistics over the counts -------------------------------------------------------------------


@dataclass(frozen=True)
class Arms:
    """One comparison's sufficient statistics: treatment (t) against control (c)."""

    n_t: int
    x_t: int
    n_c: int
    x_c: int
    gmv_t: float = 0.0
    gmv_c: float = 0.0
    sq_t: float = 0.0
    sq_c: float = 0.0
    cost: float = 0.0


def rate_test(arms: Arms, alpha: float = 0.05) -> dict[str, float]:
    """Rates, their difference (Newcombe interval), ratio (log interval), lift and the z test."""
    # statsmodels and scipy are imported by the tests that use them, not by every jingzhun process.
    from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

    p_t, p_c = arms.x_t / arms.n_t, arms.x_c / arms.n_c
    low, high = confint_proportions_2indep(arms.x_t, arms.n_t, arms.x_c, arms.n_c, method="newcomb",
                                           compare="diff", alpha=alpha, correction=False)
    if arms.x_c > 0 and arms.x_t > 0:
        r_low, r_high = confint_proportions_2indep(arms.x_t, arms.n_t, arms.x_c, arms.n_c, compare="ratio",
                                                   alpha=alpha)
    else:
        r_low, r_high = math.nan, math.nan
    pooled = (arms.x_t + arms.x_c) / (arms.n_t + arms.n_c)
    p_value = (float(proportions_ztest([arms.x_t, arms.x_c], [arms.n_t, arms.n_c])[1])
               if 0 < pooled < 1 else 1.0)
    return {"rate_t": p_t, "rate_c": p_c, "diff": p_t - p_c, "diff_low": float(low), "diff_high": float(high),
            "lift": p_t / p_c - 1 if p_c > 0 else math.nan, "lift_low": float(r_low) - 1,
            "lift_high": float(r_high) - 1, "p_value": p_value}


def welch_test(arms: Arms, alpha: float = 0.05) -> dict[str, float]:
    """GMV per unit: Welch's t from each arm's count, sum and sum of squares."""
    mean_t, mean_c = arms.gmv_t / arms.n_t, arms.gmv_c / arms.n_c
    var_t = max(arms.sq_t - arms.n_t * mean_t**2, 0.0) / max(arms.n_t - 1, 1)
    var_c = max(arms.sq_c - arms.n_c * mean_c**2, 0.0) / max(arms.n_c - 1, 1)
    se2_t, se2_c = var_t / arms.n_t, var_c / arms.n_c
    se = math.sqrt(se2_t + se2_c)
    diff = mean_t - mean_c
    if se == 0:
        return {"gmv_t": mean_t, "gmv_c": mean_c, "gmv_diff": diff, "gmv_low": diff, "gmv_high": diff,
                "gmv_p": 1.0 if diff == 0 else 0.0}
    from scipy import stats

    df = (se2_t + se2_c) ** 2 / ((se2_t**2) / max(arms.n_t - 1, 1) + (se2_c**2) / max(arms.n_c - 1, 1))
    half = stats.t.ppf(1 - alpha / 2, df) * se
    return {"gmv_t": mean_t, "gmv_c": mean_c, "gmv_diff": diff, "gmv_low": diff - half, "gmv_high": diff + half,
            "gmv_p": float(2 * stats.t.sf(abs(diff / se), df))}


def msprt(x_t: np.ndarray, n_t: np.ndarray, x_c: np.ndarray, n_c: np.ndarray, tau2: float,
          alpha: float = 0.05, running: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Always-valid p-values and confidence sequence for the rate difference, at each look.

    Inputs are cumulative counts at successive looks. With V the variance of the observed
    difference θ̂, the mixture likelihood ratio is Λ = √(V/(V+τ²))·exp(θ̂²τ²/(2V(V+τ²))); the
    p-value is the running minimum of 1/Λ and the interval θ̂ ± √(V(V+τ²)/τ²·(2 ln(1/α) +
    ln((V+τ²)/V))), intersected with every earlier one.
    """
    theta = x_t / np.maximum(n_t, 1) - x_c / np.maximum(n_c, 1)
    # The variance from rates shrunk half a unit towards ½: an arm with no conversions yet
    # (common early on) must not look certain.
    s_t, s_c = (x_t + 0.5) / (n_t + 1), (x_c + 0.5) / (n_c + 1)
    v = s_t * (1 - s_t) / np.maximum(n_t, 1) + s_c * (1 - s_c) / np.maximum(n_c, 1)
    log_lambda = 0.5 * np.log(v / (v + tau2)) + theta**2 * tau2 / (2 * v * (v + tau2))
    p_values = np.minimum(1.0, np.exp(-log_lambda))
    half = np.sqrt(v * (v + tau2) / tau2 * (2 * np.log(1 / alpha) + np.log((v + tau2) / v)))
    if not running:
        return p_values, theta - half, theta + half
    return (np.minimum.accumulate(p_values), np.maximum.accumulate(theta - half),
            np.minimum.accumulate(theta + half))


def sample_size(baseline: float, relative_lift: float, alpha: float = 0.05, power: float = 0.8,
                holdout: float = 0.1) -> dict[str, int]:
    """Treated and held-out units needed to detect `relative_lift` over `baseline` conversion."""
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    _check_rate(baseline)
    effect = proportion_effectsize(min(baseline * (1 + relative_lift), 0.999999), baseline)
    ratio = holdout / (1 - holdout)
    n_t = NormalIndPower().solve_power(effect_size=abs(effect), alpha=alpha, power=power, ratio=ratio)
    return {"treatment": math.ceil(n_t), "control": math.ceil(n_t * ratio),
            "total": math.ceil(n_t) + math.ceil(n_t * ratio)}


def minimum_detectable_lift(baseline: float, n_t: int, n_c: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest relative lift over `baseline` detected with `power` at these arm sizes."""
    _check_rate(baseline)
    if n_t < 2 or n_c < 2:
        return math.inf
    from scipy import stats

    # Cohen's h under the normal approximation (what NormalIndPower solves, less the far tail).
    h = (stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * math.sqrt(1 / n_t + 1 / n_c)
    treated = math.sin(min(math.asin(math.sqrt(baseline)) + h / 2, math.pi / 2)) ** 2
    return treated / baseline - 1


def _check_rate(baseline: float) -> None:
    if not 0 < baseline < 1:
        raise MeasureError(f"baseline conversion must be between 0 and 1, not {baseline}.", field="baseline",
                           fix="give the control arm's conversion rate, e.g. 0.03 for 3%",
                           message_zh=f"基准转化率须在 0 与 1 之间，而不是 {baseline}。",
                           fix_zh="请填写对照组的转化率，例如 3% 写作 0.03")


# ---- the report -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiftReport:
    """One row per campaign (or one pooled row): arms, tests, intervals, verdict; the day-by-day
    always-valid readings; and the SQL of the counts."""

    frame: pd.DataFrame
    sequential: pd.DataFrame  # campaign_id, day, cumulative units and conversions, always-valid interval
    counts: pd.DataFrame  # what the engine returned: per campaign, arm and day
    sql: dict[str, str]


def measure_lift(workspace: Workspace | None, engine: Engine, campaign_ids: Sequence[str] | None = None,
                 pool: bool = False, population: str | None = None, as_of: pd.Timestamp | None = None,
                 settings: MeasureSettings | None = None) -> LiftReport:
    """Lift of each campaign (or of the campaigns pooled) against its holdout."""
    settings = settings or load_measure_settings(workspace)
    timezone = workspace.config.timezone if workspace else "Asia/Shanghai"
    query = lift_counts_sql(settings, timezone, campaign_ids, population)
    counts = engine.query(query).to_pandas()
    numbers = ["units", "converted", "gmv", "gmv_sq", "cost"]
    counts[numbers] = counts[numbers].astype(float)
    if counts.empty:
        raise MeasureError("no sends to measure for these campaigns.", field="campaign_ids",
                           fix="check the campaign ids (`jingzhun campaign list`) or import the message history",
                           message_zh="这些活动没有可评估的发送记录。", fix_zh="请检查活动 ID，或先导入历史发送记录")
    counts["campaign_id"] = "(pooled)" if pool else counts["campaign_id"]
    as_of = as_of if as_of is not None else pd.Timestamp.now(tz="UTC")
    closes = pd.Timedelta(days=settings.conversion_window.delivery_days + settings.conversion_window.click_days)
    sequence = _sequences(counts, settings.lift)
    last = sequence.groupby("campaign_id").tail(1).set_index("campaign_id")
    totals = counts.groupby(["campaign_id", "arm"])[["units", "converted", "gmv", "gmv_sq", "cost"]].sum()
    ends = counts.groupby("campaign_id")["last_anchor"].max()
    rows = [_campaign_row(str(campaign_id), totals.xs(campaign_id, level="campaign_id"), last.loc[campaign_id],
                          pd.Timestamp(ends.loc[campaign_id]) + closes <= as_of, settings.lift)
            for campaign_id in sorted(ends.index)]
    return LiftReport(pd.DataFrame(rows), sequence, counts, {"lift_counts": engine.render(query)})


def _campaign_row(campaign_id: str, arm: pd.DataFrame, last: pd.Series, finished: bool,
                  lift: LiftSettings) -> dict[str, object]:
    """Every test of one campaign from its arms' totals and its latest always-valid reading."""
    get = lambda name, column: float(arm[column].get(name, 0.0))  # noqa: E731 — one lookup, two arms
    arms = Arms(int(get("treatment", "units")), int(get("treatment", "converted")), int(get("control", "units")),
                int(get("control", "converted")), get("treatment", "gmv"), get("control", "gmv"),
                get("treatment", "gmv_sq"), get("control", "gmv_sq"), get("treatment", "cost"))
    row: dict[str, object] = {"campaign_id": campaign_id, "units_treatment": arms.n_t, "units_control": arms.n_c,
                              "converted_treatment": arms.x_t, "converted_control": arms.x_c,
                              "status": "finished" if finished else "running"}
    if arms.n_t == 0 or arms.n_c == 0:
        row.update(verdict="no_holdout", verdict_zh="没有对照组（或没有发送），无法评估提升。",
                   verdict_en="No holdout (or no sends): lift cannot be measured.")
        return row
    row.update(rate_test(arms, lift.alpha))
    row.update(welch_test(arms, lift.alpha))
    base = row["rate_c"] if 0 < row["rate_c"] < 1 else max((arms.x_t + arms.x_c) / (arms.n_t + arms.n_c), 1e-6)
    row["mde_lift"] = minimum_detectable_lift(min(base, 0.5), arms.n_t, arms.n_c, lift.alpha)
    row["incremental_conversions"] = row["diff"] * arms.n_t
    row["incremental_gmv"] = row["gmv_diff"] * arms.n_t
    row["cost"] = arms.cost
    row["incremental_roi"] = row["incremental_gmv"] / arms.cost if arms.cost > 0 else math.nan
    row.update(always_valid_p=float(last["always_valid_p"]), always_valid_low=float(last["always_valid_low"]),
               always_valid_high=float(last["always_valid_high"]))
    row.update(_verdict(row, finished, lift.alpha))
    return row


def _sequences(counts: pd.DataFrame, lift: LiftSettings) -> pd.DataFrame:
    """Per campaign and day: the arms so far and the always-valid reading then (running
    minimum of the p-value, running intersection of the intervals, within each campaign)."""
    daily = counts.groupby(["campaign_id", "day", "arm"])[["units", "converted"]].sum().unstack("arm", fill_value=0)
    for measure in ("units", "converted"):
        for arm in ("treatment", "control"):
            if (measure, arm) not in daily:
                daily[(measure, arm)] = 0
    cum = daily.sort_index().groupby(level="campaign_id").cumsum()
    n_t, x_t = cum[("units", "treatment")].to_numpy(float), cum[("converted", "treatment")].to_numpy(float)
    n_c, x_c = cum[("units", "control")].to_numpy(float), cum[("converted", "control")].to_numpy(float)
    p, low, high = msprt(x_t, n_t, x_c, n_c, lift.mixture_variance, lift.alpha, running=False)
    frame = pd.DataFrame({"campaign_id": cum.index.get_level_values("campaign_id"),
                          "day": cum.index.get_level_values("day"), "units_treatment": n_t,
                          "converted_treatment": x_t, "units_control": n_c, "converted_control": x_c,
                          "always_valid_p": p, "always_valid_low": low, "always_valid_high": high})
    by = frame.groupby("campaign_id")
    frame["always_valid_p"] = by["always_valid_p"].cummin()
    frame["always_valid_low"] = by["always_valid_low"].cummax()
    frame["always_valid_high"] = by["always_valid_high"].cummin()
    return frame


def _verdict(row: dict, finished: bool, alpha: float) -> dict[str, str]:
    """The plain verdict: a finished campaign is read at its fixed horizon, a running one only
    through its always-valid interval (so daily looks cannot manufacture a result)."""
    if all(math.isfinite(row[k]) for k in ("lift", "lift_low", "lift_high")):
        change_zh = f"相对提升 {row['lift']:+.0%}（95% 区间 {row['lift_low']:+.0%} 至 {row['lift_high']:+.0%}）"
        change_en = f"lift {row['lift']:+.0%} (95% interval {row['lift_low']:+.0%} to {row['lift_high']:+.0%})"
    else:  # no conversions in an arm: a ratio says nothing, the difference still does
        change_zh = (f"相差 {row['diff'] * 100:+.2f} 个百分点（95% 区间 {row['diff_low'] * 100:+.2f} 至 "
                     f"{row['diff_high'] * 100:+.2f}）")
        change_en = (f"difference {row['diff'] * 100:+.2f} points (95% interval {row['diff_low'] * 100:+.2f} to "
                     f"{row['diff_high'] * 100:+.2f})")
    numbers_zh = f"转化率 {row['rate_t']:.2%} 对 {row['rate_c']:.2%}，{change_zh}"
    numbers_en = f"conversion {row['rate_t']:.2%} vs {row['rate_c']:.2%}, {change_en}"
    if finished:
        low, high, significant = row["diff_low"], row["diff_high"], row["p_value"] < alpha
    else:
        low, high = row["always_valid_low"], row["always_valid_high"]
        significant = row["always_valid_p"] < alpha
    if significant and low > 0:
        return {"verdict": "lift", "verdict_zh": f"有效：{numbers_zh}。", "verdict_en": f"Works: {numbers_en}."}
    if significant and high < 0:
        return {"verdict": "harm", "verdict_zh": f"有负面影响：{numbers_zh}。", "verdict_en": f"Harms: {numbers_en}."}
    if finished:
        mde = row["mde_lift"]
        return {"verdict": "no_effect",
                "verdict_zh": f"未检测到效果：{numbers_zh}，差异不显著（p={row['p_value']:.2f}）；"
                              f"此样本量下提升至少 {mde:+.0%} 才能被检出。",
                "verdict_en": f"No effect detected: {numbers_en}, not significant (p={row['p_value']:.2f}); "
                              f"with these arm sizes only a lift of {mde:+.0%} or more would have been detected."}
    return {"verdict": "too_early",
            "verdict_zh": f"尚无结论：活动仍在转化窗口内，随时可看的区间（转化率差 {low:+.2%} 至 {high:+.2%}）仍包含 0。",
            "verdict_en": f"Too early: the campaign is still inside its conversion window and the always-valid "
                          f"interval of the rate difference ({low:+.2%} to {high:+.2%}) still includes 0."}
