"""Customer lifetime value: BG/NBD for how often and how long, Gamma-Gamma for how much.

Implemented with scipy rather than taken from a library, after trying them here:
`lifetimes` 0.11.3 installs and fits, but its development stopped in 2020 (its
maintainers point to pymc-marketing, which is itself dropping lifetimes because it
"already started breaking things"); `pymc-marketing`'s BetaGeoModel is well kept but
brings ~800 MB of PyMC/PyTensor, took 33 s to compile and fit CDNOW by MAP, and its
default priors move the estimates away from the published maximum-likelihood ones.
The two likelihoods are short and well documented, so they live here, maximized with
`scipy.optimize` and checked against the published CDNOW estimates
(tests/profiles/test_clv.py).

References:
    Fader, Hardie & Lee (2005), "Counting Your Customers the Easy Way: An Alternative
    to the Pareto/NBD Model", Marketing Science 24(2) - BG/NBD likelihood (eq. 6),
    conditional expectation (eq. 10) and P(alive) (appendix).
    Fader & Hardie (2013), "The Gamma-Gamma Model of Monetary Value" - likelihood and
    conditional expected spend (eq. 5).

Inputs are the RFM summary per customer: frequency x (repeat purchase periods),
recency t_x (first to last purchase), age T (first purchase to the end of the
calibration period), all in one time unit (weeks here), and for Gamma-Gamma the
mean value of the repeat purchases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

from jingzhun.core.errors import JingzhunError


class ClvFitError(JingzhunError):
    """The CLV models cannot be fitted to this data."""


@dataclass(frozen=True)
class BetaGeoParams:
    """BG/NBD parameters: purchase rate ~ Gamma(r, alpha), dropout p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float


@dataclass(frozen=True)
class GammaGammaParams:
    """Gamma-Gamma parameters: spend ~ Gamma(p, nu), nu ~ Gamma(q, gamma)."""

    p: float
    q: float
    gamma: float
    log_likelihood: float


def bgnbd_log_likelihood(params: np.ndarray, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> np.ndarray:
    """Each customer's BG/NBD log-likelihood (Fader, Hardie & Lee 2005, eq. 6)."""
    r, alpha, a, b = params
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, b + x) - betaln(a, b)
    a3 = -(r + x) * np.log(alpha + big_t)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Only customers with repeat purchases can have dropped out after their last one.
        a4 = np.where(x > 0, np.log(a) - np.log(np.maximum(b + x - 1, 1e-300))
                      - (r + x) * np.log(alpha + t_x), -np.inf)
    return a1 + a2 + np.logaddexp(a3, a4)


def gamma_gamma_log_likelihood(params: np.ndarray, x: np.ndarray, mean_value: np.ndarray) -> np.ndarray:
    """Each repeat customer's Gamma-Gamma log-likelihood of their mean spend (Fader & Hardie 2013)."""
    p, q, gamma = params
    px = p * x
    return (gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(gamma)
            + (px - 1) * np.log(mean_value) + px * np.log(x) - (px + q) * np.log(gamma + mean_value * x))


def _maximize(negative_ll, start: np.ndarray) -> tuple[np.ndarray, float]:
    """Maximize over log-parameters (keeps them positive); Nelder-Mead polishes L-BFGS-B."""
    first = minimize(negative_ll, np.log(start), method="L-BFGS-B")
    best = minimize(negative_ll, first.x, method="Nelder-Mead",
                    options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 20_000, "maxfev": 20_000})
    chosen = best if best.fun <= first.fun else first
    if not np.isfinite(chosen.fun):
        raise ClvFitError("the CLV likelihood has no finite maximum for this data.",
                          fix="check that purchases have positive values and dates before the as-of time",
                          message_zh="CLV 模型的似然函数在此数据上没有有限的最大值。",
                          fix_zh="检查购买金额是否为正、日期是否早于计算时点")
    return np.exp(chosen.x), float(-chosen.fun)


def fit_bgnbd(x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> BetaGeoParams:
    """Maximum-likelihood BG/NBD parameters for customers with (x, t_x, T)."""
    x, t_x, big_t = (np.asarray(v, dtype=float) for v in (x, t_x, big_t))
    if len(x) < 10 or x.sum() == 0:
        raise ClvFitError(f"BG/NBD needs repeat buyers; got {len(x)} buyers, {int(x.sum())} repeat purchases.",
                          field="orders", fix="score CLV once more customers have bought twice",
                          message_zh=f"BG/NBD 需要复购客户；当前 {len(x)} 位客户、{int(x.sum())} 次复购。",
                          fix_zh="等有更多客户复购后再计算 CLV")
    scale = float(big_t.mean())

    def negative(log_params: np.ndarray) -> float:
        value = -bgnbd_log_likelihood(np.exp(log_params), x, t_x, big_t).sum()
        return float(value) if np.isfinite(value) else 1e300

    found, ll = _maximize(negative, np.array([1.0, scale, 1.0, 1.0]))
    return BetaGeoParams(*(float(v) for v in found), log_likelihood=ll)


def fit_gamma_gamma(x: np.ndarray, mean_value: np.ndarray) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma parameters from repeat customers (x > 0, value > 0)."""
    x, mean_value = np.asarray(x, dtype=float), np.asarray(mean_value, dtype=float)
    keep = (x > 0) & (mean_value > 0)
    if keep.sum() < 10:
        raise ClvFitError(f"Gamma-Gamma needs repeat buyers with positive spend; got {int(keep.sum())}.",
                          field="orders", fix="score CLV once more customers have bought twice",
                          message_zh=f"Gamma-Gamma 模型需要有正消费额的复购客户；当前 {int(keep.sum())} 位。",
                          fix_zh="等有更多客户复购后再计算 CLV")

    def negative(log_params: np.ndarray) -> float:
        value = -gamma_gamma_log_likelihood(np.exp(log_params), x[keep], mean_value[keep]).sum()
        return float(value) if np.isfinite(value) else 1e300

    found, ll = _maximize(negative, np.array([1.0, 1.0, float(mean_value[keep].mean())]))
    return GammaGammaParams(*(float(v) for v in found), log_likelihood=ll)


def _dropout_odds(params: BetaGeoParams, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> np.ndarray:
    """Odds that a customer has already dropped out (0 without repeat purchases)."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    with np.errstate(divide="ignore", invalid="ignore"):
        odds = (a / (b + x - 1)) * ((alpha + big_t) / (alpha + t_x)) ** (r + x)
    return np.where(x > 0, odds, 0.0)


def probability_alive(params: BetaGeoParams, x: np.ndarray, t_x: np.ndarray, big_t: np.ndarray) -> np.ndarray:
    """P(still a customer | x, t_x, T) (Fader, Hardie & Lee 2005, appendix)."""
    x, t_x, big_t = (np.asarray(v, dtype=float) for v in (x, t_x, big_t))
    return 1.0 / (1.0 + _dropout_odds(params, x, t_x, big_t))


def expected_purchases(params: BetaGeoParams, t: float, x: np.ndarray, t_x: np.ndarray,
                       big_t: np.ndarray) -> np.ndarray:
    """E[purchases in the next t periods | x, t_x, T] (Fader, Hardie & Lee 2005, eq. 10)."""
    x, t_x, big_t = (np.asarray(v, dtype=float) for v in (x, t_x, big_t))
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    z = t / (alpha + big_t + t)
    tail = ((alpha + big_t) / (alpha + big_t + t)) ** (r + x) * hyp2f1(r + x, b + x, a + b + x - 1, z)
    numerator = (a + b + x - 1) / (a - 1) * (1.0 - tail)
    return numerator / (1.0 + _dropout_odds(params, x, t_x, big_t))


def expected_spend(params: GammaGammaParams, x: np.ndarray, mean_value: np.ndarray) -> np.ndarray:
    """E[value of a purchase | x, mean value] (Fader & Hardie 2013, eq. 5); the population
    mean p*gamma/(q-1) for customers without repeat purchases."""
    x = np.asarray(x, dtype=float)
    mean_value = np.nan_to_num(np.asarray(mean_value, dtype=float), nan=0.0)
    p, q, gamma = params.p, params.q, params.gamma
    individual = (gamma + mean_value * x) * p / (p * x + q - 1)
    return np.where(x > 0, individual, p * gamma / (q - 1))


def population_expected_purchases(params: BetaGeoParams, t: np.ndarray) -> np.ndarray:
    """E[purchases in (0, t]] for a customer picked at random at their first purchase
    (Fader, Hardie & Lee 2005, eq. 9): the curve the calibration fit is plotted against."""
    t = np.asarray(t, dtype=float)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    tail = (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, t / (alpha + t))
    return (a + b - 1) / (a - 1) * (1.0 - tail)
