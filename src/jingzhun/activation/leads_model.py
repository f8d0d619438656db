"""The lead-scoring model: a logistic regression on freshness, intent and fit, tested on a time split.

Why logistic regression: a sales team has thousands of past leads, not millions; the log-odds
of converting are close to additive in these signals (the demo plants exactly that); and its
coefficients say to a sales manager what a lead's score is made of. Its loss is the log
loss, so its probabilities are calibrated by construction on the data it learns from — the
test split checks that they still are on newer leads (Brier score, expected calibration
error and a ten-bin reliability table).

The test: decided leads (won or lost) ordered by creation; the newest `test_share` are held
out, the model is fitted on the older ones, and its AUC is compared with ranking by
freshness alone (the rule of thumb "call the freshest leads first"). The served model is
then refitted on every decided lead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from jingzhun.activation.leads_sql import FEATURES

FEATURE_NAMES = tuple(name for name, _, _ in FEATURES)
BINS = 10


@dataclass(frozen=True)
class FittedModel:
    """Coefficients per standardized feature: log-odds = intercept + Σ coef × (x − center)."""

    intercept: float
    coefficients: dict[str, float]
    centers: dict[str, float]
    scales: dict[str, float]
    rows: int
    positives: int

    def raw_coefficients(self) -> dict[str, float]:
        """Per unit of each feature (what the SQL applies): coef / scale."""
        return {name: self.coefficients[name] / self.scales[name] for name in self.coefficients}

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        logit = np.full(len(frame), self.intercept)
        for name, coef in self.raw_coefficients().items():
            logit += coef * (frame[name].to_numpy(dtype=float) - self.centers[name])
        return 1.0 / (1.0 + np.exp(-logit))


@dataclass(frozen=True)
class ModelTest:
    """The time-split test: AUC beside the freshness-only ranking, and calibration."""

    train_rows: int
    test_rows: int
    split_at: str  # the creation time of the first test lead
    auc: float
    freshness_auc: float
    brier: float
    base_rate_brier: float  # predicting the training conversion rate for everyone
    calibration_error: float
    reliability: list[dict[str, float]] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {"train_rows": self.train_rows, "test_rows": self.test_rows, "split_at": self.split_at,
                "auc": round(self.auc, 4), "freshness_auc": round(self.freshness_auc, 4),
                "brier": round(self.brier, 4), "base_rate_brier": round(self.base_rate_brier, 4),
                "calibration_error": round(self.calibration_error, 4), "reliability": self.reliability}


def fit(frame: pd.DataFrame, regularization: float) -> FittedModel:
    """Fit on the rows of `frame` (columns: FEATURE_NAMES and `won` 0/1); constant features are left out."""
    centers = {name: float(frame[name].mean()) for name in FEATURE_NAMES}
    scales = {name: float(frame[name].std(ddof=0)) for name in FEATURE_NAMES}
    used = [name for name in FEATURE_NAMES if scales[name] > 1e-9]
    x = np.column_stack([(frame[name].to_numpy(dtype=float) - centers[name]) / scales[name] for name in used])
    y = frame["won"].to_numpy(dtype=int)
    # imported here: scikit-learn takes a second to import, which every jingzhun command would pay
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=regularization, max_iter=1000).fit(x, y)
    return FittedModel(float(model.intercept_[0]), dict(zip(used, map(float, model.coef_[0]), strict=True)),
                       {n: centers[n] for n in used}, {n: scales[n] for n in used}, len(frame), int(y.sum()))


def time_split_test(frame: pd.DataFrame, test_share: float, regularization: float) -> ModelTest | None:
    """Fit on the older decided leads, judge on the newest; None when a side lacks both outcomes."""
    ordered = frame.sort_values(["created_at", "lead_id"], kind="stable").reset_index(drop=True)
    cut = int(math.floor(len(ordered) * (1 - test_share)))
    train, test = ordered.iloc[:cut], ordered.iloc[cut:]
    if train["won"].nunique() < 2 or test["won"].nunique() < 2:
        return None
    from sklearn.metrics import brier_score_loss, roc_auc_score

    model = fit(train, regularization)
    predicted = model.predict(test)
    y = test["won"].to_numpy(dtype=int)
    base = np.full(len(test), train["won"].mean())
    return ModelTest(len(train), len(test), str(test["created_at"].iloc[0]), float(roc_auc_score(y, predicted)),
                     float(roc_auc_score(y, test["freshness"].to_numpy(dtype=float))),
                     float(brier_score_loss(y, predicted)), float(brier_score_loss(y, base)),
                     *_calibration(y, predicted))


def _calibration(y: np.ndarray, predicted: np.ndarray) -> tuple[float, list[dict[str, float]]]:
    """Expected calibration error over equal-count bins, and the bins (mean predicted vs observed)."""
    order = np.argsort(predicted, kind="stable")
    table, error = [], 0.0
    for chunk in np.array_split(order, min(BINS, len(order))):
        if len(chunk) == 0:
            continue
        mean_p, observed = float(predicted[chunk].mean()), float(y[chunk].mean())
        error += len(chunk) / len(y) * abs(mean_p - observed)
        table.append({"leads": int(len(chunk)), "predicted": round(mean_p, 4), "observed": round(observed, 4)})
    return error, table
