"""The portrait as a numeric matrix: one row per person, for clustering, lookalike and insight.

The machine-learning tools of the segment stage all start from the same place: each
person's traits (person_traits), the tags they hold now and their current scores,
turned into numbers a model can use. The engine does all of it: one small query finds
each categorical trait's values (`category_values_sql`), then one query reads every
person's numbers — traits cast to DOUBLE, a 1/0 column per category value, per tag
held and a column per score (`portrait_matrix_sql`). The frame comes back with the
SQL beside it, so every number a marketer sees can be traced to a query they can rerun.

Missing values stay missing (NaN): gradient-boosted trees handle them natively, and
`standardized` fills them with the column mean for distance-based methods.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlglot import exp

from jingzhun.engine import Engine, parse_sql
from jingzhun.segments.feature_labels import feature_label

# Numeric traits a model may use (person_traits columns; booleans become 0/1).
NUMERIC_TRAITS: tuple[str, ...] = (
    "age", "price_sensitivity", "active_days_30d", "active_days_90d", "sessions_90d",
    "page_views_90d", "product_views_90d", "cart_adds_90d", "events_total", "orders_total",
    "orders_365d", "gmv_total", "gmv_365d", "aov", "refund_rate", "days_since_last_order",
    "online_order_share", "offline_order_share", "coupon_order_share", "holiday_order_share",
    "livestream_views_90d", "social_interactions_90d", "follows_official_account",
    "rfm_r", "rfm_f", "rfm_m", "has_phone", "has_email", "has_wechat",
)
# Categorical traits, one-hot encoded as `<trait>=<value>`.
CATEGORICAL_TRAITS: tuple[str, ...] = (
    "gender", "age_band", "member_level", "favourite_category", "preferred_channel",
    "device_type", "price_band", "rfm_class", "income_band", "job", "province",
)
MAX_CATEGORY_VALUES = 40  # a categorical with more values keeps its most common ones


@dataclass(frozen=True)
class PortraitMatrix:
    """Persons × features, with the SQL that read them.

    `frame` is indexed by person_id; `features` names its columns in order;
    `labels` holds each feature's readable name (zh, en) for descriptions.
    """

    frame: pd.DataFrame
    features: list[str]
    sql: str
    labels: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def values(self) -> np.ndarray:
        return self.frame[self.features].to_numpy(dtype=np.float64)

    def standardized(self) -> np.ndarray:
        """Each column centred and scaled to unit variance, missing values at the mean
        (0); constant columns stay 0."""
        values = self.values
        mean = np.nanmean(values, axis=0) if len(values) else np.zeros(values.shape[1])
        mean = np.where(np.isnan(mean), 0.0, mean)
        filled = np.where(np.isnan(values), mean, values)
        scale = filled.std(axis=0)
        return (filled - mean) / np.where(scale > 0, scale, 1.0)


def category_values_sql(categorical: Sequence[str]) -> exp.Expression:
    """Each categorical trait's values among active persons, most common first."""
    _check_traits((), categorical)
    parts = [f"SELECT '{name}' AS trait, CAST(pt.{name} AS VARCHAR) AS value, COUNT(*) AS persons "
             f"FROM person_traits AS pt JOIN persons AS p ON p.person_id = pt.person_id AND p.status = 'active' "
             f"WHERE pt.{name} IS NOT NULL GROUP BY CAST(pt.{name} AS VARCHAR)" for name in categorical]
    return parse_sql(" UNION ALL ".join(parts) + " ORDER BY trait, persons DESC, value")


def _check_traits(numeric: Sequence[str], categorical: Sequence[str]) -> None:
    for name in numeric:
        if name not in NUMERIC_TRAITS:
            raise ValueError(f"unknown trait {name!r}")
    for name in categorical:
        if name not in CATEGORICAL_TRAITS:
            raise ValueError(f"unknown trait {name!r}")


def portrait_matrix_sql(
    numeric: Sequence[str] = NUMERIC_TRAITS,
    categories: Mapping[str, Sequence[str]] | None = None,
    tags: Sequence[str] = (),
    scores: Sequence[str] = (),
    population: exp.Expression | None = None,
) -> exp.Expression:
    """One row per active person (or per person of `population`, a query returning
    `person_id`): numeric traits as DOUBLE, `one_<i>` 1/0 for each (trait, value) of
    `categories` in order, `tag_<i>` 1/0 for each tag held now and `score_<i>` for
    each current score."""
    categories = categories or {}
    _check_traits(numeric, list(categories))
    pairs = [(name, value) for name, values in categories.items() for value in values]
    columns = [f"CAST(pt.{name} AS DOUBLE) AS {name}" for name in numeric]
    # 1/0 as DOUBLE, not the DECIMAL literals 1.0/0.0 (which reach pandas as Python objects).
    columns += [f"CAST(CASE WHEN CAST(pt.{name} AS VARCHAR) = :one_{i} THEN 1 ELSE 0 END AS DOUBLE) "
                f"AS {_slot('one', i)}" for i, (name, _) in enumerate(pairs)]
    columns += [f"CAST(CASE WHEN tg.{_slot('tag', i)} > 0 THEN 1 ELSE 0 END AS DOUBLE) AS {_slot('tag', i)}"
                for i in range(len(tags))]
    columns += [f"CAST(sc.{_slot('score', i)} AS DOUBLE) AS {_slot('score', i)}" for i in range(len(scores))]
    joins = ""
    if tags:
        pivots = ", ".join(f"SUM(CASE WHEN tag_id = :tag_{i} THEN 1 ELSE 0 END) AS {_slot('tag', i)}"
                           for i in range(len(tags)))
        joins += (f"\nLEFT JOIN (SELECT person_id, {pivots} FROM tags WHERE valid_to IS NULL "
                  "GROUP BY person_id) AS tg ON tg.person_id = pt.person_id")
    if scores:
        pivots = ", ".join(f"MAX(CASE WHEN model = :score_{i} THEN score END) AS {_slot('score', i)}"
                           for i in range(len(scores)))
        joins += (f"\nLEFT JOIN (SELECT person_id, {pivots} FROM scores GROUP BY person_id) AS sc "
                  "ON sc.person_id = pt.person_id")
    sql = f"""SELECT pt.person_id, {", ".join(columns) if columns else "1 AS one"}
FROM person_traits AS pt
JOIN persons AS p ON p.person_id = pt.person_id AND p.status = 'active'{joins}"""
    if population is not None:
        sql += "\nJOIN (SELECT DISTINCT person_id FROM population_members) AS pm ON pm.person_id = pt.person_id"
    sql += "\nORDER BY pt.person_id"
    query = exp.replace_placeholders(
        parse_sql(sql),
        **{f"one_{i}": exp.convert(value) for i, (_, value) in enumerate(pairs)},
        **{f"tag_{i}": exp.convert(tag) for i, tag in enumerate(tags)},
        **{f"score_{i}": exp.convert(model) for i, model in enumerate(scores)})
    if population is not None:
        table = next(t for t in query.find_all(exp.Table) if t.name == "population_members")
        table.replace(population.copy().subquery("population_members"))
    return query


def _slot(kind: str, index: int) -> str:
    return f"{kind}_{index}"


def portrait_matrix(
    engine: Engine,
    numeric: Sequence[str] = NUMERIC_TRAITS,
    categorical: Sequence[str] = CATEGORICAL_TRAITS,
    tags: Sequence[str] = (),
    scores: Sequence[str] = (),
    population: exp.Expression | None = None,
) -> PortraitMatrix:
    """Read the portrait of every active person (or of `population`) as numbers.

    A categorical trait keeps its MAX_CATEGORY_VALUES most common values (among all
    active persons) as `<trait>=<value>` columns."""
    categories: dict[str, list[str]] = {name: [] for name in categorical}
    if categorical:
        for row in engine.query(category_values_sql(categorical)).to_pylist():
            if len(categories[row["trait"]]) < MAX_CATEGORY_VALUES:
                categories[row["trait"]].append(row["value"])
    query = portrait_matrix_sql(numeric, categories, tags, scores, population)
    frame = engine.query(query).to_pandas().set_index("person_id")
    pairs = [(name, value) for name, values in categories.items() for value in sorted(values)]
    ordered = [(name, value) for name, values in categories.items() for value in values]
    names = ({_slot("one", i): f"{name}={value}" for i, (name, value) in enumerate(ordered)}
             | {_slot("tag", i): f"tag:{t}" for i, t in enumerate(tags)}
             | {_slot("score", i): f"score:{m}" for i, m in enumerate(scores)})
    frame = frame.rename(columns=names)
    features = [*numeric, *(f"{name}={value}" for name, value in pairs),
                *(f"tag:{t}" for t in tags), *(f"score:{m}" for m in scores)]
    frame = frame[features].astype(np.float64)
    labels = {name: feature_label(name) for name in features}
    return PortraitMatrix(frame, features, engine.render(query), labels)
