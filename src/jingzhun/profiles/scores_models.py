"""Fitting and judging the classifiers behind purchase propensity and churn.

The engine computes features (scores_features.py); this module is the Python side:
gradient-boosted trees that handle missing values natively ("no order yet" stays NaN
rather than a made-up number), optionally calibrated (isotonic or sigmoid), with a
fixed seed, one thread and rows sorted before fitting so a rerun gives the same model.

Two estimators, with the same tree settings: LightGBM (the default) and scikit-learn's
HistGradientBoostingClassifier (the same histogram algorithm, no extra dependency). On
the 20,000-person demo's training sets they reach the same out-of-time AUC (propensity
0.7563 vs 0.7568, churn 0.6574 vs 0.6541) and LightGBM fits 4x faster on one thread
(5.4 s vs 21.8 s for 127,654 rows x 61 features), and fitting is most of the stage.

Judged on an out-of-time test: AUC (does it rank buyers first?), Brier score and
reliability bins (can a 0.3 be read as "3 in 10 will"?), and the lift of the top
decile (what a campaign aimed at the top 10% gains over random).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from jingzhun.core.errors import JingzhunError


class ScoresError(JingzhunError):
    """A score model is configured wrongly or cannot be trained."""

RANDOM_STATE = 20240601
# Shallow, regularized trees (200 rounds at rate 0.05, 15 leaves, >= 40 rows a leaf, L2 1):
# the demo has a few thousand buyers, a retailer maybe a million; neither memorizes a person.
ESTIMATOR_PARAMS: dict[str, dict[str, Any]] = {
    "lightgbm": {
        "learning_rate": 0.05, "n_estimators": 200, "num_leaves": 15, "min_child_samples": 40,
        "reg_lambda": 1.0, "random_state": RANDOM_STATE, "deterministic": True, "force_row_wise": True,
        "verbose": -1,
    },
    "sklearn": {
        "learning_rate": 0.05, "max_iter": 200, "max_leaf_nodes": 15, "min_samples_leaf": 40,
        "l2_regularization": 1.0, "early_stopping": False, "random_state": RANDOM_STATE,
    },
}
DEFAULT_ESTIMATOR = "lightgbm"
CALIBRATIONS = ("none", "isotonic", "sigmoid")
# OpenMP threads for fitting and predicting: the machine's cores, at most four. On an
# idle 2-core machine two threads cut the scores stage of the 100,000-person demo from
# 32.7 s to 25.1 s with the same trees (deterministic=True, row-wise histograms). On a
# machine whose cores are taken by other work (load 14) OpenMP's workers busy-wait for
# each other: a 55k-row fit took 10 s on one thread and 105-123 s on two. Lower it there.
FIT_THREADS = max(1, min(4, os.cpu_count() or 1))
RELIABILITY_BINS = 10


@dataclass(frozen=True)
class ModelSpec:
    """What one classifier predicts and how it is trained."""

    model: str
    horizon_days: int
    buyers_only: bool  # churn is defined among persons who bought before the cut-off
    positive_is_purchase: bool  # False for churn: the positive class is "did not buy"
    estimator: str = DEFAULT_ESTIMATOR  # lightgbm | sklearn
    params: dict[str, Any] | None = None  # None: ESTIMATOR_PARAMS[estimator]
    calibration: str = "none"
    train_snapshots: int = 3
    threads: int = FIT_THREADS
    # Beyond this many stacked rows a uniform sample, drawn by the engine from a hash of
    # person and snapshot, is fitted: AUC gains little past ~10^5 rows (100,000-person
    # demo: propensity 0.7600 at 120k rows, 0.7638 at 250k), while fitting time grows
    # with every row.
    max_training_rows: int = 150_000
    # The out-of-time test set is sampled the same way: AUC and calibration on half a
    # million rows move in the third decimal, while predicting costs every row.
    max_test_rows: int = 500_000


def tree_params(spec: ModelSpec) -> dict[str, Any]:
    """The estimator's parameters for `spec` (part of the model version)."""
    return dict(spec.params if spec.params is not None else ESTIMATOR_PARAMS[spec.estimator])


def _trees(spec: ModelSpec) -> Any:
    if spec.estimator == "sklearn":
        from sklearn.ensemble import HistGradientBoostingClassifier  # ~1 s: only when fitting

        return HistGradientBoostingClassifier(**tree_params(spec))
    try:
        from lightgbm import LGBMClassifier
    except ImportError:
        raise ScoresError(
            "the lightgbm estimator needs the lightgbm package, which is not installed.",
            field="estimator", fix="pip install lightgbm, or use estimator='sklearn'",
            message_zh="lightgbm 估计器需要 lightgbm 包，但尚未安装。",
            fix_zh="pip install lightgbm，或改用 estimator='sklearn'") from None
    return LGBMClassifier(**tree_params(spec), n_jobs=spec.threads)


def build_classifier(spec: ModelSpec) -> Any:
    """The estimator for `spec`: boosted trees, wrapped in a calibrator if asked."""
    if spec.estimator not in ESTIMATOR_PARAMS or spec.calibration not in CALIBRATIONS:
        raise ScoresError(
            f"unknown estimator {spec.estimator!r} or calibration {spec.calibration!r}.",
            field="estimator", fix=f"use one of {sorted(ESTIMATOR_PARAMS)} and one of {list(CALIBRATIONS)}",
            message_zh=f"未知的估计器 {spec.estimator!r} 或校准方法 {spec.calibration!r}。",
            fix_zh=f"估计器请用 {sorted(ESTIMATOR_PARAMS)} 之一，校准方法请用 {list(CALIBRATIONS)} 之一")
    trees = _trees(spec)
    if spec.calibration == "none":
        return trees
    from sklearn.calibration import CalibratedClassifierCV

    # cv=3 without shuffling: folds follow the (sorted) row order, so fits repeat exactly.
    return CalibratedClassifierCV(trees, method=spec.calibration, cv=3)


def fit_classifier(spec: ModelSpec, features: np.ndarray, labels: np.ndarray) -> Any:
    """Fit the classifier; both classes must occur (checked by the caller)."""
    with threadpool_limits(limits=spec.threads, user_api="openmp"):
        return build_classifier(spec).fit(features, labels)


def predict(model: Any, features: np.ndarray, threads: int = FIT_THREADS) -> np.ndarray:
    """Probability of the positive class for each row."""
    with threadpool_limits(limits=threads, user_api="openmp"):
        return model.predict_proba(features)[:, 1]


def evaluate(labels: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """AUC, Brier score, log loss, top-decile lift and reliability bins on one test set."""
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    labels = labels.astype(int)
    base_rate = float(labels.mean()) if len(labels) else float("nan")
    both = len(np.unique(labels)) == 2
    return {
        "auc": float(roc_auc_score(labels, predicted)) if both else None,
        "brier": float(brier_score_loss(labels, predicted)),
        "brier_base_rate": float(brier_score_loss(labels, np.full(len(labels), base_rate))),
        "log_loss": float(log_loss(labels, np.clip(predicted, 1e-6, 1 - 1e-6), labels=[0, 1])),
        "base_rate": base_rate,
        "mean_predicted": float(predicted.mean()),
        "top_decile_lift": top_decile_lift(labels, predicted),
        "reliability": reliability_bins(labels, predicted),
        "rows": int(len(labels)),
        "positives": int(labels.sum()),
    }


def top_decile_lift(labels: np.ndarray, predicted: np.ndarray) -> float | None:
    """Positive rate among the 10% scored highest, over the overall positive rate."""
    if not len(labels) or labels.sum() == 0:
        return None
    order = np.lexsort((np.arange(len(predicted)), -predicted))
    top = order[: max(1, len(order) // 10)]
    return float(labels[top].mean() / labels.mean())


def reliability_bins(labels: np.ndarray, predicted: np.ndarray, bins: int = RELIABILITY_BINS) -> list[dict]:
    """Equal-count bins of the predicted probability: mean predicted vs observed rate.

    Equal-count (not equal-width) bins, because with a 5% base rate almost every
    prediction falls in the first tenth of [0, 1].
    """
    order = np.lexsort((np.arange(len(predicted)), predicted))
    rows = []
    for index, chunk in enumerate(np.array_split(order, bins)):
        if not len(chunk):
            continue
        rows.append({
            "bin": index + 1,
            "count": int(len(chunk)),
            "lower": float(predicted[chunk].min()),
            "upper": float(predicted[chunk].max()),
            "mean_predicted": float(predicted[chunk].mean()),
            "observed_rate": float(labels[chunk].mean()),
        })
    return rows


def model_version(model: str, features: list[str], params: dict[str, Any], window: dict[str, Any]) -> str:
    """A short hash of what defines a trained model: features, parameters, training window.

    Same data definition and settings give the same version, so a rerun on the same
    data is recognisably the same model.
    """
    document = json.dumps({"model": model, "features": features, "params": params, "window": window},
                          sort_keys=True, default=str)
    return hashlib.sha256(document.encode()).hexdigest()[:16]
