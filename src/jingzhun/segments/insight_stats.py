"""The statistics behind feature insight: lift with confidence intervals per feature, and
cross-fitted classifier importances.

Kept apart from `insight.py` (which reads the data and words the results) because
these are plain functions of arrays, tested against scipy on their own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from jingzhun.profiles.scores_models import RANDOM_STATE, ModelSpec, fit_classifier

BIN_SHARE = 0.2  # a number's univariate bin: its top (or bottom) fifth
CONFIDENCE = 0.95
FOLDS = 5
PERMUTATION_REPEATS = 3
# Holdout rows shuffled for the permutation importance, at most: every shuffled feature
# costs a prediction of them all, `repeats` times over, stacked in memory (10,000 rows ×
# 5 repeats × 200 features = 80 MB).
PERMUTATION_ROWS = 10_000
# One table of persons (not the scores' stacked snapshots) is small enough for one
# thread, which never stalls: on a shared 2-core machine (load 7.5) a 2,000 × 200 fit
# took 3.8 s on one thread and 42 s on two, OpenMP's workers busy-waiting.
FIT_THREADS = 1
MIN_CLASS_ROWS = 10  # fewer converters (or non-converters) than this: no classifier
# scipy.stats.norm.ppf(0.5 + CONFIDENCE / 2) as a number: scipy is imported by the
# functions that run tests, not by every process that imports this module.
_Z = 1.959963984540054


# ---- statistics ----------------------------------------------------------------------------


def wilson_interval(successes: np.ndarray, totals: np.ndarray, z: float = _Z) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a proportion: inside [0, 1] and sensible for small
    groups and rates near 0, where the normal interval is not.

    Example:
        >>> low, high = wilson_interval(np.array([3]), np.array([10]))
        >>> round(float(low[0]), 3), round(float(high[0]), 3)
        (0.108, 0.603)
    """
    k, n = np.asarray(successes, dtype=np.float64), np.asarray(totals, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        shrink = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / shrink
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / shrink
    return centre - half, centre + half


def rate_ratio_interval(c1: np.ndarray, n1: np.ndarray, c0: np.ndarray, n0: np.ndarray,
                        z: float = _Z) -> tuple[np.ndarray, np.ndarray]:
    """Log-method (Katz) interval of the rate ratio (c1/n1) / (c0/n0); a table with an
    empty cell gets 0.5 added to every cell first (Haldane), so it stays finite.

    Example:
        >>> low, high = rate_ratio_interval(np.array([6]), np.array([20]), np.array([10]), np.array([100]))
        >>> round(float(low[0]), 2), round(float(high[0]), 2)
        (1.23, 7.31)
    """
    a, b = np.asarray(c1, dtype=np.float64), np.asarray(n1, dtype=np.float64) - c1
    c, d = np.asarray(c0, dtype=np.float64), np.asarray(n0, dtype=np.float64) - c0
    shift = 0.5 * ((a == 0) | (b == 0) | (c == 0) | (d == 0))
    a, b, c, d = a + shift, b + shift, c + shift, d + shift
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log(a / (a + b)) - np.log(c / (c + d))
        se = np.sqrt(1 / a - 1 / (a + b) + 1 / c - 1 / (c + d))
    return np.exp(log_ratio - z * se), np.exp(log_ratio + z * se)


def lift_from_ratio(ratio: np.ndarray, n1: np.ndarray, n0: np.ndarray) -> np.ndarray:
    """The lift over the overall rate of a group converting `ratio` times as often as
    the rest: base = (n1·r1 + n0·r0) / N, so r1 / base = N·ratio / (n1·ratio + n0).
    It rises with the ratio, so it maps the ratio's interval onto the lift's exactly."""
    ratio, n1, n0 = (np.asarray(v, dtype=np.float64) for v in (ratio, n1, n0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.isinf(ratio), (n1 + n0) / n1, (n1 + n0) * ratio / (n1 * ratio + n0))


def _number(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _quantile_bin(values: np.ndarray, known: np.ndarray, high: bool) -> tuple[np.ndarray | None, str]:
    """The top (or bottom) fifth of the known values; with ties at the edge, the wider
    of `>= q` / `> q` that still keeps at most half of them (counts are mostly 0)."""
    edge = float(np.quantile(values[known], 1 - BIN_SHARE if high else BIN_SHARE))
    ops = ((">=", np.greater_equal), (">", np.greater)) if high else (("<=", np.less_equal), ("<", np.less))
    for op, compare in ops:
        with np.errstate(invalid="ignore"):
            mask = compare(values, edge) & known
        if 0 < mask.sum() <= max(1, known.sum() // 2):
            return mask, f"{op} {_number(edge)}"
    return None, ""


def _feature_bin(values: np.ndarray, y: np.ndarray) -> tuple[np.ndarray | None, str, float]:
    """(holders, bin text, rank AUC): a 0/1 feature's holders; a number's top fifth when
    converters rank higher on it (Mann-Whitney AUC >= 0.5), else its bottom fifth."""
    from scipy import stats

    known = ~np.isnan(values)
    if np.isin(values[known], (0.0, 1.0)).all():
        return values == 1, "= 1", math.nan
    x1, x0 = values[known & (y == 1)], values[known & (y == 0)]
    if not len(x1) or not len(x0):
        return None, "", math.nan
    auc = float(stats.mannwhitneyu(x1, x0).statistic) / (len(x1) * len(x0))
    mask, text = _quantile_bin(values, known, high=auc >= 0.5)
    if mask is None:  # mostly zeros and converters rank lower: the holders of any amount
        mask, text = _quantile_bin(values, known, high=auc < 0.5)
    return mask, text, auc


def univariate(frame: pd.DataFrame, y: np.ndarray) -> pd.DataFrame:
    """Per feature: its bin, holders and their conversion, lift and rate ratio with 95%
    intervals, Fisher's exact p-value and Benjamini-Hochberg q-value."""
    rows = []
    for feature in frame.columns:  # a loop over features; each step is vectorized over persons
        mask, text, auc = _feature_bin(frame[feature].to_numpy(dtype=np.float64), y)
        holders = int(mask.sum()) if mask is not None else 0
        rows.append((feature, "binary" if text == "= 1" else "numeric", text, holders,
                     int(y[mask].sum()) if mask is not None else 0, auc))
    table = pd.DataFrame(rows, columns=["feature", "kind", "bin", "holders", "holder_converters", "rank_auc"])
    return _with_rates(table.set_index("feature"), len(y), int(y.sum()))


def _with_rates(table: pd.DataFrame, persons: int, converters: int) -> pd.DataFrame:
    from scipy import stats

    n1, c1 = table["holders"].to_numpy(np.float64), table["holder_converters"].to_numpy(np.float64)
    n0, c0 = persons - n1, converters - c1
    base = converters / persons
    with np.errstate(divide="ignore", invalid="ignore"):
        rate_with, rate_without = c1 / n1, c0 / n0
        ratio = rate_with / rate_without
    low, high = rate_ratio_interval(c1, n1, c0, n0)
    table = table.assign(
        share=n1 / persons, rate_with=rate_with, rate_without=rate_without,
        rate_with_low=wilson_interval(c1, n1)[0], rate_with_high=wilson_interval(c1, n1)[1],
        lift=rate_with / base, lift_low=lift_from_ratio(low, n1, n0), lift_high=lift_from_ratio(high, n1, n0),
        rate_ratio=ratio, rate_ratio_low=low, rate_ratio_high=high,
        p_value=[stats.fisher_exact([[a, n - a], [b, m - b]]).pvalue if n > 0 else math.nan
                 for a, n, b, m in zip(c1, n1, c0, n0, strict=True)])
    tested = table["p_value"].notna()
    q = np.full(len(table), np.nan)
    if tested.any():
        q[tested.to_numpy()] = stats.false_discovery_control(table.loc[tested, "p_value"].to_numpy(), method="bh")
    return table.assign(q_value=q, significant=q < 1 - CONFIDENCE)


# ---- the classifier ------------------------------------------------------------------------


@dataclass(frozen=True)
class Importances:
    """Per-feature importances from the cross-fitted classifier, and its out-of-fold AUC."""

    permutation: np.ndarray  # mean drop of the held-out AUC when the feature is shuffled
    gain: np.ndarray  # share of the trees' split gain
    auc: float | None
    folds: int


def rank_auc(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUC from ranks (Mann-Whitney), over the last axis: one per row of `scores`."""
    from scipy import stats

    ranks = stats.rankdata(scores, axis=-1)
    positives = y == 1
    n1 = int(positives.sum())
    n0 = len(y) - n1
    return (ranks[..., positives].sum(axis=-1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def _shuffled_auc_drops(model: object, rows: np.ndarray, y: np.ndarray, columns: np.ndarray,
                        repeats: int) -> np.ndarray:
    """Permutation importance on held-out rows, for `columns` only: a feature no tree
    splits on changes no prediction when shuffled, so its importance is exactly 0.
    The `repeats` shuffles of a feature are stacked and predicted in one call."""
    rng = np.random.default_rng(RANDOM_STATE)
    base = float(rank_auc(y, model.predict_proba(rows)[:, 1]))
    stacked = np.tile(rows, (repeats, 1))
    drops = np.zeros(rows.shape[1])
    for j in columns:  # one vectorized prediction per feature
        stacked[:, j] = np.concatenate([rng.permutation(rows[:, j]) for _ in range(repeats)])
        shuffled = model.predict_proba(stacked)[:, 1].reshape(repeats, len(rows))
        drops[j] = base - float(rank_auc(y, shuffled).mean())
        stacked[:, j] = np.tile(rows[:, j], repeats)
    return drops


def _fold_rows(hold: np.ndarray, y: np.ndarray, limit: int) -> np.ndarray:
    """At most `limit` rows of a fold, stratified, for the permutation importance."""
    if len(hold) <= limit:
        return hold
    from sklearn.model_selection import train_test_split

    return train_test_split(hold, train_size=limit, stratify=y[hold], random_state=RANDOM_STATE)[0]


def importances(values: np.ndarray, y: np.ndarray, folds: int = FOLDS, repeats: int = PERMUTATION_REPEATS,
                threads: int = FIT_THREADS) -> Importances:
    """Cross-fitted importances: the persons fall into `folds` stratified parts; trees
    fitted on the other parts (the scores' parameters and seed) predict each part
    (the out-of-fold AUC covers everyone) and have its features shuffled.

    Averaging over folds is what makes the ranking repeatable: with one 30% holdout of
    the demo (19 big spenders in it) the order of the person ids alone moved the holdout
    AUC from 0.83 to 0.78 and the first feature from `aov` to an age band.
    """
    from sklearn.model_selection import StratifiedKFold

    empty = np.full(values.shape[1], np.nan)
    if min(int(y.sum()), int(len(y) - y.sum())) < max(MIN_CLASS_ROWS, folds):
        return Importances(empty, empty, None, 0)
    spec = ModelSpec(model="feature_insight", horizon_days=0, buyers_only=False, positive_is_purchase=True,
                     threads=threads)
    predicted, drops, gains = np.zeros(len(y)), np.zeros(values.shape[1]), np.zeros(values.shape[1])
    for train, hold in StratifiedKFold(folds, shuffle=True, random_state=RANDOM_STATE).split(values, y):
        model = fit_classifier(spec, values[train], y[train])
        gain = model.booster_.feature_importance(importance_type="gain").astype(np.float64)
        gains += gain / gain.sum() if gain.sum() > 0 else 0.0
        rows = _fold_rows(hold, y, PERMUTATION_ROWS // folds)
        with threadpool_limits(limits=threads, user_api="openmp"):
            predicted[hold] = model.predict_proba(values[hold])[:, 1]
            drops += _shuffled_auc_drops(model, values[rows], y[rows], np.flatnonzero(gain > 0), repeats)
    return Importances(drops / folds, gains / folds, float(rank_auc(y, predicted)), folds)
