"""The portrait as a numeric matrix: one row per person, for clustering, lookalike and insight.

The machine-learning tools of the segment stage all start from the same place: each
person's traits (person_traits), the tags they hold now and their current scores,
turned into numbers a model can use. The engine does the reading and the pivoting in
one query (`portrait_matrix_sql`); Python one-hot encodes the categorical traits
(a handful of values each) and returns the frame with the SQL beside it, so every
number a marketer sees can be traced to a query they can rerun.

Missing values stay missing (NaN): gradient-boosted trees handle them natively, and
`standardized` fills them with the column mean for distance-based methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlglot import exp

from jingzhun.engine import Engine, parse_sql

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


def portrait_matrix_sql(
    numeric: Sequence[str] = NUMERIC_TRAITS,
    categorical: Sequence[str] = CATEGORICAL_TRAITS,
    tags: Sequence[str] = (),
    scores: Sequence[str] = (),
    population: exp.Expression | None = None,
) -> exp.Expression:
    """One row per active person (or per person of `population`, a query returning
    `person_id`): numeric traits as DOUBLE, categorical traits as text, `tag:<id>` 1/0
    for each tag held now and `score:<model>` for each current score."""
    for name in (*numeric, *categorical):
        if name not in NUMERIC_TRAITS and name not in CATEGORICAL_TRAITS:
            raise ValueError(f"unknown trait {name!r}")
    columns = [f"CAST(pt.{name} AS DOUBLE) AS {name}" for name in numeric]
    columns += [f"CAST(pt.{name} AS VARCHAR) AS {name}" for name in categorical]
    columns += [f"CASE WHEN tg.{_slot('tag', i)} > 0 THEN 1.0 ELSE 0.0 END AS {_slot('tag', i)}"
                for i in range(len(tags))]
    columns += [f"sc.{_slot('score', i)} AS {_slot('score', i)}" for i in range(len(scores))]
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
        sql += "\nJOIN population_members AS pm ON pm.person_id = pt.person_id"
    sql += "\nORDER BY pt.person_id"
    query = exp.replace_placeholders(
        parse_sql(sql),
        **{f"tag_{i}": exp.convert(tag) for i, tag in enumerate(tags)},
        **{f"score_{i}": exp.convert(model) for i, model in enumerate(scores)})
    if population is not None:
        table = next(t for t in query.find_all(exp.Table) if t.name == "population_members")
        table.replace(population.copy().subquery("pm"))
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
    """Read the portrait of every active person (or of `population`) as numbers."""
    query = portrait_matrix_sql(numeric, categorical, tags, scores, population)
    frame = engine.query(query).to_pandas().set_index("person_id")
    frame = frame.rename(columns={_slot("tag", i): f"tag:{t}" for i, t in enumerate(tags)}
                         | {_slot("score", i): f"score:{m}" for i, m in enumerate(scores)})
    labels = {name: (name, name) for name in (*numeric, *(f"tag:{t}" for t in tags),
                                             *(f"score:{m}" for m in scores))}
    dummies = []
    for name in categorical:
        column = frame.pop(name)
        kept = column.value_counts().index[:MAX_CATEGORY_VALUES]
        for value in sorted(kept):
            dummies.append(pd.Series((column == value).astype(np.float64), name=f"{name}={value}"))
            labels[f"{name}={value}"] = (f"{name}={value}", f"{name}={value}")
    if dummies:
        frame = pd.concat([frame, *dummies], axis=1)
    features = list(frame.columns)
    return PortraitMatrix(frame.astype(np.float64), features, engine.render(query), labels)
