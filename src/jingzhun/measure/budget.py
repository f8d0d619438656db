"""Channel budget: fit each ad channel's response curve, then split a budget to earn the most.

**The curve.** Per channel, daily outcome y (the platforms' reported conversion value,
times the channel's `calibration` factor when an incrementality test has measured how
much a platform over- or under-reports) follows a geometric adstock and a saturating
(Michaelis-Menten) response::

    adstock[t] = spend[t] + decay * adstock[t-1]
    y[t]      ≈ max_effect * adstock[t] / (adstock[t] + half_saturation)    (multiplicative noise)

fitted by nonlinear least squares on log y (scipy `least_squares`, a grid over decay for
the start), the first 21 days left out of the loss while the adstock warms up. Why
scipy and not PyMC-Marketing: docs/measure.md "Channel budget" records the measurement
(PyMC-Marketing's NUTS fit of the demo's six channels did not finish in 15 minutes on
the 2-core machine; this fit takes under a second, its bootstrap seconds).

**Uncertainty.** A moving-block bootstrap (14-day blocks of log residuals, keeping their
autocorrelation) refits every channel `bootstrap` times.

**The split.** At a steady daily spend x the adstock is x / (1 − decay), so the long-run
daily return is f(x) = max_effect · a / (a + K) with a = x / (1 − decay), concave in x.
The optimum equalizes marginal returns f'(x) = λ across channels within each channel's
bounds (multiples of its current spend); λ is found with scipy's `brentq`, so the answer
is exact rather than an optimizer's approximation. The expected gain is the optimum's
return minus the current allocation's, under the point fit and under every bootstrap
draw (its 5-95% interval and the chance it is positive).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, parse_sql
from jingzhun.measure.settings import BudgetSettings, MeasureError, load_measure_settings

BURN_IN = 21  # days excluded from the loss while the adstock of spend before the data fills in
BLOCK = 14  # bootstrap block length, days
DECAY_GRID = np.linspace(0.0, 0.9, 19)
DAILY_SQL = """
SELECT day, channel, CAST(SUM(spend) AS DOUBLE) AS spend, CAST(SUM(conversion_value) AS DOUBLE) AS outcome
FROM ad_spend WHERE spend IS NOT NULL
GROUP BY day, channel ORDER BY day, channel"""


@dataclass(frozen=True)
class Curve:
    decay: float
    half_saturation: float
    max_effect: float

    def adstock(self, spend: np.ndarray) -> np.ndarray:
        return adstock(spend, self.decay)

    def steady_return(self, daily: np.ndarray | float) -> np.ndarray:
        """Long-run return per day at a steady daily spend."""
        a = np.asarray(daily, dtype=float) / (1 - self.decay)
        return self.max_effect * a / (a + self.half_saturation)

    def marginal(self, daily: np.ndarray | float) -> np.ndarray:
        """d steady return / d daily spend."""
        a = np.asarray(daily, dtype=float) / (1 - self.decay)
        return self.max_effect * self.half_saturation / (a + self.half_saturation) ** 2 / (1 - self.decay)

    def spend_at(self, marginal: float) -> float:
        """The daily spend whose marginal return is `marginal` (0 when even the first yuan earns less)."""
        k, scale = self.half_saturation, self.max_effect * self.half_saturation / (1 - self.decay)
        return max((1 - self.decay) * (np.sqrt(scale / marginal) - k), 0.0)


def adstock(spend: np.ndarray, decay: float) -> np.ndarray:
    """Geometric adstock (the carry-over starts at zero): the recursion as a first-order IIR filter."""
    from scipy.signal import lfilter  # scipy is imported by a fit, not by every jingzhun process

    return lfilter([1.0], [1.0, -decay], np.asarray(spend, dtype=float))


# ---- fitting ------------------------------------------------------------------------------------


def _log_residuals(params: np.ndarray, spend: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    decay, log_k, log_beta = params
    a = adstock(spend, decay)
    fitted = np.exp(log_beta) * a / (a + np.exp(log_k))
    return (np.log(np.maximum(fitted[mask], 1e-9)) - np.log(y[mask]))


def fit_curve(spend: np.ndarray, y: np.ndarray, start: Curve | None = None) -> tuple[Curve, float]:
    """The least-squares curve of one channel, and its R² on log y (after the burn-in)."""
    mask = np.zeros(len(y), dtype=bool)
    mask[BURN_IN:] = True
    mask &= (y > 0) & np.isfinite(y)
    if mask.sum() < 30:
        raise MeasureError("too few days with spend and outcome to fit a response curve (need 30 after the "
                           "first three weeks).", field="ad_spend", fix="import more ad-spend history",
                           message_zh="有投放和转化的天数太少，无法拟合响应曲线（前三周之后至少需要 30 天）。",
                           fix_zh="请导入更长的广告投放历史")
    from scipy.optimize import least_squares

    guesses = [start] if start is not None else [_grid_start(spend, y, mask, d) for d in DECAY_GRID]
    best = None
    for guess in guesses:
        x0 = np.array([guess.decay, np.log(guess.half_saturation), np.log(guess.max_effect)])
        found = least_squares(_log_residuals, x0, args=(spend, y, mask),
                              bounds=([0.0, -5.0, -5.0], [0.95, 25.0, 30.0]), method="trf")
        if best is None or found.cost < best.cost:  # every grid start is tried: decay has local minima
            best = found
    decay, log_k, log_beta = best.x
    logs = np.log(y[mask])
    r2 = 1 - 2 * best.cost / float(((logs - logs.mean()) ** 2).sum())
    return Curve(float(decay), float(np.exp(log_k)), float(np.exp(log_beta))), float(r2)


def _grid_start(spend: np.ndarray, y: np.ndarray, mask: np.ndarray, decay: float) -> Curve:
    """A start for one decay: half-saturation at the median adstock, max effect twice the median outcome."""
    a = adstock(spend, decay)[mask]
    k = float(np.median(a)) or 1.0
    return Curve(decay, k, float(2 * np.median(y[mask])) or 1.0)


def _bootstrap(spend: np.ndarray, y: np.ndarray, curve: Curve, draws: int, rng: np.random.Generator) -> list[Curve]:
    """Refit on resampled series: the fit times 14-day blocks of its log residuals drawn with replacement."""
    a = curve.adstock(spend)
    fitted = curve.max_effect * a / (a + curve.half_saturation)
    usable = (y > 0) & np.isfinite(y)
    resid = np.where(usable, np.log(np.where(usable, y, 1.0)) - np.log(np.maximum(fitted, 1e-9)), 0.0)
    n = len(y)
    out = []
    for _ in range(draws):  # a few hundred refits of 3 parameters each
        starts = rng.integers(0, max(n - BLOCK, 1), n // BLOCK + 1)
        sample = np.concatenate([resid[s:s + BLOCK] for s in starts])[:n]
        synthetic = np.where(usable, fitted * np.exp(sample), 0.0)
        out.append(fit_curve(spend, synthetic, start=curve)[0])
    return out


# ---- the channels' data and fits ----------------------------------------------------------------


@dataclass(frozen=True)
class ChannelFit:
    channel: str
    curve: Curve
    r2: float
    draws: tuple[Curve, ...]
    current: float  # mean daily spend over the recent days


def daily_series(engine: Engine, history_days: int = 0) -> tuple[pd.DataFrame, str]:
    """Spend and outcome per calendar day (missing days are 0 spend) × channel, and the SQL."""
    query = parse_sql(DAILY_SQL)
    frame = engine.query(query).to_pandas()
    if frame.empty:
        raise MeasureError("there is no ad spend to fit.", field="ad_spend",
                           fix="import the ad platforms' daily reports (`jingzhun import ad_spend FILE`)",
                           message_zh="没有广告投放数据可拟合。", fix_zh="请导入广告平台日报（`jingzhun import ad_spend FILE`）")
    frame["day"] = pd.to_datetime(frame["day"])
    days = pd.date_range(frame["day"].min(), frame["day"].max(), freq="D")
    wide = frame.pivot_table(index="day", columns="channel", values=["spend", "outcome"], aggfunc="sum")
    wide = wide.reindex(days).fillna(0.0)
    if history_days:
        wide = wide.iloc[-history_days:]
    return wide, engine.render(query)


def fit_channels(wide: pd.DataFrame, settings: BudgetSettings, seed: int = 7) -> list[ChannelFit]:
    """One fitted curve per channel (outcome times its calibration), with bootstrap draws."""
    rng = np.random.default_rng(seed)
    fits = []
    for channel in sorted(wide["spend"].columns):  # a handful of ad channels
        spend = wide["spend"][channel].to_numpy()
        y = wide["outcome"][channel].to_numpy() * settings.calibration.get(channel, 1.0)
        curve, r2 = fit_curve(spend, y)
        draws = tuple(_bootstrap(spend, y, curve, settings.bootstrap, rng))
        fits.append(ChannelFit(channel, curve, r2, draws, float(spend[-settings.recent_days:].mean())))
    return fits


# ---- allocation -------------------------------------------------------------------------------------


def allocate(curves: list[Curve], total: float, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Daily spend per channel maximizing Σ steady return with Σ spend = total, lower ≤ x ≤ upper."""
    if total < lower.sum() - 1e-6 or total > upper.sum() + 1e-6:
        raise MeasureError(f"a total of {total:,.0f} a day cannot meet the channels' bounds "
                           f"({lower.sum():,.0f}–{upper.sum():,.0f}).", field="total",
                           fix="choose a total within the bounds, or widen budget.lower / budget.upper",
                           message_zh=f"每日总预算 {total:,.0f} 无法满足各渠道的上下限（{lower.sum():,.0f}–{upper.sum():,.0f}）。",
                           fix_zh="请在范围内选择总预算，或放宽 budget.lower / budget.upper")

    def spend(level: float) -> np.ndarray:
        return np.clip([c.spend_at(level) for c in curves], lower, upper)

    high = max(float(c.marginal(0.0)) for c in curves) * 2 + 1e-9
    low = min(float(c.marginal(u)) for c, u in zip(curves, upper, strict=True)) / 2
    if spend(low).sum() <= total:  # even at the lowest marginal return every channel is at its cap
        return upper.astype(float)
    from scipy.optimize import brentq

    level = brentq(lambda m: spend(m).sum() - total, low, high, xtol=1e-12, maxiter=200)
    return spend(level)


def total_return(curves: list[Curve] | tuple[Curve, ...], daily: np.ndarray) -> float:
    return float(sum(c.steady_return(x) for c, x in zip(curves, daily, strict=True)))


@dataclass(frozen=True)
class BudgetPlan:
    """Fitted curves, the recommended split beside the current one, the gain and its interval."""

    curves: pd.DataFrame  # channel, decay, half_saturation, max_effect (+ _low/_high), r2
    allocation: pd.DataFrame  # channel, current, recommended, change, marginal ROI now and after
    gain_per_day: float
    gain_low: float
    gain_high: float
    gain_positive: float  # share of bootstrap draws in which the split earns more than today's
    total: float
    sql: dict[str, str]


def plan_budget(workspace: Workspace | None, engine: Engine, total: float | None = None,
                settings: BudgetSettings | None = None, seed: int = 7) -> BudgetPlan:
    """Fit every channel's curve and split `total` (default: today's daily total) across channels."""
    settings = settings or load_measure_settings(workspace).budget
    wide, sql = daily_series(engine, settings.history_days)
    fits = fit_channels(wide, settings, seed)
    current = np.array([f.current for f in fits])
    total = float(current.sum()) if total is None else float(total)
    lower, upper = current * settings.lower, current * settings.upper
    curves = [f.curve for f in fits]
    best = allocate(curves, total, lower, upper)
    gains = [total_return(draw, best) - total_return(draw, current)
             for draw in zip(*(f.draws for f in fits), strict=True)] if settings.bootstrap else []
    point = total_return(curves, best) - total_return(curves, current)
    low, high = (np.percentile(gains, [5, 95]) if gains else (point, point))
    return BudgetPlan(_curve_frame(fits), _allocation_frame(fits, current, best), point, float(low), float(high),
                      float(np.mean(np.array(gains) > 0)) if gains else float(point > 0), total, {"daily": sql})


def _curve_frame(fits: list[ChannelFit]) -> pd.DataFrame:
    rows = []
    for fit in fits:
        row = {"channel": fit.channel, "decay": fit.curve.decay, "half_saturation": fit.curve.half_saturation,
               "max_effect": fit.curve.max_effect, "r2_log": fit.r2}
        for name in ("decay", "half_saturation", "max_effect"):
            values = [getattr(draw, name) for draw in fit.draws]
            row[f"{name}_low"], row[f"{name}_high"] = (np.percentile(values, [5, 95]) if values
                                                       else (row[name], row[name]))
        rows.append(row)
    return pd.DataFrame(rows)


def _allocation_frame(fits: list[ChannelFit], current: np.ndarray, best: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({
        "channel": [f.channel for f in fits], "current": current, "recommended": best,
        "change": best - current, "change_share": np.where(current > 0, best / np.where(current > 0, current, 1) - 1,
                                                           np.nan),
        "return_current": [float(f.curve.steady_return(x)) for f, x in zip(fits, current, strict=True)],
        "return_recommended": [float(f.curve.steady_return(x)) for f, x in zip(fits, best, strict=True)],
        "marginal_roi_current": [float(f.curve.marginal(x)) for f, x in zip(fits, current, strict=True)],
        "marginal_roi_recommended": [float(f.curve.marginal(x)) for f, x in zip(fits, best, strict=True)],
    })
