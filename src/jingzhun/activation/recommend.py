"""Recommendations (商品推荐): 猜你喜欢, 热门推荐, 新品上市 and related products, evaluated and served.

The pipeline stage `recommend` (after `segments`):

1. collects every interaction (purchases of kept orders, adds to cart, product views)
   and the stock ledger once, in the engine;
2. **evaluates** the recommender on a time split: trained on what happened before a
   cut-off (`as_of - test_days`), judged on what test users bought in the days after it,
   beside a popularity baseline in the same run (precision@k, recall@k, hit rate,
   coverage, novelty); the evaluation is stored in `model_runs` under the model version;
3. trains the same recipe at `as_of` and writes the serving tables `recommendations`
   (every person's three lists, each row with its reason in Chinese and English) and
   `related_products` (k per product for product pages), each row carrying that model
   version, so every recommendation traces to the evaluation of the model that made it.

All heavy work is SQL (recommend_sql.py, recommend_lists.py) run by the engine; Python
holds only the evaluation's two-row summary. The lists are read back by
`recommend_for` and `related_products`, which return DataFrames with the SQL they ran.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
from sqlglot import exp

from jingzhun.activation.recommend_lists import (
    evaluation_sql,
    guess_sql,
    metrics_from,
    recommendations_sql,
    related_sql,
)
from jingzhun.activation.recommend_settings import (
    RecommendSettings,
    load_recommend_settings,
    model_version,
)
from jingzhun.activation.recommend_sql import (
    AFFINITY,
    CATALOGUE,
    GROUP_TOP,
    GUESS,
    INTERACTIONS,
    NEIGHBOURS,
    SEGMENTS,
    STOCK_LINES,
    TASTES,
    affinity_sql,
    catalogue_sql,
    cycle_days_sql,
    decay_rate,
    group_top_sql,
    interactions_sql,
    neighbours_sql,
    segments_sql,
    tastes_sql,
)
from jingzhun.collect.inventory import ledger_lines_sql, stock_on_hand_sql
from jingzhun.core.errors import JingzhunError
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine, MaterializeHints
from jingzhun.profiles.tags import data_as_of
from jingzhun.schema.tables import MODEL_RUNS, RECOMMENDATIONS, RELATED_PRODUCTS

Progress = Callable[[str, int, int], None]
MODEL = "recommend"
FEATURES = ["purchases", "cart_adds", "product_views", "segment: gender x age_band x city",
            "launch_date", "price_band", "stock_on_hand", "repurchase_cycle"]
MODELS = ("recommender", "popularity")


class RecommendError(JingzhunError):
    """A recommendation request cannot be answered as asked."""


@dataclass(frozen=True)
class RecommenderEvaluation:
    """The offline test of one recipe on consecutive time splits, pooled.

    For each cut-off the recipe is trained on what happened before it and judged on
    what test users (persons seen before the cut-off) bought in the `test_days` after
    it. `metrics` has one row per model (`recommender`, `popularity`): users (summed
    over windows), hits, precision@k, recall@k, hit rate@k, coverage and novelty; `sql`
    is the query that counted the latest window (each window runs it with its cut-off).
    """

    cutoffs: tuple[dt.datetime, ...]
    test_days: int
    k: int
    metrics: pd.DataFrame
    sql: str

    @property
    def until(self) -> dt.datetime:
        return self.cutoffs[-1] + dt.timedelta(days=self.test_days)

    def value(self, model: str, metric: str) -> float | None:
        """One number, e.g. `value("recommender", "precision_at_10")`."""
        found = self.metrics.loc[model, metric]
        return None if pd.isna(found) else float(found)

    def as_json(self) -> dict[str, object]:
        """What `model_runs.metrics` stores: the splits, k, and each model's metrics."""
        models = {model: {key: _plain(value) for key, value in row.items()}
                  for model, row in self.metrics.to_dict(orient="index").items()}
        return {"cutoffs": [cutoff.isoformat() for cutoff in self.cutoffs], "test_days": self.test_days,
                "k": self.k, **models}


def _plain(value: object) -> object:
    """A pandas scalar as JSON: ints stay ints, NaN becomes null."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


@dataclass(frozen=True)
class RecommendResult:
    """What the stage wrote (rows per table), what to tell the user, and the evaluation."""

    tables: dict[str, int]
    notes: list[tuple[str, dict]] = field(default_factory=list)
    model_version: str = ""
    evaluation: RecommenderEvaluation | None = None
    sql: dict[str, str] = field(default_factory=dict)


@dataclass
class _Run:
    """One training of the recipe at one instant: the engine's scratch tables and their SQL."""

    engine: Engine
    settings: RecommendSettings
    timezone: str
    as_of: dt.datetime
    sql: dict[str, str] = field(default_factory=dict)

    @property
    def day(self) -> dt.date:
        return self.as_of.astimezone(ZoneInfo(self.timezone)).date()

    def materialize(self, name: str, query: exp.Expression, scratch: bool = True) -> None:
        handle = self.engine.materialize(name, query, MaterializeHints(scratch=scratch))
        self.sql[name] = handle.sql

    def prepare(self, segments: bool = True) -> None:
        """Catalogue, affinity, neighbours, and (unless only testing) segments and their best sellers."""
        s = self.settings
        popularity = decay_rate(s.popularity_half_life_days)
        stock = stock_on_hand_sql(STOCK_LINES, self.as_of)
        self.materialize(CATALOGUE, catalogue_sql(stock, self.as_of, self.day, popularity,
                                                  cycle_days_sql(s.cycles(), s.default_cycle_days),
                                                  {k: v.model_dump() for k, v in s.labels().items()}))
        self.materialize(AFFINITY, affinity_sql(self.as_of, s.action_weights.model_dump(),
                                                decay_rate(s.similarity_half_life_days),
                                                decay_rate(s.recent_half_life_days)))
        self.materialize(NEIGHBOURS, neighbours_sql(s.max_items_per_person, s.similarity_alpha,
                                                      s.similarity_shrinkage, s.neighbours))
        self.materialize(TASTES, tastes_sql(self.as_of, self.timezone, decay_rate(s.guess.taste_half_life_days)))
        if segments:
            self.materialize(SEGMENTS, segments_sql(self.as_of, s.min_group_buyers))
            self.materialize(GROUP_TOP, group_top_sql(self.as_of, popularity, s.popular_pool))

    def guess(self, k: int, buyers_until: dt.datetime | None = None) -> None:
        """猜你喜欢 for everyone, or (the offline test) for those who bought before `buyers_until`."""
        self.materialize(GUESS, guess_sql(self.as_of, self.settings.guess, k, buyers_until))

    def counts(self, until: dt.datetime, k: int) -> tuple[list[dict], str]:
        """Judge the lists made at `as_of` (the cut-off) against purchases in (as_of, until]."""
        query = evaluation_sql(self.as_of, until, k, pool=k + self.settings.popular_pool)
        return self.engine.query(query).to_pylist(), self.engine.render(query)


def _evaluate(engine: Engine, settings: RecommendSettings, timezone: str, cutoffs: list[dt.datetime],
              days: int, k: int, progress: Progress) -> RecommenderEvaluation:
    """Train at each cut-off, count hits in the window after it, pool the counts per model."""
    pooled: dict[str, dict[str, float]] = {model: {} for model in MODELS}
    sql = ""
    for index, cutoff in enumerate(cutoffs):
        progress(f"evaluate {index + 1}/{len(cutoffs)}", index, len(cutoffs))
        run, until = _Run(engine, settings, timezone, cutoff), cutoff + dt.timedelta(days=days)
        run.prepare(segments=False)  # test users all have a history: no segment fallback needed
        run.guess(k, buyers_until=until)
        rows, sql = run.counts(until, k)
        for row in rows:
            for key, value in row.items():
                if key != "model":
                    pooled[row["model"]][key] = pooled[row["model"]].get(key, 0) + (value or 0)
    frame = pd.DataFrame.from_dict({model: metrics_from(pooled[model], k) for model in MODELS}, orient="index")
    return RecommenderEvaluation(tuple(cutoffs), days, k, frame, sql)


def _cutoffs(last: dt.datetime, days: int, folds: int) -> list[dt.datetime]:
    """`folds` consecutive cut-offs `days` apart, the last one `last`, oldest first."""
    return [last - dt.timedelta(days=days * (folds - 1 - index)) for index in range(folds)]


SCRATCH = (INTERACTIONS, STOCK_LINES, CATALOGUE, AFFINITY, NEIGHBOURS, TASTES, SEGMENTS, GROUP_TOP, GUESS)


def _drop_scratch(engine: Engine) -> None:
    for name in SCRATCH:
        engine.drop_table(name)


def _collect(engine: Engine, until: dt.datetime, timezone: str) -> dict[str, str]:
    """Interactions up to `until` and the stock ledger's lines: the inputs of every run."""
    sql = {}
    for name, query in ((INTERACTIONS, interactions_sql(until)), (STOCK_LINES, ledger_lines_sql(timezone))):
        sql[name] = engine.materialize(name, query, MaterializeHints(scratch=True)).sql
    return sql


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def evaluate_recommender(
    workspace: Workspace,
    engine: Engine,
    cutoff: dt.datetime | None = None,
    test_days: int | None = None,
    k: int | None = None,
    folds: int | None = None,
    settings: RecommendSettings | None = None,
    progress: Progress | None = None,
) -> RecommenderEvaluation:
    """Train on what happened before a cut-off, judge on purchases in the `test_days` after it.

    Args:
        cutoff: the last time split (default: `test_days` before the latest data).
        test_days: the test window (default `evaluation.test_days` of recommend.yaml).
        k: list length judged (default `evaluation.k`, else the recommender's k).
        folds: consecutive windows ending at the last split, pooled (default `evaluation.folds`).
        settings: the recipe (default the workspace's definitions/recommend.yaml).

    Returns:
        the recommender and the popularity baseline side by side, with the SQL.
    """
    chosen = settings or load_recommend_settings(workspace)
    days = test_days or chosen.evaluation.test_days
    length = k or chosen.evaluation.k or chosen.k
    last = _utc(cutoff) if cutoff is not None else data_as_of(engine) - dt.timedelta(days=days)
    report = progress or (lambda step, done, total: None)
    try:
        _collect(engine, last + dt.timedelta(days=days), workspace.config.timezone)
        return _evaluate(engine, chosen, workspace.config.timezone,
                         _cutoffs(last, days, folds or chosen.evaluation.folds), days, length, report)
    finally:
        _drop_scratch(engine)


def compute_recommendations(
    workspace: Workspace,
    engine: Engine,
    as_of: dt.datetime | None = None,
    settings: RecommendSettings | None = None,
    progress: Progress | None = None,
) -> RecommendResult:
    """Evaluate the recipe on a time split, then train it at `as_of` and write the serving tables.

    Args:
        as_of: train up to this instant (default: the latest event or order, so a fixed
            data set gives the same lists and the same model version on every run).
        settings: the recipe (default the workspace's definitions/recommend.yaml).
        progress: called as `progress(step, done, total)` before each step.
    """
    report = progress or (lambda step, done, total: None)
    chosen = settings or load_recommend_settings(workspace)
    moment = _utc(as_of) if as_of is not None else data_as_of(engine)
    version = model_version(chosen, moment.isoformat())
    timezone, folds, days = workspace.config.timezone, chosen.evaluation.folds, chosen.evaluation.test_days
    total, started, evaluation, written = folds + 3, time.perf_counter(), None, 0
    try:
        report("interactions", 0, total)
        run = _Run(engine, chosen, timezone, moment, _collect(engine, moment, timezone))
        if engine.row_count(INTERACTIONS):  # nothing bought or viewed yet: empty lists, no model to record
            evaluation = _evaluate(engine, chosen, timezone, _cutoffs(moment - dt.timedelta(days=days), days, folds),
                                   days, chosen.evaluation.k or chosen.k,
                                   lambda step, done, _: report(step, 1 + done, total))
        report("lists", folds + 1, total)
        computed_at = _serve(run, version)
        report("model_runs", folds + 2, total)
        if evaluation is not None:
            written = _record_run(engine, version, moment, computed_at, evaluation, chosen,
                                  engine.row_count(AFFINITY))
    finally:
        _drop_scratch(engine)
    tables = {RECOMMENDATIONS.name: engine.row_count(RECOMMENDATIONS.name),
              RELATED_PRODUCTS.name: engine.row_count(RELATED_PRODUCTS.name), MODEL_RUNS.name: written}
    notes = [_note(evaluation, version) if evaluation else ("note.recommend_no_data", {}),
             ("note.recommend_written", {"rows": tables[RECOMMENDATIONS.name], "related": tables[RELATED_PRODUCTS.name],
                                         "seconds": round(time.perf_counter() - started, 1)})]
    if evaluation is not None:
        run.sql["evaluation"] = evaluation.sql
    return RecommendResult(tables, notes, version, evaluation, run.sql)


def _serve(run: _Run, version: str) -> dt.datetime:
    """Train at the run's instant and write `recommendations` and `related_products`."""
    settings = run.settings
    computed_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    run.prepare()
    run.guess(settings.k)
    new_since = run.day - dt.timedelta(days=settings.new_arrival_days)
    run.materialize(RECOMMENDATIONS.name, recommendations_sql(run.as_of, new_since, settings.k, version, computed_at),
                    scratch=False)
    run.materialize(RELATED_PRODUCTS.name, related_sql(settings.k, version, computed_at), scratch=False)
    return computed_at


def _note(evaluation: RecommenderEvaluation, version: str) -> tuple[str, dict]:
    k = evaluation.k
    ours, base = (evaluation.value(m, f"precision_at_{k}") for m in MODELS)
    recall, base_recall = (evaluation.value(m, f"recall_at_{k}") for m in MODELS)
    return ("note.recommend_evaluated", {
        "k": k, "precision": _shown(ours), "baseline": _shown(base), "recall": _shown(recall),
        "baseline_recall": _shown(base_recall), "users": int(evaluation.metrics.loc["recommender", "users"]),
        "model_version": version})


def _shown(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _record_run(engine: Engine, version: str, as_of: dt.datetime, trained_at: dt.datetime,
                evaluation: RecommenderEvaluation, settings: RecommendSettings, rows: int) -> int:
    """Add this version to `model_runs` once (a rerun on the same data is the same model)."""
    seen = engine.query(exp.select(exp.func("COUNT", exp.Star()).as_("n")).from_(MODEL_RUNS.name).where(
        exp.and_(exp.column("model").eq(exp.convert(MODEL)), exp.column("model_version").eq(exp.convert(version)))))
    if int(seen.column("n")[0].as_py()):
        return 0
    row = {"model": MODEL, "model_version": version, "trained_at": trained_at, "train_until": as_of,
           "metrics": json.dumps(evaluation.as_json(), sort_keys=True, ensure_ascii=False),
           "params": json.dumps(settings.fingerprint(), sort_keys=True), "features": json.dumps(FEATURES),
           "rows_trained": rows}
    engine.write_table(MODEL_RUNS.name, pa.Table.from_pylist([row], schema=_MODEL_RUNS_SCHEMA))
    return 1


_MODEL_RUNS_SCHEMA = pa.schema([
    ("model", pa.string()), ("model_version", pa.string()), ("trained_at", pa.timestamp("us", tz="UTC")),
    ("train_until", pa.timestamp("us", tz="UTC")), ("metrics", pa.string()), ("params", pa.string()),
    ("features", pa.string()), ("rows_trained", pa.int64()),
])


def run_recommend(workspace: Workspace, engine: Engine, progress: Progress | None = None) -> RecommendResult:
    """The pipeline stage: evaluate, then recommend as of the latest data."""
    return compute_recommendations(workspace, engine, progress=progress)
