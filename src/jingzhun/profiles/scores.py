"""Predictive scores: purchase propensity (30 days), churn (90 days) and lifetime value.

`score_persons` runs the three models as one pipeline stage:

1. Features per person as of a cut-off T, computed by the engine in SQL from the
   records attributed to the person (scores_features.py); labels from the window
   after T. All cut-offs the run needs are computed by one query into a scratch table,
   and their labels by one query per horizon.
2. Each classifier is judged out of time: trained on snapshots at T2 - h, T2 - 2h, ...
   with labels up to T2, tested on the snapshot at T2 = as_of - h. Then the same
   recipe is refit on the snapshots ending at T2 (labels up to as_of) and scores
   every person at as_of. The test metrics are stored with the model version.
3. CLV: the RFM summary by SQL, BG/NBD + Gamma-Gamma fitted in Python (clv.py),
   checked on a holdout of the last 180 days, then refit at as_of.

Scores replace the previous rows of the same models in `scores` (one current score per
person and model); every trained version stays in `model_runs` with its metrics,
parameters, features and training window, so each score can be traced.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlglot import exp

from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, MaterializeHints
from jingzhun.profiles import clv
from jingzhun.profiles.scores_features import (
    feature_names,
    labelled_count_sql,
    labelled_rows_sql,
    latest_record_sql,
    product_categories,
    rfm_summary_sql,
    sample_threshold,
    snapshot_features_sql,
    snapshot_labels_sql,
    utc_instant,
)
from jingzhun.profiles.scores_models import (
    ModelSpec,
    evaluate,
    fit_classifier,
    model_version,
    predict,
    tree_params,
)

Progress = Callable[[str, int, int], None]

PROPENSITY = ModelSpec("purchase_propensity_30d", horizon_days=30, buyers_only=False,
                       positive_is_purchase=True)
CHURN = ModelSpec("churn_90d", horizon_days=90, buyers_only=True, positive_is_purchase=False)
CLASSIFIERS = (PROPENSITY, CHURN)
CLV_MODEL, CLV_PURCHASES, P_ALIVE = "clv_365d", "clv_expected_purchases_365d", "p_alive"
CLV_MODELS = (CLV_MODEL, CLV_PURCHASES, P_ALIVE)
CLV_HORIZON_DAYS = 365
CLV_HOLDOUT_DAYS = 180
DAYS_PER_PERIOD = 7.0  # BG/NBD runs in weeks, the unit of the published estimates
MIN_TRAINING_ROWS = 50
SNAPSHOT_TABLE = "scores_snapshot_features"  # the run's features at every cut-off, dropped after
SNAPSHOT_LABELS_PREFIX = "scores_snapshot_labels_"  # + horizon: who bought after each cut-off


@dataclass(frozen=True)
class ScoresResult:
    """What the scores stage wrote (rows per table), what to tell the user, and each model's metrics."""

    tables: dict[str, int]
    notes: list[tuple[str, dict]] = field(default_factory=list)
    metrics: dict[str, dict] = field(default_factory=dict)


@dataclass
class _Run:
    """One scoring run's shared state: the engine, the as-of time and its scratch tables.

    The features of every cut-off are computed by one engine query into SNAPSHOT_TABLE
    (see `snapshot_features_sql`), each horizon's labels by one query into a scratch
    table beside it. A training or test set is then one query that joins the two and
    samples in the engine (`labelled_rows_sql`), so Python receives at most the rows a
    model uses: at a million persons the stacked snapshots would be gigabytes of pandas.
    Only the as-of snapshot (every person, to be scored) is read whole, and kept.
    """

    engine: Engine
    as_of: dt.datetime
    timezone: str
    categories: list[str]
    computed_at: dt.datetime
    cutoffs: list[dt.datetime] = field(default_factory=list)
    scratch: list[str] = field(default_factory=list)
    current: pd.DataFrame | None = None

    @property
    def features(self) -> list[str]:
        return feature_names(self.categories)

    def compute_snapshots(self) -> None:
        """Features at every cut-off and labels after them, materialized by the engine."""
        self.cutoffs = snapshot_cutoffs(self.as_of)
        self._materialize(SNAPSHOT_TABLE, snapshot_features_sql(self.cutoffs, self.categories))
        for horizon in sorted({spec.horizon_days for spec in CLASSIFIERS}):
            self._materialize(_labels_table(horizon), snapshot_labels_sql(self.cutoffs, horizon))

    def _materialize(self, name: str, query: exp.Expression) -> None:
        self.scratch.append(name)
        self.engine.materialize(name, query, MaterializeHints(partition_by=("snapshot",), scratch=True))

    def drop_scratch(self) -> None:
        for name in self.scratch:
            self.engine.drop_table(name)

    def labelled(self, spec: ModelSpec, cutoffs: Sequence[dt.datetime], limit: int | None
                 ) -> tuple[pd.DataFrame, np.ndarray]:
        """The population of `spec` at `cutoffs` (oldest first) with labels from the
        horizon after each, sampled in the engine down to about `limit` rows."""
        snapshots = [self.cutoffs.index(cutoff) for cutoff in sorted(cutoffs)]
        below = None
        if limit is not None:
            available = self.engine.query(labelled_count_sql(SNAPSHOT_TABLE, snapshots, spec.buyers_only))
            below = sample_threshold(limit, int(available.column("n")[0].as_py()))
        query = labelled_rows_sql(SNAPSHOT_TABLE, _labels_table(spec.horizon_days), self.features,
                                  snapshots, spec.buyers_only, below)
        frame = _sorted(self.engine.query(query).to_pandas(), ["snapshot", "person_id"])
        bought = frame.pop("bought").to_numpy(dtype=int)
        return frame, (bought if spec.positive_is_purchase else 1 - bought)

    def population(self, spec: ModelSpec) -> pd.DataFrame:
        """Who `spec` scores at as_of: every known person, or only those who bought before."""
        if self.current is None:
            query = (exp.select("person_id", *self.features).from_(SNAPSHOT_TABLE)
                     .where(exp.column("snapshot").eq(exp.convert(self.cutoffs.index(self.as_of))))
                     .order_by("person_id"))
            self.current = _sorted(self.engine.query(query).to_pandas(), ["person_id"])
        frame = self.current
        return frame[frame["orders_total"] > 0].reset_index(drop=True) if spec.buyers_only else frame


def _labels_table(horizon_days: int) -> str:
    return f"{SNAPSHOT_LABELS_PREFIX}{int(horizon_days)}d"


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """`frame` in `keys` order, so fits are deterministic on any engine (the engine
    sorts; pandas only checks)."""
    ordered = frame.set_index(keys).index.is_monotonic_increasing if len(keys) > 1 else \
        frame[keys[0]].is_monotonic_increasing
    return frame if ordered else frame.sort_values(keys, kind="stable").reset_index(drop=True)


def score_persons(
    workspace: Workspace,
    engine: Engine,
    as_of: dt.datetime | None = None,
    progress: Progress | None = None,
) -> ScoresResult:
    """Train, evaluate and store purchase propensity, churn and CLV scores for every person.

    Args:
        workspace: the workspace (its time zone sets the calendar days of the CLV summary).
        engine: the engine holding the canonical tables and `record_persons`.
        as_of: score as of this instant; default the latest order or event time, so a
            fixed data set gives the same scores on every run.
        progress: called as `progress(step, done, total)` before each step.

    Returns:
        rows written per table, notes for the pipeline summary, and each model's metrics.
    """
    report = progress or (lambda step, done, total: None)
    latest = as_of or engine.query(latest_record_sql()).column("latest")[0].as_py()
    if latest is None:
        return ScoresResult({"scores": 0, "model_runs": 0}, [("note.scores_no_data", {})])
    run = _Run(engine, utc_instant(latest), workspace.config.timezone, product_categories(engine),
               dt.datetime.now(dt.UTC).replace(microsecond=0))
    collected = _Collected()
    total = len(CLASSIFIERS) + 3
    report("features", 0, total)
    try:
        run.compute_snapshots()
        for index, spec in enumerate(CLASSIFIERS, start=1):
            report(spec.model, index, total)
            collected.add_classifier(spec.model, _classifier(run, spec))
    finally:
        run.drop_scratch()
    report("clv", total - 2, total)
    collected.add_lifetime_value(_lifetime_value(run))
    report("write", total - 1, total)
    written = write_scores(engine, collected.scores, collected.runs)
    return ScoresResult(written, collected.notes, collected.metrics)


@dataclass
class _Collected:
    """Scores, model runs, notes and metrics gathered over one run's models."""

    scores: list[pa.Table] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    notes: list[tuple[str, dict]] = field(default_factory=list)
    metrics: dict[str, dict] = field(default_factory=dict)

    def _add(self, model: str, tables: list[pa.Table], record: dict[str, Any]) -> dict:
        self.scores.extend(tables)
        self.runs.append(record)
        self.metrics[model] = json.loads(record["metrics"])
        return self.metrics[model]

    def add_classifier(self, model: str, outcome: tuple[pa.Table, dict] | None) -> None:
        if outcome is None:
            self.notes.append(("note.scores_skipped", {"model": model}))
            return
        metrics = self._add(model, [outcome[0]], outcome[1])
        self.notes.append(("note.scores_model", {"model": model, "auc": _rounded(metrics["auc"]),
                                                 "rows": outcome[0].num_rows}))

    def add_lifetime_value(self, outcome: tuple[list[pa.Table], dict] | None) -> None:
        if outcome is None:
            self.notes.append(("note.scores_skipped", {"model": CLV_MODEL}))
            return
        self._add(CLV_MODEL, outcome[0], outcome[1])
        alive = outcome[0][2].column("score").to_numpy()
        self.notes.append(("note.scores_clv", {"rows": len(alive), "p_alive_mean": _rounded(float(alive.mean()))}))


def run_scores(workspace: Workspace, engine: Engine, progress: Progress | None = None) -> ScoresResult:
    """The pipeline stage: `score_persons` as of the latest data."""
    return score_persons(workspace, engine, progress=progress)


def snapshot_cutoffs(as_of: dt.datetime, specs: Sequence[ModelSpec] = CLASSIFIERS) -> list[dt.datetime]:
    """Every cut-off whose features a run computes: as_of and each model's snapshots."""
    cutoffs = {utc_instant(as_of)}
    for spec in specs:
        step = dt.timedelta(days=spec.horizon_days)
        cutoffs.update(utc_instant(as_of) - step * k for k in range(0, spec.train_snapshots + 2))
    return sorted(cutoffs)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# ---- classifiers ----------------------------------------------------------------

def _matrix(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    return frame[names].to_numpy(dtype=np.float64)


def _trainable(labels: np.ndarray) -> bool:
    return len(labels) >= MIN_TRAINING_ROWS and 0 < labels.sum() < len(labels)


def _classifier(run: _Run, spec: ModelSpec) -> tuple[pa.Table, dict] | None:
    """Evaluate out of time, refit one horizon later, score at as_of; None if too little history."""
    step = dt.timedelta(days=spec.horizon_days)
    test_cutoff = run.as_of - step
    train_cutoffs = sorted(test_cutoff - step * k for k in range(1, spec.train_snapshots + 1))
    refit_cutoffs = [cutoff + step for cutoff in train_cutoffs]
    train = run.labelled(spec, train_cutoffs, spec.max_training_rows)
    refit = run.labelled(spec, refit_cutoffs, spec.max_training_rows)
    if not (_trainable(train[1]) and _trainable(refit[1])):
        return None
    # A feature never observed in training (no member records at all, say) carries nothing.
    names = [n for n in run.features if train[0][n].notna().any() and refit[0][n].notna().any()]
    test_frame, test_labels = run.labelled(spec, [test_cutoff], spec.max_test_rows)
    evaluated = evaluate(test_labels, predict(fit_classifier(spec, _matrix(train[0], names), train[1]),
                                              _matrix(test_frame, names)))
    model = fit_classifier(spec, _matrix(refit[0], names), refit[1])
    population = run.population(spec)
    params = {**tree_params(spec), "estimator": spec.estimator, "calibration": spec.calibration,
              "train_snapshots": spec.train_snapshots, "max_training_rows": spec.max_training_rows,
              "max_test_rows": spec.max_test_rows}
    window = {"as_of": run.as_of.isoformat(), "horizon_days": spec.horizon_days,
              "train_cutoffs": [c.isoformat() for c in refit_cutoffs]}
    version = model_version(spec.model, names, params, window)
    metrics = {**evaluated, "test_cutoff": test_cutoff.isoformat(), "train_rows": len(train[1]),
               "train_cutoffs": [c.isoformat() for c in train_cutoffs], "horizon_days": spec.horizon_days}
    scores = _score_rows(population["person_id"], spec.model, version,
                         predict(model, _matrix(population, names)), run.computed_at)
    return scores, _model_run(spec.model, version, run, metrics, params, names, len(refit[1]))


# ---- lifetime value -------------------------------------------------------------

def _rfm(run: _Run, as_of: dt.datetime) -> pd.DataFrame:
    """The RFM summary at `as_of`, in weeks, sorted by person."""
    frame = run.engine.query(rfm_summary_sql(as_of, run.timezone)).to_pandas()
    frame = frame.sort_values("person_id", kind="stable").reset_index(drop=True)
    frame["recency"] = frame["recency_days"] / DAYS_PER_PERIOD
    frame["age"] = frame["t_days"] / DAYS_PER_PERIOD
    return frame


def _fit_clv(rfm: pd.DataFrame) -> tuple[clv.BetaGeoParams, clv.GammaGammaParams]:
    bgnbd = clv.fit_bgnbd(rfm["frequency"], rfm["recency"], rfm["age"])
    spend = clv.fit_gamma_gamma(rfm["frequency"], rfm["monetary"].fillna(0.0))
    return bgnbd, spend


def _agreement(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {"predicted_total": float(predicted.sum()), "mae": float(np.abs(actual - predicted).mean()),
            "correlation": float(np.corrcoef(actual, predicted)[0, 1])}


def _clv_holdout(run: _Run, rfm_now: pd.DataFrame) -> dict[str, Any]:
    """Fit on history up to as_of - 180 days; compare predicted with actual repeat purchases.

    Beside BG/NBD, a naive forecast (each customer's repeat rate so far, x / T, carried
    forward) shows what the model adds.
    """
    cutoff = run.as_of - dt.timedelta(days=CLV_HOLDOUT_DAYS)
    calibration = _rfm(run, cutoff)
    bgnbd, _ = _fit_clv(calibration)
    before = calibration["frequency"].to_numpy(dtype=float)
    later = rfm_now.set_index("person_id")["frequency"].reindex(calibration["person_id"]).to_numpy(dtype=float)
    actual = np.where(np.isnan(later), before, later) - before
    periods = CLV_HOLDOUT_DAYS / DAYS_PER_PERIOD
    predicted = clv.expected_purchases(bgnbd, periods, calibration["frequency"], calibration["recency"],
                                       calibration["age"])
    age = calibration["age"].to_numpy(dtype=float)
    naive = np.divide(before, age, out=np.zeros_like(before), where=age > 0) * periods
    by_frequency = (pd.DataFrame({"x": np.minimum(calibration["frequency"], 7), "actual": actual,
                                  "predicted": predicted}).groupby("x").mean())
    return {
        "cutoff": cutoff.isoformat(), "days": CLV_HOLDOUT_DAYS, "customers": len(calibration),
        "actual_total": float(actual.sum()), **_agreement(actual, predicted),
        "naive": _agreement(actual, naive),
        "by_frequency": [{"frequency": int(x), "actual": float(row.actual), "predicted": float(row.predicted)}
                         for x, row in by_frequency.iterrows()],
    }


def _lifetime_value(run: _Run) -> tuple[list[pa.Table], dict] | None:
    """BG/NBD + Gamma-Gamma at as_of: expected purchases and value over 365 days, P(alive)."""
    rfm = _rfm(run, run.as_of)
    try:
        bgnbd, spend = _fit_clv(rfm)
        holdout = _clv_holdout(run, rfm)
    except clv.ClvFitError:
        return None
    horizon = CLV_HORIZON_DAYS / DAYS_PER_PERIOD
    purchases = clv.expected_purchases(bgnbd, horizon, rfm["frequency"], rfm["recency"], rfm["age"])
    alive = clv.probability_alive(bgnbd, rfm["frequency"], rfm["recency"], rfm["age"])
    value = purchases * clv.expected_spend(spend, rfm["frequency"], rfm["monetary"])
    params = {"bgnbd": _params(bgnbd), "gamma_gamma": _params(spend), "period_days": DAYS_PER_PERIOD,
              "horizon_days": CLV_HORIZON_DAYS, "discount_rate": 0.0}
    window = {"as_of": run.as_of.isoformat(), "timezone": run.timezone}
    version = model_version(CLV_MODEL, ["frequency", "recency", "T", "monetary"], params, window)
    metrics = {"bgnbd_log_likelihood": bgnbd.log_likelihood, "gamma_gamma_log_likelihood": spend.log_likelihood,
               "buyers": len(rfm), "repeat_buyers": int((rfm["frequency"] > 0).sum()), "holdout": holdout}
    people = rfm["person_id"]
    tables = [_score_rows(people, model, version, values, run.computed_at)
              for model, values in ((CLV_MODEL, value), (CLV_PURCHASES, purchases), (P_ALIVE, alive))]
    record = _model_run(CLV_MODEL, version, run, metrics, params,
                        ["frequency", "recency", "T", "monetary"], len(rfm))
    return tables, record


def _finite(value: Any) -> Any:
    """NaN and infinities as null, so the metrics stay valid JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _params(fitted: Any) -> dict[str, float]:
    return {k: float(v) for k, v in fitted.__dict__.items() if k != "log_likelihood"}


# ---- storage --------------------------------------------------------------------

def _score_rows(people: pd.Series, model: str, version: str, values: np.ndarray,
                computed_at: dt.datetime) -> pa.Table:
    count = len(people)
    return pa.table({
        "person_id": pa.array(people.tolist(), pa.string()),
        "model": pa.array([model] * count, pa.string()),
        "model_version": pa.array([version] * count, pa.string()),
        "score": pa.array(np.asarray(values, dtype=np.float64)),
        "computed_at": pa.array([computed_at] * count, pa.timestamp("us", tz="UTC")),
    })


def _model_run(model: str, version: str, run: _Run, metrics: dict, params: dict,
               features: list[str], rows: int) -> dict[str, Any]:
    return {"model": model, "model_version": version, "trained_at": run.computed_at,
            "train_until": run.as_of, "metrics": json.dumps(_finite(metrics), sort_keys=True),
            "params": json.dumps(params, sort_keys=True), "features": json.dumps(features), "rows_trained": rows}


def write_scores(engine: Engine, scores: list[pa.Table], runs: list[dict[str, Any]]) -> dict[str, int]:
    """Replace the current rows of these models in `scores`; append their runs to `model_runs`."""
    models = sorted({table.column("model")[0].as_py() for table in scores if table.num_rows})
    new = pa.concat_tables(scores) if scores else None
    with engine.transaction():
        if models:
            _replace_model_rows(engine, new, models)
        if runs:
            engine.write_table("model_runs", pa.Table.from_pylist(runs, schema=MODEL_RUNS_SCHEMA))
    return {"scores": new.num_rows if new is not None else 0, "model_runs": len(runs)}


MODEL_RUNS_SCHEMA = pa.schema([
    ("model", pa.string()), ("model_version", pa.string()), ("trained_at", pa.timestamp("us", tz="UTC")),
    ("train_until", pa.timestamp("us", tz="UTC")), ("metrics", pa.string()), ("params", pa.string()),
    ("features", pa.string()), ("rows_trained", pa.int64()),
])


def _replace_model_rows(engine: Engine, new: pa.Table, models: list[str]) -> None:
    """Delete where the engine can; elsewhere rewrite the table without these models' rows."""
    mine = exp.column("model").isin(*[exp.convert(model) for model in models])
    if engine.SUPPORTS_UPDATE_DELETE:
        engine.execute(exp.delete("scores", where=mine))
        engine.write_table("scores", new)
        return
    kept = engine.query(exp.select("*").from_("scores").where(exp.not_(mine)))
    engine.write_table("scores", pa.concat_tables([kept, new.select(kept.column_names).cast(kept.schema)]),
                       mode="replace")
