"""Clustering (人群细分): split an audience into k sub-groups a marketer can read.

The engine reads each person's portrait (`portrait_matrix`: traits, tags, scores) and,
when asked, their category mix (the share of each product category in the products
they viewed, added to cart and bought, attributed through `record_persons`), one query
each. Python standardizes the features and fits scikit-learn's KMeans with a fixed
seed; when k is not given, the k with the best silhouette wins, measured on a
fixed-seed sample so it stays fast at a million persons. Each cluster is then described
by the features that set it apart most (standardized difference from the audience),
in Chinese and English: "女性占 93%（整体 60%），平均年龄 28 岁（整体 33 岁）".

Preparing the matrix:
- money and count traits (spend, order value, orders, events) are taken as
  log(1 + x) first: a few big spenders would otherwise be a cluster of their own;
- a categorical trait a person has no value for is missing, not a category of its
  own ("gender unknown" is not a kind of customer), and missing values sit at the
  mean, so they pull a person toward no cluster in particular;
- a categorical trait's m one-hot columns are each weighted 1/sqrt(m), so the trait
  weighs as much as one numeric feature: unweighted, gender's two columns split the
  demo into women and men (k = 2 by silhouette, ARI 0.02 against the personas).

On the 1,500-person demo the clusters of well-observed persons recover the planted
personas with an adjusted Rand index of 0.33 (docs/clustering.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
from sqlglot import exp
from threadpoolctl import threadpool_limits

from jingzhun.core.errors import JingzhunError
from jingzhun.engine import Engine, parse_sql
from jingzhun.profiles.scores_features import CATALOGUE_CTES, product_categories
from jingzhun.segments.portrait_matrix import CATEGORICAL_TRAITS, NUMERIC_TRAITS, portrait_matrix

if TYPE_CHECKING:  # scikit-learn takes ~1 s to import: only a clustering run pays for it
    from sklearn.cluster import KMeans

CATEGORY_MIX = "category_mix"  # every catalogue category's share, one feature each
SHARE_PREFIX = "category_share:"
# Who the customers are, what they buy, how (in store, with coupons) and for how much.
# On the demo's well-observed persons these recover the personas with ARI 0.33; every
# trait and the category mix at once reaches 0.02 (features that do not differ between
# personas bury those that do), these without the category mix 0.06 (docs/clustering.md).
DEFAULT_TRAITS: tuple[str, ...] = (
    CATEGORY_MIX, "age", "gender", "aov", "offline_order_share", "coupon_order_share",
)
# Heavy-tailed, non-negative: clustered as log(1 + x).
LOG_FEATURES = frozenset({
    "sessions_90d", "page_views_90d", "product_views_90d", "cart_adds_90d", "events_total",
    "orders_total", "orders_365d", "gmv_total", "gmv_365d", "aov", "livestream_views_90d",
    "social_interactions_90d", "product_touches", "score:clv_365d",
    "score:clv_expected_purchases_365d",
})
RANDOM_STATE = 20240601
N_INIT = 10  # KMeans restarts from k-means++ seeds; the best inertia is kept
SELECTION_ROWS = 20_000  # k is chosen on a fixed-seed sample of this many rows
SILHOUETTE_ROWS = 5_000  # silhouette is O(rows²): measured on a sample of the sample
K_TOLERANCE = 0.01  # silhouettes this close count as a tie, and the smaller k wins
TOP_FEATURES = 4  # distinguishing features per cluster
MIN_DIFFERENCE = 0.2  # a feature closer than this (in standard deviations) describes nothing
MAX_CATEGORIES = 12
# OpenMP threads for the final fit on every row. Choosing k fits small samples on one
# thread: on a shared 2-core machine (load 5) OpenMP's per-iteration barriers made the
# demo's 70 Lloyd runs on 693 rows take 2.1-13 s on two threads and 0.2 s on one.
FIT_THREADS = max(1, min(4, os.cpu_count() or 1))


class ClusteringError(JingzhunError):
    """A clustering request cannot be run as asked."""


@dataclass(frozen=True)
class Clustering:
    """An audience split into k clusters, each described in Chinese and English.

    `assignments`: person_id, cluster (0 = the largest). `clusters`: cluster, size,
    share, description_zh, description_en. `profile`: for every cluster and feature the
    cluster's value, the audience's value (means; for categories and yes/no traits the
    share among persons with a known value) and the standardized difference (cluster
    mean of the standardized feature, in audience standard deviations).
    `distinguishing`: the top features per cluster by absolute difference.
    `silhouettes`: k and silhouette for every k tried. `sql`: the queries that read
    the data, by name, to rerun.
    """

    k: int
    silhouette: float
    assignments: pd.DataFrame
    clusters: pd.DataFrame
    profile: pd.DataFrame
    distinguishing: pd.DataFrame
    silhouettes: pd.DataFrame
    features: list[str]
    sql: dict[str, str]

    def describe(self, cluster: int, language: str = "zh") -> str:
        """One cluster's description in the requested language."""
        row = self.clusters.set_index("cluster").loc[cluster]
        return str(row["description_zh" if language.startswith("zh") else "description_en"])


class _Spec(NamedTuple):
    """What to read: portrait columns and the categories of the category mix."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    tags: tuple[str, ...]
    scores: tuple[str, ...]
    categories: tuple[str, ...]
    tag_names: dict[str, tuple[str, str]]


class ClusterFit(NamedTuple):
    """Cluster per row (0 = the largest), the k used and the silhouette of every k tried."""

    labels: np.ndarray
    k: int
    silhouettes: pd.DataFrame


def cluster_audience(
    engine: Engine,
    traits: Sequence[str] | None = None,
    k: int | None = None,
    population: exp.Expression | str | None = None,
    k_range: tuple[int, int] = (2, 8),
    *,
    random_state: int = RANDOM_STATE,
    top_features: int = TOP_FEATURES,
    k_tolerance: float = K_TOLERANCE,
) -> Clustering:
    """Split the audience into k clusters and say what sets each apart.

    Args:
        engine: the workspace's engine, after the portray stage (person_traits).
        traits: what to cluster on: person_traits columns (`age`, `gender`, `aov`, ...),
            `tag:<tag_id>`, `score:<model>`, `category_mix` (every category's share of a
            person's product views, cart adds and purchases) or `category_share:<category>`.
            Default `DEFAULT_TRAITS`.
        k: the number of clusters; None chooses it in `k_range` by silhouette.
        population: a query returning `person_id` (an audience); default every active person.
        k_range: the smallest and largest k tried when k is None.
        random_state: the seed of KMeans and of the samples.
        top_features: distinguishing features kept (and described) per cluster.
        k_tolerance: silhouettes within this of the best are a tie; the smaller k wins.

    Returns:
        A `Clustering`.
    """
    _check_k(k, k_range)
    spec = _spec(engine, DEFAULT_TRAITS if traits is None else traits)
    frame, sql = _read(engine, spec, _as_population(population))
    return cluster_frame(frame, spec.categorical, k, k_range, random_state=random_state,
                         top_features=top_features, k_tolerance=k_tolerance,
                         tag_names=spec.tag_names, sql=sql)


def cluster_frame(
    frame: pd.DataFrame,
    categorical: Sequence[str] = (),
    k: int | None = None,
    k_range: tuple[int, int] = (2, 8),
    *,
    random_state: int = RANDOM_STATE,
    top_features: int = TOP_FEATURES,
    k_tolerance: float = K_TOLERANCE,
    tag_names: dict[str, tuple[str, str]] | None = None,
    sql: dict[str, str] | None = None,
) -> Clustering:
    """`cluster_audience` on features already read: persons (index person_id) x numeric
    features, `<trait>=<value>` one-hot columns for the traits in `categorical` (as
    `portrait_matrix` returns them), missing values as NaN."""
    _check_k(k, k_range)
    _check_size(len(frame), k, k_range)
    shown = _unknown_as_missing(frame.astype(np.float64), categorical)
    matrix = standardize(_log_features(shown))
    weighted = matrix * trait_weights(list(frame.columns), categorical)
    fit = fit_clusters(weighted, k, k_range, random_state, k_tolerance)
    profile = _profile(shown, matrix, fit.labels, tag_names or {})
    distinguishing = _distinguishing(profile, categorical, top_features)
    clusters = _clusters(fit.labels, distinguishing, profile, tag_names or {})
    assignments = pd.DataFrame({"person_id": frame.index.to_numpy(), "cluster": fit.labels})
    chosen = fit.silhouettes.set_index("k")["silhouette"].get(fit.k, np.nan)
    return Clustering(fit.k, float(chosen), assignments, clusters, profile, distinguishing,
                      fit.silhouettes, list(frame.columns), sql or {})


# ---- checks ---------------------------------------------------------------------------


def _error(field: str, en: str, zh: str, fix: str, fix_zh: str) -> ClusteringError:
    return ClusteringError(en, field=field, fix=fix, message_zh=zh, fix_zh=fix_zh)


def _check_k(k: int | None, k_range: tuple[int, int]) -> None:
    if k is not None and k < 2:
        raise _error("k", f"k must be at least 2 (got {k}).", f"k 至少为 2（当前为 {k}）。",
                     "ask for 2 or more clusters, or leave k empty to choose it by silhouette",
                     "请指定 2 个或更多分群，或不填 k，由轮廓系数自动选择")
    low, high = k_range
    if k is None and not 2 <= low <= high:
        raise _error("k_range", f"k_range must be (low, high) with 2 <= low <= high (got {k_range}).",
                     f"k_range 须为 (下限, 上限)，且 2 <= 下限 <= 上限（当前为 {k_range}）。",
                     "e.g. k_range=(2, 8)", "例如 k_range=(2, 8)")


def _check_size(size: int, k: int | None, k_range: tuple[int, int]) -> None:
    """Enough persons for the clusters asked (choosing k needs 3: silhouette needs k < n)."""
    if size == 0:
        raise _error("population", "The audience is empty: no active person to cluster.",
                     "人群为空：没有可细分的活跃客户。",
                     "check the audience's rule, or run `jingzhun pipeline` so traits exist",
                     "请检查人群规则，或运行 `jingzhun pipeline` 生成客户属性")
    if k is not None and k > size:
        raise _error("k", f"k = {k} is more than the audience's {size} persons.",
                     f"k = {k} 超过了人群的 {size} 位客户。",
                     f"ask for at most {size} clusters", f"分群数不能超过 {size}")
    if k is None and size < max(3, k_range[0] + 1):
        raise _error("population", f"The audience has {size} persons: too few to choose k.",
                     f"人群只有 {size} 位客户，无法自动选择分群数。",
                     "give k, or cluster a larger audience", "请指定 k，或选择更大的人群")


def _as_population(population: exp.Expression | str | None) -> exp.Expression | None:
    if isinstance(population, str):
        return parse_sql(population)
    return population


def _spec(engine: Engine, traits: Sequence[str]) -> _Spec:
    """Sort the requested names into portrait columns and categories; refuse unknown ones."""
    names = list(dict.fromkeys(traits))
    if not names:
        raise _error("traits", "No traits chosen to cluster on.", "没有选择用于细分的特征。",
                     f"name traits, e.g. {', '.join(DEFAULT_TRAITS)}",
                     f"请指定特征，例如 {'、'.join(DEFAULT_TRAITS)}")
    tag_names = _tag_names(engine)
    known_scores = set(_distinct(engine, "scores", "model"))
    catalogue = tuple(product_categories(engine, MAX_CATEGORIES)) if engine.table_exists("products") else ()
    tags = tuple(n[4:] for n in names if n.startswith("tag:") and n[4:] in tag_names)
    scores = tuple(n[6:] for n in names if n.startswith("score:") and n[6:] in known_scores)
    categories = catalogue if CATEGORY_MIX in names else tuple(
        c for c in catalogue if SHARE_PREFIX + c in names)
    spec = _Spec(tuple(n for n in names if n in NUMERIC_TRAITS),
                 tuple(n for n in names if n in CATEGORICAL_TRAITS), tags, scores, categories,
                 tag_names)
    known = {*spec.numeric, *spec.categorical, *(f"tag:{t}" for t in tags),
             *(f"score:{s}" for s in scores), *(SHARE_PREFIX + c for c in catalogue),
             *([CATEGORY_MIX] if catalogue else [])}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise _unknown_traits(unknown, catalogue)
    return spec


def _unknown_traits(unknown: list[str], catalogue: Sequence[str]) -> ClusteringError:
    listed = ", ".join(unknown)
    allowed = (f"person_traits columns ({', '.join(NUMERIC_TRAITS[:3])}, ..., "
               f"{', '.join(CATEGORICAL_TRAITS[:3])}, ...), tag:<tag_id>, score:<model>, "
               f"{CATEGORY_MIX} or {SHARE_PREFIX}<category> ({', '.join(catalogue) or 'no products'})")
    return ClusteringError(
        f"Unknown trait(s) for clustering: {listed}.", field="traits",
        fix=f"use {allowed}", message_zh=f"未知的细分特征：{'、'.join(unknown)}。",
        fix_zh=f"请使用客户属性列名、tag:<标签ID>、score:<模型名>、{CATEGORY_MIX} 或 "
               f"{SHARE_PREFIX}<品类>；可用的有 {allowed}")


def _distinct(engine: Engine, table: str, column: str) -> list[str]:
    """The distinct values of a column (none if the stage that writes it has not run)."""
    if not engine.table_exists(table):
        return []
    rows = engine.query(exp.select(column).distinct().from_(table).order_by(column))
    return [value for value in rows.column(column).to_pylist() if value is not None]


def _tag_names(engine: Engine) -> dict[str, tuple[str, str]]:
    """Each tag's (zh, en) name from its latest definition."""
    if not engine.table_exists("tag_definitions"):
        return {}
    query = exp.select("tag_id", "version", "name_zh", "name_en").from_("tag_definitions")
    rows = engine.query(query).to_pandas().sort_values(["tag_id", "version"])
    latest = rows.drop_duplicates("tag_id", keep="last")
    return {row.tag_id: (row.name_zh or row.tag_id, row.name_en or row.tag_id)
            for row in latest.itertuples()}


# ---- reading ----------------------------------------------------------------------------

# Every product a person touched, with its catalogue category: purchased lines (a line
# of an order that was not cancelled; category by product_id, else barcode, else sku)
# and product views and cart adds (the event's own category, as favourite_category uses).
TOUCHES_SQL = f"""WITH {CATALOGUE_CTES.strip()},
touches AS (
  SELECT rp.person_id, COALESCE(cp.category, cb.category, cs.category) AS category
  FROM orders AS o
  JOIN record_persons AS rp ON rp.record_kind = 'order' AND rp.record_id = o.order_id
  JOIN order_items AS oi ON oi.order_id = o.order_id
  LEFT JOIN category_by_product AS cp ON cp.product_id = oi.product_id
  LEFT JOIN category_by_barcode AS cb ON cb.barcode = oi.barcode
  LEFT JOIN category_by_sku AS cs ON cs.sku = oi.sku
  WHERE COALESCE(LOWER(o.status), '') <> 'cancelled'
  UNION ALL
  SELECT rp.person_id, e.properties->>'$.category' AS category
  FROM events AS e
  JOIN record_persons AS rp ON rp.record_kind = 'event' AND rp.record_id = e.message_id
  WHERE e.event IN ('Product Viewed', 'Product Added')
)"""


def category_mix_sql(categories: Sequence[str], population: exp.Expression | None = None) -> exp.Expression:
    """Per active person with a product touch: `product_touches` and, for each category,
    `category_share_<i>`: the share of their touched products in `categories[i]`.

    Example:
        >>> "category_share_0" in category_mix_sql(["home"]).sql(dialect="duckdb")
        True
    """
    shares = "".join(f",\n  AVG(CASE WHEN t.category = :category_{i} THEN 1.0 ELSE 0.0 END) AS category_share_{i}"
                     for i in range(len(categories)))
    sql = f"""{TOUCHES_SQL}
SELECT t.person_id, CAST(COUNT(*) AS DOUBLE) AS product_touches{shares}
FROM touches AS t
JOIN persons AS p ON p.person_id = t.person_id AND p.status = 'active'
{"JOIN population_members AS pm ON pm.person_id = t.person_id" if population is not None else ""}
WHERE t.category IS NOT NULL
GROUP BY t.person_id
ORDER BY t.person_id"""
    query = exp.replace_placeholders(
        parse_sql(sql), **{f"category_{i}": exp.convert(c) for i, c in enumerate(categories)})
    if population is not None:
        table = next(t for t in query.find_all(exp.Table) if t.name == "population_members")
        table.replace(population.copy().subquery("pm"))
    return query


def engaged_population_sql(min_product_touches: int = 5) -> exp.Expression:
    """The active persons who viewed, added to cart or bought at least this many products
    (of a known category): those whose category mix is measured rather than guessed.

    Example:
        >>> "HAVING" in engaged_population_sql(3).sql(dialect="duckdb")
        True
    """
    sql = f"""{TOUCHES_SQL}
SELECT t.person_id
FROM touches AS t
JOIN persons AS p ON p.person_id = t.person_id AND p.status = 'active'
WHERE t.category IS NOT NULL
GROUP BY t.person_id
HAVING COUNT(*) >= :min_touches"""
    return exp.replace_placeholders(parse_sql(sql), min_touches=exp.convert(int(min_product_touches)))


def _read(engine: Engine, spec: _Spec, population: exp.Expression | None) -> tuple[pd.DataFrame, dict[str, str]]:
    """The features per person of the population, and the SQL that read them."""
    matrix = portrait_matrix(engine, spec.numeric, spec.categorical, spec.tags, spec.scores, population)
    frame = matrix.frame.drop(columns=["one"], errors="ignore")
    sql = {"portrait": matrix.sql}
    if spec.categories:
        query = category_mix_sql(spec.categories, population)
        mix = engine.query(query).to_pandas().set_index("person_id")
        mix = mix.rename(columns={f"category_share_{i}": SHARE_PREFIX + c
                                  for i, c in enumerate(spec.categories)})
        frame = frame.join(mix[[SHARE_PREFIX + c for c in spec.categories]], how="left")
        sql["category_mix"] = engine.render(query)
    return frame.astype(np.float64), sql


# ---- the model matrix and the fit --------------------------------------------------------


def _groups(columns: Sequence[str], categorical: Sequence[str]) -> dict[str, list[str]]:
    """The one-hot columns of each categorical trait."""
    return {trait: [c for c in columns if c.startswith(f"{trait}=")] for trait in categorical}


def _unknown_as_missing(frame: pd.DataFrame, categorical: Sequence[str]) -> pd.DataFrame:
    """A person without a value of a categorical trait (all its one-hots 0) gets NaN in
    each: unknown, not a category of its own."""
    out = frame.copy()
    for columns in _groups(frame.columns, categorical).values():
        if columns:
            out.loc[out[columns].sum(axis=1) == 0, columns] = np.nan
    return out


def _log_features(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in out.columns.intersection(sorted(LOG_FEATURES)):
        out[column] = np.log1p(out[column].clip(lower=0))
    return out


def standardize(frame: pd.DataFrame) -> np.ndarray:
    """Columns centred and scaled to unit variance, missing values at the mean (0);
    constant columns stay 0."""
    values = frame.to_numpy(dtype=np.float64)
    counted = ~np.isnan(values)
    mean = np.divide(np.nansum(values, axis=0), counted.sum(axis=0),
                     out=np.zeros(values.shape[1]), where=counted.any(axis=0))
    filled = np.where(counted, values, mean)
    scale = filled.std(axis=0)
    return (filled - mean) / np.where(scale > 0, scale, 1.0)


def trait_weights(columns: Sequence[str], categorical: Sequence[str]) -> np.ndarray:
    """1 per feature, 1/sqrt(m) for each of a categorical trait's m one-hot columns:
    the trait's columns then add up to the variance of one feature."""
    weights = np.ones(len(columns))
    for members in _groups(columns, categorical).values():
        positions = [list(columns).index(c) for c in members]
        weights[positions] = 1 / np.sqrt(max(len(positions), 1))
    return weights


def fit_clusters(
    matrix: np.ndarray,
    k: int | None = None,
    k_range: tuple[int, int] = (2, 8),
    random_state: int = RANDOM_STATE,
    k_tolerance: float = K_TOLERANCE,
) -> ClusterFit:
    """KMeans on a standardized matrix; k (when None) by silhouette, clusters by size.

    k is chosen on a fixed-seed sample of `SELECTION_ROWS` rows and silhouettes are
    measured on `SILHOUETTE_ROWS` of those; the final model starts from the chosen
    sample model's centres and runs on every row, so a million rows cost one Lloyd run.
    """
    rng = np.random.default_rng(random_state)
    selection = _sample(rng, len(matrix), SELECTION_ROWS)
    sample = matrix if selection is None else matrix[selection]
    scored = _sample(rng, len(sample), SILHOUETTE_ROWS)
    distinct = len(np.unique(sample, axis=0))
    largest = min(k_range[1], distinct, len(sample) - 1)
    candidates = [k] if k is not None else list(range(k_range[0], largest + 1))
    if not candidates or candidates[0] > distinct:
        raise _too_few_profiles(distinct, candidates[0] if candidates else k_range[0])
    with threadpool_limits(1):  # see FIT_THREADS
        models = {n: _kmeans(n, random_state).fit(sample) for n in candidates}
        silhouettes = pd.DataFrame({"k": candidates, "silhouette": [
            _silhouette(sample if scored is None else sample[scored],
                        models[n].labels_ if scored is None else models[n].labels_[scored],
                        random_state) for n in candidates]})
    chosen = _choose(silhouettes, k_tolerance)
    model = models[chosen]
    if selection is not None:
        with threadpool_limits(FIT_THREADS):
            model = _kmeans(chosen, random_state, init=model.cluster_centers_, n_init=1).fit(matrix)
    return ClusterFit(_by_size(model.labels_), chosen, silhouettes)


def _sample(rng: np.random.Generator, rows: int, size: int) -> np.ndarray | None:
    """Sorted positions of a uniform sample of `size` rows; None when all rows fit."""
    return np.sort(rng.choice(rows, size, replace=False)) if rows > size else None


def _too_few_profiles(distinct: int, wanted: int) -> ClusteringError:
    return _error("k", f"Only {distinct} distinct profiles: too few for {wanted} clusters.",
                  f"只有 {distinct} 种不同的客户画像，不足以分成 {wanted} 群。",
                  "ask for fewer clusters or add traits that tell persons apart",
                  "请减少分群数，或加入能区分客户的特征")


def _kmeans(k: int, random_state: int, init: str | np.ndarray = "k-means++", n_init: int = N_INIT) -> KMeans:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, init=init, n_init=n_init, random_state=random_state)


def _silhouette(matrix: np.ndarray, labels: np.ndarray, random_state: int) -> float:
    if len(np.unique(labels)) < 2 or len(np.unique(labels)) >= len(labels):
        return float("nan")
    from sklearn.metrics import silhouette_score

    return float(silhouette_score(matrix, labels, random_state=random_state))


def _choose(silhouettes: pd.DataFrame, tolerance: float) -> int:
    """The smallest k whose silhouette is within `tolerance` of the best (fewer groups
    are easier to act on, and silhouettes a hundredth apart are noise)."""
    valid = silhouettes.dropna()
    if valid.empty:
        return int(silhouettes["k"].iloc[0])
    best = valid["silhouette"].max()
    return int(valid.loc[valid["silhouette"] >= best - tolerance, "k"].min())


def _by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters so 0 is the largest (ties: the lower old number first)."""
    counts = np.bincount(labels)
    order = np.lexsort((np.arange(len(counts)), -counts))
    renumber = np.empty_like(order)
    renumber[order] = np.arange(len(order))
    return renumber[labels]


# ---- profiles and descriptions -----------------------------------------------------------


def _profile(shown: pd.DataFrame, matrix: np.ndarray, labels: np.ndarray,
             tag_names: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """Per cluster and feature: cluster value, audience value and standardized difference."""
    features = list(shown.columns)
    grouped = shown.groupby(labels)
    values = grouped.mean()  # pandas skips NaN: shares among the known, means of the known
    differences = pd.DataFrame(matrix, columns=features).groupby(labels).mean()
    overall = shown.mean()
    profile = pd.DataFrame({
        "cluster": np.repeat(values.index.to_numpy(), len(features)),
        "feature": np.tile(features, len(values)),
        "cluster_value": values.to_numpy().ravel(),
        "overall_value": np.tile(overall.to_numpy(), len(values)),
        "std_diff": differences.to_numpy().ravel(),
    })
    names = {f: feature_label(f, tag_names) for f in features}
    profile.insert(2, "label_zh", profile["feature"].map(lambda f: names[f][0]))
    profile.insert(3, "label_en", profile["feature"].map(lambda f: names[f][1]))
    return profile


def _distinguishing(profile: pd.DataFrame, categorical: Sequence[str], top: int) -> pd.DataFrame:
    """The features that set each cluster apart most: largest absolute standardized
    difference, one value per categorical trait (its strongest), at least one per
    cluster, then only those at least `MIN_DIFFERENCE` apart."""
    ranked = profile.assign(  # rounded so that a tie (gender=F -1.2 vs gender=M +1.2) goes to
        group=profile["feature"].map(lambda f: _group_of(f, categorical)),  # the positive one
        strength=profile["std_diff"].abs().round(9)).sort_values(
            ["cluster", "strength", "std_diff", "feature"], ascending=[True, False, False, True])
    ranked = ranked.drop_duplicates(["cluster", "group"])
    ranked["rank"] = ranked.groupby("cluster").cumcount() + 1
    kept = ranked[(ranked["rank"] <= top) & ((ranked["rank"] == 1) | (ranked["strength"] >= MIN_DIFFERENCE))]
    return kept.drop(columns=["group", "strength"]).reset_index(drop=True)


def _group_of(feature: str, categorical: Sequence[str]) -> str:
    """Features told once per cluster: a categorical trait's values, the category shares."""
    if feature.startswith(SHARE_PREFIX):
        return CATEGORY_MIX
    trait = feature.partition("=")[0]
    return trait if trait in categorical else feature


def _clusters(labels: np.ndarray, distinguishing: pd.DataFrame, profile: pd.DataFrame,
              tag_names: dict[str, tuple[str, str]]) -> pd.DataFrame:
    sizes = np.bincount(labels)
    rows = []
    for cluster, size in enumerate(sizes):  # k clusters, not persons
        top = distinguishing[distinguishing["cluster"] == cluster]
        mix = profile[(profile["cluster"] == cluster) & profile["feature"].str.startswith(SHARE_PREFIX)]
        zh, en = describe_cluster(top, mix, tag_names)
        rows.append({"cluster": cluster, "size": int(size), "share": size / len(labels),
                     "description_zh": zh, "description_en": en})
    return pd.DataFrame(rows)


def describe_cluster(top: pd.DataFrame, mix: pd.DataFrame | None = None,
                     tag_names: dict[str, tuple[str, str]] | None = None) -> tuple[str, str]:
    """A cluster in words (zh, en) from its distinguishing rows (feature, cluster_value,
    overall_value, std_diff) and, if given, its category-share rows: when the largest
    share is not already said, "最常浏览和购买：美妆" ends the sentence."""
    phrases = [_phrase(r.feature, r.cluster_value, r.overall_value, tag_names or {})
               for r in top.itertuples()]
    if mix is not None and mix["cluster_value"].notna().any():
        first = mix.loc[mix["cluster_value"].idxmax(), "feature"]
        if not ((top["feature"] == first) & (top["std_diff"] > 0)).any():
            zh, en = _value_label("favourite_category", first[len(SHARE_PREFIX):])
            phrases.append((f"最常浏览和购买：{zh}", f"mostly views and buys {en}"))
    return "，".join(p[0] for p in phrases), ", ".join(p[1] for p in phrases)


# ---- readable names ----------------------------------------------------------------------


class Label(NamedTuple):
    """A trait's readable name; `kind` says how its values read: number (a mean, with
    `unit`), money (a mean in yuan), share (a rate, in %), yes_no (a 0/1 trait: the
    share of persons who are)."""

    zh: str
    en: str
    kind: str = "number"
    unit: str = ""  # Chinese unit after the number (English needs none)


TRAIT_LABELS: dict[str, Label] = {
    "age": Label("年龄", "age", unit=" 岁"),
    "price_sensitivity": Label("价格敏感度（1-5）", "price sensitivity (1-5)"),
    "active_days_30d": Label("近30天活跃天数", "active days in 30 days", unit=" 天"),
    "active_days_90d": Label("近90天活跃天数", "active days in 90 days", unit=" 天"),
    "sessions_90d": Label("近90天访问次数", "visits in 90 days", unit=" 次"),
    "page_views_90d": Label("近90天浏览页面数", "page views in 90 days"),
    "product_views_90d": Label("近90天浏览商品数", "product views in 90 days"),
    "cart_adds_90d": Label("近90天加购次数", "cart adds in 90 days", unit=" 次"),
    "events_total": Label("累计行为事件数", "events"),
    "orders_total": Label("累计订单数", "orders", unit=" 单"),
    "orders_365d": Label("近一年订单数", "orders in the last year", unit=" 单"),
    "gmv_total": Label("累计消费额", "spend", "money"),
    "gmv_365d": Label("近一年消费额", "spend in the last year", "money"),
    "aov": Label("客单价", "order value", "money"),
    "refund_rate": Label("退货率", "refund rate", "share"),
    "days_since_last_order": Label("距上次下单天数", "days since the last order", unit=" 天"),
    "online_order_share": Label("线上订单占比", "online share of orders", "share"),
    "offline_order_share": Label("门店订单占比", "in-store share of orders", "share"),
    "coupon_order_share": Label("用券订单占比", "share of orders with a coupon", "share"),
    "holiday_order_share": Label("节假日订单占比", "share of orders on holidays", "share"),
    "livestream_views_90d": Label("近90天直播观看次数", "livestream views in 90 days", unit=" 次"),
    "social_interactions_90d": Label("近90天社交互动次数", "social interactions in 90 days", unit=" 次"),
    "follows_official_account": Label("关注公众号", "follow the official account", "yes_no"),
    "rfm_r": Label("RFM 最近购买得分", "RFM recency score"),
    "rfm_f": Label("RFM 购买频次得分", "RFM frequency score"),
    "rfm_m": Label("RFM 消费金额得分", "RFM monetary score"),
    "has_phone": Label("留有手机号", "have a phone number", "yes_no"),
    "has_email": Label("留有邮箱", "have an e-mail address", "yes_no"),
    "has_wechat": Label("绑定微信", "use WeChat with us", "yes_no"),
    "gender": Label("性别", "gender"),
    "age_band": Label("年龄段", "age band"),
    "member_level": Label("会员等级", "member level"),
    "favourite_category": Label("最常买品类", "favourite category"),
    "preferred_channel": Label("常用渠道", "preferred channel"),
    "device_type": Label("设备类型", "device"),
    "price_band": Label("价格带", "price band"),
    "rfm_class": Label("RFM 客户分层", "RFM class"),
    "income_band": Label("收入档", "income band"),
    "job": Label("职业", "job"),
    "province": Label("省份", "province"),
}
SCORE_LABELS: dict[str, Label] = {
    "purchase_propensity_30d": Label("30天购买倾向", "30-day purchase propensity"),
    "churn_90d": Label("90天流失风险", "90-day churn risk"),
    "clv_365d": Label("预测未来一年消费额", "predicted spend next year", "money"),
    "clv_expected_purchases_365d": Label("预测未来一年购买次数", "predicted purchases next year"),
    "p_alive": Label("仍活跃概率", "probability still active"),
}
# Values of categorical traits as a marketer says them; others are shown as stored.
VALUE_LABELS: dict[str, dict[str, tuple[str, str]]] = {
    "gender": {"F": ("女性", "women"), "M": ("男性", "men")},
    "favourite_category": {"apparel": ("服饰", "apparel"), "cosmetics": ("美妆", "cosmetics"),
                           "beauty_tools": ("美妆工具", "beauty tools"), "home": ("家居", "home goods")},
    "preferred_channel": {"app": ("App", "the app"), "web": ("官网", "the website"),
                          "miniprogram": ("小程序", "the mini-program"), "pos": ("门店", "stores"),
                          "tmall": ("天猫", "Tmall"), "jd": ("京东", "JD"),
                          "douyin_shop": ("抖音小店", "the Douyin shop")},
    "device_type": {"ios": ("iOS", "iOS"), "android": ("安卓", "Android"), "pc": ("电脑", "PC"),
                    "other": ("其他设备", "other devices")},
    "price_band": {"low": ("低价", "low"), "mid": ("中价", "mid"), "high": ("高价", "high")},
    "member_level": {"普通": ("普通", "regular"), "银卡": ("银卡", "silver"),
                     "金卡": ("金卡", "gold"), "钻石": ("钻石", "diamond")},
    "rfm_class": {f"{a}_{b}": (f"{za}{zb}客户", f"{a} {b}") for a, za in (("important", "重要"), ("general", "一般"))
                  for b, zb in (("value", "价值"), ("develop", "发展"), ("keep", "保持"), ("retain", "挽留"))},
}
# How one distinguishing feature reads, by kind: the cluster's value, then the audience's.
PHRASES: dict[str, tuple[str, str]] = {
    "gender": ("{value_zh}占 {mine}（整体 {all}）", "{mine} {value_en} (overall {all})"),
    "category": ("{zh}为{value_zh}的占 {mine}（整体 {all}）", "{mine} with {en} {value_en} (overall {all})"),
    "mix": ("{value_zh}占浏览和购买的 {mine}（整体 {all}）", "{value_en} {mine} of views and purchases (overall {all})"),
    "tag": ("带标签{zh}的占 {mine}（整体 {all}）", "{mine} tagged {en} (overall {all})"),
    "yes_no": ("{zh}的占 {mine}（整体 {all}）", "{mine} {en} (overall {all})"),
    "share": ("{zh} {mine}（整体 {all}）", "{en} {mine} (overall {all})"),
    "money": ("平均{zh} {mine} 元（整体 {all} 元）", "average {en} ¥{mine} (overall ¥{all})"),
    "number": ("平均{zh} {mine}{unit}（整体 {all}{unit}）", "average {en} {mine} (overall {all})"),
}
NAMES: dict[str, tuple[str, str]] = {  # kind: how the feature is named in tables
    "gender": ("{zh}：{value_zh}", "{en}: {value_en}"), "category": ("{zh}：{value_zh}", "{en}: {value_en}"),
    "mix": ("品类占比：{value_zh}", "category share: {value_en}"), "tag": ("标签{zh}", "tag {en}"),
}


def _value_label(trait: str, value: str) -> tuple[str, str]:
    return VALUE_LABELS.get(trait, {}).get(value, (value, value))


def _parts(feature: str, tag_names: dict[str, tuple[str, str]]) -> dict[str, str]:
    """What a feature is: kind, name (zh, en), value (zh, en) of a category, unit."""
    if feature.startswith("tag:"):
        zh, en = tag_names.get(feature[4:], (feature[4:], feature[4:]))
        return {"kind": "tag", "zh": f"“{zh}”", "en": f"“{en}”"}
    if feature.startswith(SHARE_PREFIX):
        zh, en = _value_label("favourite_category", feature[len(SHARE_PREFIX):])
        return {"kind": "mix", "value_zh": zh, "value_en": en}
    score = feature.startswith("score:")
    trait, equals, value = feature[6 if score else 0:].partition("=")
    label = (SCORE_LABELS if score else TRAIT_LABELS).get(trait, Label(trait, trait))
    parts = {"kind": label.kind, "zh": label.zh, "en": label.en, "unit": label.unit}
    if equals:
        zh, en = _value_label(trait, value)
        parts |= {"kind": "gender" if trait == "gender" else "category", "value_zh": zh, "value_en": en}
    return parts


def feature_label(feature: str, tag_names: dict[str, tuple[str, str]] | None = None) -> tuple[str, str]:
    """A feature's readable (zh, en) name.

    Example:
        >>> feature_label("favourite_category=cosmetics")
        ('最常买品类：美妆', 'favourite category: cosmetics')
    """
    parts = _parts(feature, tag_names or {})
    zh, en = NAMES.get(parts["kind"], ("{zh}", "{en}"))
    return zh.format(**parts), en.format(**parts)


def _phrase(feature: str, mine: float, everyone: float,
            tag_names: dict[str, tuple[str, str]]) -> tuple[str, str]:
    """One distinguishing feature in words: "女性占 93%（整体 60%）" / "93% women (overall 60%)"."""
    parts = _parts(feature, tag_names)
    show = _number if parts["kind"] in ("number", "money") else _pct
    zh, en = PHRASES[parts["kind"]]
    values = {**parts, "mine": show(mine), "all": show(everyone)}
    return zh.format(**values), en.format(**values)


def _pct(value: float) -> str:
    return "—" if pd.isna(value) else f"{value * 100:.0f}%"


def _number(value: float) -> str:
    if pd.isna(value):
        return "—"
    if abs(value) >= 10:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 1 else f"{value:.2f}"
