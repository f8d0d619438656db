"""Lookalike audiences: who in the population resembles a seed audience?

A marketer brings a seed (last month's best buyers, a campaign's converters) and asks
for more people like them. There are no "not like them" labels, only the seed and
everyone else, so this is positive-unlabelled (PU) learning: a classifier learns to
tell seed members (labelled 1) from the rest (unlabelled, 0) on the portrait matrix
(traits, current tags, current scores). If the seed is a random pick of the people
who share its profile (the SCAR assumption), the classifier's score ranks the rest in
the same order as the chance of "being one of them", which is all a ranking needs.

How it stays honest and bounded:

- Before fitting, `holdout_share` of the seed and the same share of the unlabelled
  sample are set aside; the holdout AUC (held-out seed vs held-out unlabelled) is how
  well the portrait separates the seed. Hidden lookalikes among the unlabelled pull it
  down, so it is a floor, not an estimate.
- The unlabelled are sampled (at most `unlabelled_per_seed` per seed member and
  `max_unlabelled` rows, fixed seed), so fitting costs the same at 1M persons as at 10k.
- Two-fold cross-fitting: every candidate carries a fold, model k is fitted on the
  seed plus the sampled unlabelled of the other fold, and each candidate is scored by
  its fold's model. No one is ranked by a model that was told they are "not like the
  seed", which would push real lookalikes that happened to be sampled to the bottom.
- `similarity` is the share of the held-out seed scoring at or below a candidate:
  0.5 means "as seed-like as the median held-out seed member", whatever the sampling
  ratio did to the raw probabilities; `threshold` cuts on it.
- Drivers are the trees' gain importances, with the seed's and the rest's mean of each
  feature, and features that define the seed can be left out (`exclude`) so the model
  doesn't just read the seed rule back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlglot import exp

from jingzhun.core.errors import JingzhunError
from jingzhun.engine import Engine, as_expression
from jingzhun.profiles.scores_models import (
    RANDOM_STATE,
    ModelSpec,
    fit_classifier,
    predict,
    tree_params,
)
from jingzhun.segments.feature_labels import YES_NO_TRAITS, feature_label
from jingzhun.segments.feature_labels import tag_names as read_tag_names
from jingzhun.segments.portrait_matrix import CATEGORICAL_TRAITS, NUMERIC_TRAITS, portrait_matrix

FOLDS = 2
UNLABELLED_PER_SEED = 10  # unlabelled rows sampled per seed member ...
MAX_UNLABELLED = 200_000  # ... and never more than this
MAX_SEED_FIT = 100_000  # seed rows fitted; past this a uniform sample (a seed is not scored)
ROUGH_HOLDOUT = 20  # fewer held-out seed members than this make AUC and similarity coarse
MIN_SEED = 10  # seed members with a portrait needed to learn anything
MIN_UNLABELLED = 10
MAX_MIN_CHILD_SAMPLES = 40  # the score models' leaf size, lowered for small seeds
DOMINANT_GAIN_SHARE = 0.8  # one feature carrying this much of the gain probably defines the seed
DRIVER_ROWS = 20
# OpenMP threads for fitting and scoring. One, unlike the score models' stage default:
# a lookalike is asked for while other work runs, and on a shared 2-core machine (load 7)
# two threads fitted the 1M-person case in 101 s against 9.4 s for one, OpenMP's workers
# busy-waiting for each other (user time 62 s vs 17 s). Raise it on a machine of its own.
THREADS = 1


class LookalikeError(JingzhunError):
    """A lookalike request cannot be run as asked."""


@dataclass(frozen=True)
class Lookalike:
    """A ranked lookalike audience and how it was found.

    `ranked` holds person_id, score (the classifier's probability), similarity (share
    of the held-out seed scoring at or below) and rank (1 = most seed-like), for the
    top N, the candidates at or above the similarity threshold, or every candidate.
    `drivers` holds the features by gain share, readable names (zh, en) and the seed's
    vs the rest's mean. `metrics` has the sizes, holdout AUC and recall; `sql` the
    queries that read the seed, the population and the portrait; `notes` (zh, en) pairs.
    """

    ranked: pd.DataFrame
    drivers: pd.DataFrame
    metrics: dict[str, Any]
    sql: dict[str, str]
    notes: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Features:
    """What the portrait matrix is read with, after exclusions."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    tags: tuple[str, ...]
    scores: tuple[str, ...]
    dropped_dummies: frozenset[str]
    tag_names: dict[str, tuple[str, str]]


@dataclass(frozen=True)
class _Split:
    """Row positions in the matrix: seed fit/holdout, candidates, unlabelled fit/holdout,
    and every row's cross-fitting fold."""

    seed_fit: np.ndarray
    seed_holdout: np.ndarray
    candidates: np.ndarray
    unlabelled_fit: np.ndarray
    unlabelled_holdout: np.ndarray
    fold: np.ndarray


def find_lookalikes(
    engine: Engine,
    seed: exp.Expression | str,
    population: exp.Expression | str | None = None,
    top_n: int | None = None,
    threshold: float | None = None,
    holdout_share: float = 0.2,
    *,
    numeric: Sequence[str] = NUMERIC_TRAITS,
    categorical: Sequence[str] = CATEGORICAL_TRAITS,
    tags: Sequence[str] | None = None,
    scores: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    unlabelled_per_seed: int = UNLABELLED_PER_SEED,
    max_unlabelled: int = MAX_UNLABELLED,
    threads: int = THREADS,
) -> Lookalike:
    """Score every candidate outside the seed by how much they resemble it.

    Args:
        engine: the workspace's engine (person_traits, tags, scores computed).
        seed: a query returning `person_id` (an audience), DuckDB dialect.
        population: a query returning the candidates' `person_id`; default every
            active person.
        top_n: return the N most seed-like candidates.
        threshold: return candidates whose similarity is at least this (0-1).
        holdout_share: share of the seed (and of the unlabelled sample) held out to
            measure how well the portrait separates the seed.
        numeric, categorical: person_traits columns to use.
        tags, scores: tag ids / score models to use; None = every one present.
        exclude: features to leave out because they define the seed: a trait
            (`gmv_365d`, `member_level`), a category (`member_level=钻石`),
            `tag:<tag_id>` or `score:<model>`.
        unlabelled_per_seed, max_unlabelled: bound on the unlabelled sample.
        threads: OpenMP threads for LightGBM (see THREADS).

    Returns:
        A `Lookalike`: ranked candidates, drivers, metrics, the SQL and notes.
    """
    _check_request(top_n, threshold, holdout_share)
    seed_query = _as_query(seed, "seed")
    population_query = _as_query(population, "population") if population is not None else None
    features = _feature_set(engine, numeric, categorical, tags, scores, exclude)
    seed_ids, seed_sql = _person_ids(engine, seed_query)
    if not len(seed_ids):
        raise _empty_seed()
    matrix = portrait_matrix(engine, features.numeric, features.categorical, features.tags,
                             features.scores, _union(seed_query, population_query))
    columns = [name for name in matrix.features if name not in features.dropped_dummies]
    in_seed = matrix.frame.index.isin(seed_ids)
    in_population, population_sql = _population_mask(engine, matrix.frame.index, population_query)
    _check_sizes(len(seed_ids), int(in_seed.sum()), int(in_population.sum()),
                 int((in_population & ~in_seed).sum()))
    split = _split(in_seed, in_population, holdout_share, unlabelled_per_seed, max_unlabelled)
    values = matrix.frame[columns].to_numpy(dtype=np.float32)
    spec = _spec(len(split.seed_fit), threads)
    models = _fit_folds(spec, values, split)
    scored = _score(spec, models, values, split)
    ranked, metrics = _rank(matrix.frame.index, scored, split, top_n, threshold)
    drivers = _drivers(models, columns, values, in_seed, split.candidates, features.tag_names)
    metrics |= _sizes(len(seed_ids), in_seed, split, len(columns))
    sql = {"seed": seed_sql, "population": population_sql, "portrait": matrix.sql}
    return Lookalike(ranked, drivers, metrics, sql, _notes(metrics, drivers))


# ---- checks ---------------------------------------------------------------------------------


def _check_request(top_n: int | None, threshold: float | None, holdout_share: float) -> None:
    if top_n is not None and threshold is not None:
        raise LookalikeError(
            "top_n and threshold were both given; a lookalike is cut one way.", field="top_n",
            fix="give top_n (the N most similar) or threshold (similarity 0-1), not both",
            message_zh="同时给了 top_n 和 threshold；相似人群只能按一种方式截取。",
            fix_zh="只给 top_n（取最相似的前 N 人）或 threshold（相似度 0-1）其中之一")
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        raise LookalikeError(
            f"top_n must be a whole number of at least 1, got {top_n!r}.", field="top_n",
            fix="give top_n as 1 or more, e.g. top_n=5000",
            message_zh=f"top_n 必须是不小于 1 的整数，收到 {top_n!r}。", fix_zh="top_n 请给 1 或以上，例如 5000")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise LookalikeError(
            f"threshold is a similarity between 0 and 1, got {threshold!r}.", field="threshold",
            fix="e.g. threshold=0.5: at least as seed-like as the median held-out seed member",
            message_zh=f"threshold 是 0 到 1 之间的相似度，收到 {threshold!r}。",
            fix_zh="例如 threshold=0.5：至少与留出种子的中位成员一样相似")
    if not 0.05 <= holdout_share <= 0.5:
        raise LookalikeError(
            f"holdout_share must be between 0.05 and 0.5, got {holdout_share!r}.", field="holdout_share",
            fix="keep the default 0.2 unless the seed is very large or very small",
            message_zh=f"holdout_share 必须在 0.05 到 0.5 之间，收到 {holdout_share!r}。",
            fix_zh="除非种子人群特别大或特别小，请保留默认值 0.2")


def _as_query(query: exp.Expression | str, name: str) -> exp.Query:
    """The audience as a query, checked to return `person_id` where that can be seen."""
    expression = as_expression(query)
    selects = expression.named_selects if isinstance(expression, exp.Query) else []
    if not isinstance(expression, exp.Query) or ("person_id" not in selects and "*" not in selects):
        raise LookalikeError(
            f"{name} must be a query returning a person_id column.", field=name,
            fix=f"e.g. {name}=parse_sql(\"SELECT person_id FROM segment_members WHERE segment_id = 'vip'\")",
            message_zh=f"{name} 必须是返回 person_id 列的查询。",
            fix_zh=f"例如 {name}=parse_sql(\"SELECT person_id FROM segment_members WHERE segment_id = 'vip'\")")
    return expression


def _empty_seed() -> LookalikeError:
    return LookalikeError(
        "the seed audience is empty: its query returned no person.", field="seed",
        fix="check the seed's query or segment; a lookalike needs persons to resemble",
        message_zh="种子人群为空：其查询没有返回任何人。",
        fix_zh="检查种子人群的查询或分群；相似人群需要有可参照的人")


def _check_sizes(seed_given: int, seed_used: int, population: int, candidates: int) -> None:
    if seed_used < MIN_SEED:
        raise LookalikeError(
            f"only {seed_used} of the seed's {seed_given} persons are active persons with a portrait; "
            f"at least {MIN_SEED} are needed.", field="seed",
            fix="use a larger seed, or run the portray stage (jingzhun pipeline) so its members have traits",
            message_zh=f"种子人群的 {seed_given} 人中只有 {seed_used} 人是有画像的活跃用户，至少需要 {MIN_SEED} 人。",
            fix_zh="换一个更大的种子人群，或先运行画像阶段（jingzhun pipeline）让成员有特征")
    if seed_used >= population:
        raise LookalikeError(
            f"the seed ({seed_used} persons) is not smaller than the population ({population} persons); "
            "a lookalike widens an audience, so the population must be the larger.", field="seed",
            fix="widen the population (default: every active person) or use a smaller seed",
            message_zh=f"种子人群（{seed_used} 人）不小于候选人群（{population} 人）；相似人群用于扩展人群，候选人群必须更大。",
            fix_zh="扩大候选人群（默认为全部活跃用户）或缩小种子人群")
    if candidates < MIN_UNLABELLED:
        raise LookalikeError(
            f"only {candidates} candidates lie outside the seed; at least {MIN_UNLABELLED} are needed.",
            field="population", fix="widen the population so it holds more persons than the seed",
            message_zh=f"种子之外只有 {candidates} 个候选人，至少需要 {MIN_UNLABELLED} 人。",
            fix_zh="扩大候选人群，使其远多于种子人群")


# ---- what to read ---------------------------------------------------------------------------

# Every active person: the default population (the portrait matrix reads exactly these).
DEFAULT_POPULATION = "SELECT person_id FROM persons WHERE status = 'active'"


def _feature_set(
    engine: Engine,
    numeric: Sequence[str],
    categorical: Sequence[str],
    tags: Sequence[str] | None,
    scores: Sequence[str] | None,
    exclude: Sequence[str],
) -> _Features:
    """The traits, tags and scores to read, minus `exclude` (checked: a typo there
    would silently leave the seed's own rule in the model)."""
    traits = {*NUMERIC_TRAITS, *CATEGORICAL_TRAITS}
    unknown = [name for name in (*numeric, *categorical) if name not in traits]
    if unknown:
        raise LookalikeError(
            f"unknown traits {unknown}.", field="numeric/categorical",
            fix=f"use person_traits columns among {sorted(traits)}",
            message_zh=f"未知的特征 {unknown}。", fix_zh=f"请使用 person_traits 中的列：{sorted(traits)}")
    tag_names = read_tag_names(engine)
    held = tuple(tags) if tags is not None else _present(engine, "tags", "tag_id", "valid_to IS NULL")
    models = tuple(scores) if scores is not None else _present(engine, "scores", "model")
    known = {*traits, *(f"tag:{t}" for t in (*held, *tag_names)), *(f"score:{m}" for m in models)}
    bad = [name for name in exclude if name not in known and name.split("=", 1)[0] not in CATEGORICAL_TRAITS]
    if bad:
        raise LookalikeError(
            f"exclude names features that do not exist: {bad}.", field="exclude",
            fix="name a trait (gmv_365d), a category (member_level=钻石), tag:<tag_id> or score:<model>",
            message_zh=f"exclude 中有不存在的特征：{bad}。",
            fix_zh="请写特征名（gmv_365d）、类别（member_level=钻石）、tag:<标签ID> 或 score:<模型名>")
    drop = set(exclude)
    return _Features(
        numeric=tuple(n for n in numeric if n not in drop),
        categorical=tuple(c for c in categorical if c not in drop),
        tags=tuple(t for t in held if f"tag:{t}" not in drop),
        scores=tuple(m for m in models if f"score:{m}" not in drop),
        dropped_dummies=frozenset(name for name in drop if "=" in name),
        tag_names=tag_names,
    )


def _present(engine: Engine, table: str, column: str, where: str | None = None) -> tuple[str, ...]:
    """The distinct values of `column` in `table` (none if the stage has not run)."""
    if not engine.table_exists(table):
        return ()
    query = exp.select(column).distinct().from_(table).order_by(column)
    if where is not None:
        query = query.where(where)
    values = engine.query(query).column(column).to_pylist()
    return tuple(value for value in values if value is not None)


def _person_ids(engine: Engine, query: exp.Query) -> tuple[pd.Index, str]:
    """The distinct person_ids an audience query returns, and the SQL that read them."""
    distinct = exp.select("person_id").distinct().from_(query.copy().subquery("audience"))
    ids = engine.query(distinct).column("person_id").to_pandas()
    return pd.Index(ids.dropna()), engine.render(distinct)


def _union(seed: exp.Query, population: exp.Query | None) -> exp.Query | None:
    """Whom the portrait is read for: seed and population (None: every active person)."""
    if population is None:
        return None
    return exp.union(exp.select("person_id").from_(seed.copy().subquery("seed")),
                     exp.select("person_id").from_(population.copy().subquery("population")),
                     distinct=True)


def _population_mask(engine: Engine, index: pd.Index, population: exp.Query | None) -> tuple[np.ndarray, str]:
    """Which portrait rows are candidates, and the SQL that says so."""
    if population is None:
        return np.ones(len(index), dtype=bool), engine.render(DEFAULT_POPULATION)
    ids, sql = _person_ids(engine, population)
    return index.isin(ids), sql


# ---- sampling, fitting, scoring ---------------------------------------------------------------


def _split(
    in_seed: np.ndarray, in_population: np.ndarray, holdout_share: float, per_seed: int, cap: int
) -> _Split:
    """Hold out part of the seed and of a bounded unlabelled sample; give every row a fold.

    Rows come sorted by person_id and the generator has a fixed seed, so a rerun on the
    same data draws the same sample and the same model.
    """
    rng = np.random.default_rng(RANDOM_STATE)
    seed_rows = rng.permutation(np.flatnonzero(in_seed))
    seed_holdout = max(1, round(holdout_share * len(seed_rows)))
    seed_fit = np.sort(seed_rows[seed_holdout:seed_holdout + MAX_SEED_FIT])
    candidates = np.flatnonzero(in_population & ~in_seed)
    sample = rng.choice(candidates, min(len(candidates), per_seed * len(seed_rows), cap), replace=False)
    unlabelled_holdout = max(1, round(holdout_share * len(sample)))
    fold = rng.integers(0, FOLDS, len(in_seed))
    fold[sample[unlabelled_holdout:]] = np.arange(len(sample) - unlabelled_holdout) % FOLDS
    return _Split(seed_fit, seed_rows[:seed_holdout], candidates,
                  sample[unlabelled_holdout:], sample[:unlabelled_holdout], fold)


def _spec(positives: int, threads: int) -> ModelSpec:
    """The score models' trees, with leaves no larger than a fifth of the fitted seed:
    40 rows a leaf would leave a 60-person seed with no split at all."""
    base = ModelSpec("lookalike", horizon_days=0, buyers_only=False, positive_is_purchase=True)
    params = tree_params(base) | {"min_child_samples": min(MAX_MIN_CHILD_SAMPLES, max(5, positives // 5))}
    return ModelSpec("lookalike", horizon_days=0, buyers_only=False, positive_is_purchase=True, params=params,
                     threads=max(1, threads))


def _fit_folds(spec: ModelSpec, values: np.ndarray, split: _Split) -> list[Any]:
    """One classifier per fold: the fitted seed (1) against the sampled unlabelled of the
    other folds (0), rows in matrix order."""
    models = []
    for k in range(FOLDS):
        unlabelled = split.unlabelled_fit[split.fold[split.unlabelled_fit] != k]
        rows = np.concatenate([split.seed_fit, unlabelled])
        labels = np.concatenate([np.ones(len(split.seed_fit)), np.zeros(len(unlabelled))])
        order = np.argsort(rows, kind="stable")
        models.append(fit_classifier(spec, values[rows[order]], labels[order]))
    return models


def _score(spec: ModelSpec, models: list[Any], values: np.ndarray, split: _Split) -> np.ndarray:
    """Each candidate and held-out seed member scored by its own fold's model, which
    never saw them; NaN for the rows not scored (the fitted seed)."""
    scored = np.full(len(values), np.nan)
    rows = np.concatenate([split.candidates, split.seed_holdout])
    for k, model in enumerate(models):
        mine = rows[split.fold[rows] == k]
        if len(mine):
            scored[mine] = predict(model, values[mine], spec.threads)
    return scored


# ---- ranking, measuring, explaining -----------------------------------------------------------


def _rank(
    index: pd.Index, scored: np.ndarray, split: _Split, top_n: int | None, threshold: float | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Candidates by score (ties by person_id), cut at top_n or similarity >= threshold,
    and how much of the held-out seed each cut would have found."""
    held = np.sort(scored[split.seed_holdout])
    scores = scored[split.candidates]
    ranked = pd.DataFrame({
        "person_id": index[split.candidates],
        "score": scores,
        "similarity": np.searchsorted(held, scores, side="right") / len(held),
    }).sort_values(["score", "person_id"], ascending=[False, True], ignore_index=True)
    ranked["rank"] = np.arange(1, len(ranked) + 1)
    decile_cut = ranked["score"].iloc[max(1, len(ranked) // 10) - 1]
    if top_n is not None:
        ranked = ranked.head(top_n)
    elif threshold is not None:
        ranked = ranked[ranked["similarity"] >= threshold].reset_index(drop=True)
    cut = top_n is not None or threshold is not None
    metrics = {
        "holdout_auc": _auc(held, scored[split.unlabelled_holdout]),
        "holdout_recall_top_decile": float(np.mean(held >= decile_cut)),
        "holdout_recall_at_cut": float(np.mean(held >= ranked["score"].min())) if cut and len(ranked) else None,
        "returned": len(ranked),
    }
    return ranked, metrics


def _auc(positives: np.ndarray, unlabelled: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    labels = np.concatenate([np.ones(len(positives)), np.zeros(len(unlabelled))])
    return float(roc_auc_score(labels, np.concatenate([positives, unlabelled])))


def _drivers(
    models: list[Any],
    columns: list[str],
    values: np.ndarray,
    in_seed: np.ndarray,
    candidates: np.ndarray,
    tag_names: dict[str, tuple[str, str]],
) -> pd.DataFrame:
    """Features by their share of the trees' total gain, with readable names and the
    seed's vs the other candidates' mean (a share for yes/no features)."""
    gain = np.sum([model.booster_.feature_importance(importance_type="gain") for model in models], axis=0)
    order = [i for i in np.argsort(-gain, kind="stable") if gain[i] > 0][:DRIVER_ROWS]
    names = [columns[i] for i in order]
    seed_mean = _column_means(values[np.ix_(np.flatnonzero(in_seed), order)])
    rest_mean = _column_means(values[np.ix_(candidates, order)])
    labels = [feature_label(name, tag_names) for name in names]
    return pd.DataFrame({
        "feature": names,
        "name_zh": [zh for zh, _ in labels],
        "name_en": [en for _, en in labels],
        "gain_share": gain[order] / gain.sum() if gain.sum() > 0 else gain[order],
        "kind": ["share" if _is_yes_no(name) else "mean" for name in names],
        "seed_mean": seed_mean,
        "population_mean": rest_mean,
    })


def _column_means(block: np.ndarray) -> np.ndarray:
    """Means of the known values (NaN where a column has none), summed in float64."""
    block = block.astype(np.float64)
    known = ~np.isnan(block)
    counts = known.sum(axis=0)
    totals = np.where(known, block, 0.0).sum(axis=0)
    return np.divide(totals, counts, out=np.full(block.shape[1], np.nan), where=counts > 0)


def _sizes(seed_given: int, in_seed: np.ndarray, split: _Split, features: int) -> dict[str, Any]:
    return {
        "seed_persons": seed_given,
        "seed_used": int(in_seed.sum()),
        "seed_fit": len(split.seed_fit),
        "seed_holdout": len(split.seed_holdout),
        "candidates": len(split.candidates),
        "unlabelled_sampled": len(split.unlabelled_fit) + len(split.unlabelled_holdout),
        "unlabelled_holdout": len(split.unlabelled_holdout),
        "features": features,
        "folds": FOLDS,
    }


def _notes(metrics: dict[str, Any], drivers: pd.DataFrame) -> list[tuple[str, str]]:
    """What a marketer should know before using the list, as (zh, en)."""
    notes = []
    missing = metrics["seed_persons"] - metrics["seed_used"]
    if missing:
        notes.append((f"种子人群中有 {missing} 人不是有画像的活跃用户（已合并、已删除或尚无特征），未参与建模。",
                      f"{missing} of the seed's persons are not active persons with a portrait "
                      "(merged, deleted or without traits) and were not used."))
    if metrics["seed_holdout"] < ROUGH_HOLDOUT:
        held = metrics["seed_holdout"]
        notes.append((f"留出的种子只有 {held} 人，AUC 和相似度都较粗略；种子越大越准。",
                      f"Only {held} seed members were held out, so the AUC and similarity are rough; "
                      "a larger seed measures better."))
    if len(drivers) and drivers["gain_share"].iloc[0] >= DOMINANT_GAIN_SHARE:
        top = drivers.iloc[0]
        notes.append((f"一个特征贡献了 {top.gain_share:.0%} 的增益：{top.name_zh}。若种子人群正是按它圈选的，"
                      f"请用 exclude=[\"{top.feature}\"] 排除，才能找到在其他方面相似的人。",
                      f"One feature carries {top.gain_share:.0%} of the gain: {top.name_en}. If the seed was "
                      f"selected by it, exclude it (exclude=[\"{top.feature}\"]) to find people alike in other ways."))
    return notes


def _is_yes_no(feature: str) -> bool:
    return "=" in feature or feature.startswith("tag:") or feature in YES_NO_TRAITS
