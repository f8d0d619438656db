"""Reading the serving tables: one person's lists, one product's related products.

The pipeline stage writes `recommendations` and `related_products`; these functions
only read them (a lookup by key, cheap on either engine), add the product's name,
category and price, and return the rows with the SQL they ran.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import pandas as pd

from jingzhun.activation.recommend import RecommendError
from jingzhun.activation.recommend_sql import KINDS, bind
from jingzhun.core.workspace import Workspace
from jingzhun.engine import Engine
from jingzhun.profiles.portrait import find_person
from jingzhun.schema.tables import RECOMMENDATIONS, RELATED_PRODUCTS

# A product's display fields: the SKU name without its variant when SKUs differ (size, shade).
PRODUCT_INFO = """(SELECT product_id,
    CASE WHEN COUNT(DISTINCT name) > 1 THEN REGEXP_REPLACE(MIN(name), ' [^ ]*$', '') ELSE MIN(name) END AS name,
    MIN(category) AS category, MIN(subcategory) AS subcategory, CAST(MIN(price) AS DOUBLE) AS price
  FROM products GROUP BY product_id)"""

PERSON_SQL = f"""
SELECT r.kind, r.rank, r.product_id, p.name, p.category, p.price, r.score, r.reason_zh, r.reason_en,
  r.source_product_id, r.model_version, r.computed_at
FROM recommendations AS r LEFT JOIN {PRODUCT_INFO} AS p ON p.product_id = r.product_id
WHERE r.person_id = :person_id AND r.kind IN ({{kinds}}) AND r.rank <= :k
ORDER BY r.kind, r.rank
"""

RELATED_SQL = f"""
SELECT r.rank, r.related_product_id, p.name, p.category, p.price, r.score, r.support, r.co_purchases, r.lift,
  r.basis, r.reason_zh, r.reason_en, r.model_version, r.computed_at
FROM related_products AS r LEFT JOIN {PRODUCT_INFO} AS p ON p.product_id = r.related_product_id
WHERE r.product_id = :product_id AND r.rank <= :k
ORDER BY r.rank
"""


@dataclass(frozen=True)
class PersonRecommendations:
    """One person's recommendations of the asked kinds, in rank order, with the SQL."""

    person_id: str
    kinds: tuple[str, ...]
    items: pd.DataFrame
    sql: str


@dataclass(frozen=True)
class RelatedProducts:
    """The products shown beside one product, in rank order, with the SQL."""

    product_id: str
    name: str | None
    items: pd.DataFrame
    sql: str


def _check_served(engine: Engine, table: str) -> None:
    if not engine.table_exists(table) or engine.row_count(table) == 0:
        raise RecommendError(
            f"no recommendations have been computed yet ({table} is empty).", location=table,
            fix="run `jingzhun pipeline --stage recommend` (after traits and segments)",
            message_zh=f"尚未计算推荐结果（{table} 为空）。",
            fix_zh="请先运行 `jingzhun pipeline --stage recommend`（在属性和人群阶段之后）")


def _kinds(kind: str | None) -> tuple[str, ...]:
    if kind is None or kind == "all":
        return KINDS
    if kind not in KINDS:
        close = difflib.get_close_matches(kind, KINDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise RecommendError(
            f"unknown recommendation kind {kind!r}{hint}.", field="kind",
            fix=f"use one of: {', '.join(KINDS)}, or all",
            message_zh=f"未知的推荐类型 {kind!r}{hint}。",
            fix_zh=f"可选：{'、'.join(KINDS)}（猜你喜欢、热门推荐、新品上市）或 all")
    return (kind,)


def _check_k(k: int) -> int:
    if not 1 <= int(k) <= 1000:
        raise RecommendError(f"k must be between 1 and 1000, not {k}.", field="k", fix="e.g. k=10",
                             message_zh=f"k 必须在 1 到 1000 之间，而不是 {k}。", fix_zh="例如 k=10")
    return int(k)


def recommend_for(engine: Engine, person: str, k: int = 10, kind: str | None = "guess_you_like",
                  workspace: Workspace | None = None) -> PersonRecommendations:
    """A person's current recommendations, from any identifier they carry.

    Args:
        person: a person id or any identifier (`phone:138…`, `member_id:JZ…`, a bare e-mail …).
        k: at most this many per kind.
        kind: `guess_you_like` (猜你喜欢), `popular` (热门推荐), `new_arrival` (新品上市),
            or `all` / None for every kind.

    Returns:
        the rows (kind, rank, product, name, price, score, reasons, model version) and the SQL.
    """
    kinds = _kinds(kind)
    _check_served(engine, RECOMMENDATIONS.name)
    person_id = find_person(engine, person, workspace)
    listed = ", ".join(f":kind_{index}" for index in range(len(kinds)))
    query = bind(PERSON_SQL.format(kinds=listed), {"person_id": person_id, "k": _check_k(k),
                                                   **{f"kind_{i}": value for i, value in enumerate(kinds)}})
    return PersonRecommendations(person_id, kinds, engine.query(query).to_pandas(), engine.render(query))


def related_products(engine: Engine, product_id: str, k: int = 10) -> RelatedProducts:
    """The products to show beside `product_id` (product pages, carts), with why.

    Returns:
        rank, related product, name, price, score, support, co-purchases, lift, basis,
        reasons, and the SQL.
    """
    _check_served(engine, RELATED_PRODUCTS.name)
    named = engine.query(bind(f"SELECT name FROM {PRODUCT_INFO} AS p WHERE product_id = :product_id",
                              {"product_id": product_id})).column("name").to_pylist()
    if not named:
        raise RecommendError(
            f"no product has the id {product_id!r}.", field="PRODUCT",
            fix="use a product_id from the catalogue, e.g. `jingzhun sql \"SELECT product_id, name FROM products\"`",
            message_zh=f"没有商品的编号是 {product_id!r}。",
            fix_zh="请使用商品目录中的 product_id，例如 `jingzhun sql \"SELECT product_id, name FROM products\"`")
    query = bind(RELATED_SQL, {"product_id": product_id, "k": _check_k(k)})
    return RelatedProducts(product_id, named[0], engine.query(query).to_pandas(), engine.render(query))

