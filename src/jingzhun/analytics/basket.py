"""Related products: association rules computed by the engine, and what to do with them.

A basket is one order: the lines of an online order, or the lines of one store receipt
(小票号 — the POS importer stores each receipt as an order, so both kinds arrive as
`order_items` grouped by `order_id`). Cancelled orders are left out; an item is a product,
a subcategory or a category, counted once per basket.

The rules are found the Apriori way, all in SQL, so the same query runs on DuckDB and on
Spark over any number of orders:

    items  ──support ≥ s──►  frequent items  ──self-join within a basket──►  pairs
    pairs ≥ s  ──pairs sharing their first item, whose other two also pair──►  candidate triples
    each basket's triples of candidate items, kept if a candidate  ──counted ≥ s──►  frequent triples
    ──►  every rule A → C of each frequent pair and triple

Only frequent items enter the pair join, and only triples whose three pairs are frequent
are counted (an itemset can be no more frequent than any of its parts), which is what
keeps the self-joins small. Every self-join is on the basket, and the candidates filter
the baskets' triples as a semi-join (EXISTS): joined on their items instead, a planner
may pair each candidate with every basket holding one of its items first — at 2M orders
that spilled 60 GB before failing. For every rule the query returns, with N baskets:

    support     = baskets(A ∪ C) / N                confidence = baskets(A ∪ C) / baskets(A)
    lift        = confidence / support(C)           leverage   = support − support(A)·support(C)
    conviction  = (1 − support(C)) / (1 − confidence)   (NULL = infinite, when confidence is 1)

the definitions of mlxtend's `association_rules`, which the tests check value for value.
On top of the rules: cross-sell lists per product, a livestream line-up that puts traffic
drivers before their add-ons, and bundle / coupon-pair suggestions with attach rates.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlglot import exp

from jingzhun.analytics.result import Analysis, AnalyticsError, Chart
from jingzhun.analytics.staging import bind_in_place, inline, query_staged
from jingzhun.engine import Engine, parse_sql
from jingzhun.profiles.rules_compiler import literal

LEVELS = ("product", "subcategory", "category")
# Default minimum support per level: a product is in far fewer baskets than its category.
DEFAULT_MIN_SUPPORT = {"product": 0.001, "subcategory": 0.005, "category": 0.01}
SEPARATOR = " + "  # joins the items of a two-item antecedent or consequent

_ITEM = {
    "product": "COALESCE(oi.product_id, pb.product_id, ps.product_id)",
    "subcategory": "p.subcategory",
    "category": "p.category",
}
LEVEL_ZH = {"product": "商品", "subcategory": "子品类", "category": "品类"}

# Lines of kept orders, each with its product found by product_id, else barcode (POS), else sku.
ORDER_LINES_SQL = """SELECT oi.order_id AS basket_id, {item} AS item, CAST(oi.unit_price AS DOUBLE) AS unit_price
FROM order_items AS oi
JOIN orders AS o ON o.order_id = oi.order_id
LEFT JOIN (SELECT barcode, MIN(product_id) AS product_id FROM products
           WHERE barcode IS NOT NULL GROUP BY barcode) AS pb ON pb.barcode = oi.barcode
LEFT JOIN (SELECT sku, MIN(product_id) AS product_id FROM products
           WHERE sku IS NOT NULL GROUP BY sku) AS ps ON ps.sku = oi.sku
LEFT JOIN (SELECT product_id, MIN(subcategory) AS subcategory, MIN(category) AS category
           FROM products GROUP BY product_id) AS p
  ON p.product_id = COALESCE(oi.product_id, pb.product_id, ps.product_id)
WHERE COALESCE(o.status, '') <> 'cancelled' AND oi.quantity > 0{period}"""

# `basket_items` (basket_id, item), one row per basket and item; baskets per item.
BASKET_CTES = """basket_items AS (SELECT DISTINCT basket_id, item FROM basket_source AS b WHERE item IS NOT NULL),
basket_count AS (SELECT CAST(COUNT(DISTINCT basket_id) AS DOUBLE) AS baskets FROM basket_items),
item_counts AS (SELECT item, COUNT(*) AS baskets FROM basket_items GROUP BY item)"""

# The Apriori passes: frequent items, then pairs of them.
FREQUENT_CTES = BASKET_CTES + """,
frequent_items AS (SELECT i.item, i.baskets FROM item_counts AS i CROSS JOIN basket_count AS n
  WHERE CAST(i.baskets AS DOUBLE) / n.baskets >= :min_support),
frequent_lines AS (SELECT b.basket_id, b.item FROM basket_items AS b JOIN frequent_items AS f ON f.item = b.item),
pair_counts AS (SELECT a.item AS item_1, b.item AS item_2, COUNT(*) AS baskets
  FROM frequent_lines AS a JOIN frequent_lines AS b ON b.basket_id = a.basket_id AND a.item < b.item
  GROUP BY a.item, b.item),
frequent_pairs AS (SELECT p.item_1, p.item_2, p.baskets FROM pair_counts AS p CROSS JOIN basket_count AS n
  WHERE CAST(p.baskets AS DOUBLE) / n.baskets >= :min_support)"""

TRIPLE_CTES = """triple_candidates AS (SELECT p.item_1, p.item_2, q.item_2 AS item_3
  FROM frequent_pairs AS p
  JOIN frequent_pairs AS q ON q.item_1 = p.item_1 AND q.item_2 > p.item_2
  JOIN frequent_pairs AS r ON r.item_1 = p.item_2 AND r.item_2 = q.item_2),
candidate_lines AS (SELECT l.basket_id, l.item FROM frequent_lines AS l
  WHERE l.item IN (SELECT item_1 FROM triple_candidates UNION SELECT item_2 FROM triple_candidates
                   UNION SELECT item_3 FROM triple_candidates)),
basket_triples AS (SELECT a.item AS item_1, b.item AS item_2, x.item AS item_3
  FROM candidate_lines AS a
  JOIN candidate_lines AS b ON b.basket_id = a.basket_id AND b.item > a.item
  JOIN candidate_lines AS x ON x.basket_id = a.basket_id AND x.item > b.item),
triple_counts AS (SELECT t.item_1, t.item_2, t.item_3, COUNT(*) AS baskets FROM basket_triples AS t
  WHERE EXISTS (SELECT 1 FROM triple_candidates AS c
                WHERE c.item_1 = t.item_1 AND c.item_2 = t.item_2 AND c.item_3 = t.item_3)
  GROUP BY t.item_1, t.item_2, t.item_3),
frequent_triples AS (SELECT t.item_1, t.item_2, t.item_3, t.baskets FROM triple_counts AS t
  CROSS JOIN basket_count AS n WHERE CAST(t.baskets AS DOUBLE) / n.baskets >= :min_support)"""

METRICS = """CAST(r.together AS DOUBLE) / n.baskets AS support,
  CAST(r.antecedent_baskets AS DOUBLE) / n.baskets AS antecedent_support,
  CAST(r.consequent_baskets AS DOUBLE) / n.baskets AS consequent_support,
  CAST(r.together AS DOUBLE) / r.antecedent_baskets AS confidence,
  CAST(r.together AS DOUBLE) * n.baskets / (CAST(r.antecedent_baskets AS DOUBLE) * r.consequent_baskets) AS lift,
  CAST(r.together AS DOUBLE) / n.baskets
    - CAST(r.antecedent_baskets AS DOUBLE) * r.consequent_baskets / (n.baskets * n.baskets) AS leverage,
  CASE WHEN r.together < r.antecedent_baskets
    THEN (1 - CAST(r.consequent_baskets AS DOUBLE) / n.baskets)
         / (1 - CAST(r.together AS DOUBLE) / r.antecedent_baskets) END AS conviction"""

RULE_COLUMNS = ["rule", "antecedent", "consequent", "antecedent_name", "consequent_name", "antecedent_items",
                "consequent_items", "baskets", "antecedent_baskets", "consequent_baskets", "support",
                "antecedent_support", "consequent_support", "confidence", "lift", "leverage", "conviction"]


@dataclass(frozen=True)
class BasketSpec:
    """Which baskets and items the rules are mined from, and how frequent an itemset must be.

    `baskets` overrides the orders: a query (or table name) returning basket_id, item —
    e.g. livestream sessions and the products clicked in them.
    """

    level: str = "subcategory"
    min_support: float | None = None  # None: DEFAULT_MIN_SUPPORT of the level
    max_size: int = 3
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    baskets: str | exp.Expression | None = None

    @property
    def support(self) -> float:
        return self.min_support if self.min_support is not None else DEFAULT_MIN_SUPPORT[self.level]


def check_spec(spec: BasketSpec) -> None:
    if spec.level not in LEVELS:
        raise AnalyticsError(f"unknown item level {spec.level!r}.", field="level", fix=f"use one of {', '.join(LEVELS)}",
                             message_zh=f"未知的商品层级 {spec.level!r}。", fix_zh=f"可选：{'、'.join(LEVELS)}")
    if not 0 < spec.support <= 1:
        raise AnalyticsError(f"min_support must be in (0, 1], got {spec.support}.", field="min_support",
                             fix="e.g. min_support=0.005 (items in at least 0.5% of baskets)",
                             message_zh=f"min_support 须在 (0, 1] 之间，当前为 {spec.support}。",
                             fix_zh="例如 min_support=0.005（至少出现在 0.5% 的订单中）")
    if spec.max_size not in (2, 3):
        raise AnalyticsError(f"max_size must be 2 (pairs) or 3 (triples), got {spec.max_size}.", field="max_size",
                             fix="use max_size=2 or 3", message_zh=f"max_size 须为 2（两件）或 3（三件），当前为 {spec.max_size}。",
                             fix_zh="请用 max_size=2 或 3")


def order_lines_sql(level: str = "subcategory", since: dt.datetime | None = None,
                    until: dt.datetime | None = None) -> exp.Expression:
    """SELECT basket_id, item, unit_price: the lines of each kept order (online order or
    store receipt), with the item at `level`.

    Example:
        >>> "subcategory" in order_lines_sql("subcategory").sql(dialect="duckdb")
        True
    """
    period = "".join(f"\n  AND o.placed_at {op} :{name}" for name, op, value in
                     (("since", ">=", since), ("until", "<", until)) if value is not None)
    query = parse_sql(ORDER_LINES_SQL.format(item=_ITEM[level], period=period))
    bound = {name: literal(value) for name, value in (("since", since), ("until", until)) if value is not None}
    return exp.replace_placeholders(query, **bound) if bound else query


def baskets_query(spec: BasketSpec) -> exp.Expression:
    """The query of (basket_id, item) rows the itemsets are mined from."""
    if spec.baskets is None:
        return order_lines_sql(spec.level, spec.since, spec.until)
    if isinstance(spec.baskets, exp.Expression):
        return spec.baskets
    if " " not in spec.baskets.strip():  # a table name
        return exp.select("basket_id", "item").from_(exp.to_table(spec.baskets.strip()))
    return parse_sql(spec.baskets)


def _named(spec: BasketSpec) -> bool:
    """Product names exist for products of our orders, not for other baskets' items."""
    return spec.level == "product" and spec.baskets is None


def _lookup(kind: str, indices: tuple[int, ...], alias: str) -> tuple[str, str]:
    """(join, count column) for the baskets of the items at `indices` of itemset `t`."""
    if len(indices) == 1:
        return f"JOIN frequent_items AS {alias} ON {alias}.item = t.item_{indices[0]}", f"{alias}.baskets"
    i, j = indices
    return (f"JOIN frequent_pairs AS {alias} ON {alias}.item_1 = t.item_{i} AND {alias}.item_2 = t.item_{j}",
            f"{alias}.baskets")


def _side(indices: tuple[int, ...]) -> tuple[str, str]:
    first = f"t.item_{indices[0]}"
    second = f"t.item_{indices[1]}" if len(indices) > 1 else "CAST(NULL AS VARCHAR)"
    return first, second


def _rule_selects(max_size: int) -> list[str]:
    """One SELECT per way of splitting a frequent pair or triple into antecedent → consequent."""
    splits = [("frequent_pairs", (1,), (2,)), ("frequent_pairs", (2,), (1,))]
    if max_size == 3:
        for one in (1, 2, 3):
            rest = tuple(i for i in (1, 2, 3) if i != one)
            splits += [("frequent_triples", (one,), rest), ("frequent_triples", rest, (one,))]
    selects = []
    for table, antecedent, consequent in splits:
        a_join, a_count = _lookup(table, antecedent, "a")
        c_join, c_count = _lookup(table, consequent, "c")
        (a1, a2), (c1, c2) = _side(antecedent), _side(consequent)
        selects.append(f"SELECT {a1} AS antecedent_1, {a2} AS antecedent_2, {c1} AS consequent_1, "
                       f"{c2} AS consequent_2, t.baskets AS together, {a_count} AS antecedent_baskets, "
                       f"{c_count} AS consequent_baskets FROM {table} AS t {a_join} {c_join}")
    return selects


def _names_cte(named: bool) -> str:
    """Readable names of the items: product names at product level, else the item itself."""
    if named:
        return "item_names AS (SELECT product_id AS item, MIN(name) AS name FROM products GROUP BY product_id)"
    return "item_names AS (SELECT item, item AS name FROM frequent_items)"


def rules_sql(spec: BasketSpec, min_confidence: float = 0.0, min_lift: float = 0.0) -> exp.Expression:
    """Every association rule of the frequent pairs and triples, with its metrics.

    Example:
        >>> sql = rules_sql(BasketSpec(level="category", min_support=0.01)).sql(dialect="duckdb")
        >>> "frequent_triples" in sql and "conviction" in sql
        True
    """
    check_spec(spec)
    query = inline(_rules_template(spec.max_size, _named(spec)).copy(), basket_source=baskets_query(spec))
    return bind_in_place(query, min_support=float(spec.support), min_confidence=float(min_confidence),
                         min_lift=float(min_lift))


@functools.lru_cache(maxsize=8)
def _rules_template(max_size: int, named: bool) -> exp.Expression:
    """The rules query over a placeholder table `basket_source`, parsed once (about 7 kB)."""
    ctes = [FREQUENT_CTES, *([TRIPLE_CTES] if max_size == 3 else [])]
    ctes.append("rule_counts AS (\n" + "\nUNION ALL\n".join(_rule_selects(max_size)) + ")")
    ctes.append(_names_cte(named))
    joined = ",\n".join(ctes)
    sql = f"""WITH {joined},
scored AS (SELECT r.*, {METRICS} FROM rule_counts AS r CROSS JOIN basket_count AS n)
SELECT CONCAT(CONCAT_WS('{SEPARATOR}', r.antecedent_1, r.antecedent_2), ' → ',
    CONCAT_WS('{SEPARATOR}', r.consequent_1, r.consequent_2)) AS rule,
  CONCAT_WS('{SEPARATOR}', r.antecedent_1, r.antecedent_2) AS antecedent,
  CONCAT_WS('{SEPARATOR}', r.consequent_1, r.consequent_2) AS consequent,
  CONCAT_WS('{SEPARATOR}', na1.name, na2.name) AS antecedent_name,
  CONCAT_WS('{SEPARATOR}', nc1.name, nc2.name) AS consequent_name,
  CASE WHEN r.antecedent_2 IS NULL THEN 1 ELSE 2 END AS antecedent_items,
  CASE WHEN r.consequent_2 IS NULL THEN 1 ELSE 2 END AS consequent_items,
  r.together AS baskets, r.antecedent_baskets, r.consequent_baskets, r.support, r.antecedent_support,
  r.consequent_support, r.confidence, r.lift, r.leverage, r.conviction
FROM scored AS r
LEFT JOIN item_names AS na1 ON na1.item = r.antecedent_1
LEFT JOIN item_names AS na2 ON na2.item = r.antecedent_2
LEFT JOIN item_names AS nc1 ON nc1.item = r.consequent_1
LEFT JOIN item_names AS nc2 ON nc2.item = r.consequent_2
WHERE r.confidence >= :min_confidence AND r.lift >= :min_lift
ORDER BY r.lift DESC, r.support DESC, antecedent, consequent"""
    return parse_sql(sql)


def frequent_itemsets_sql(spec: BasketSpec) -> exp.Expression:
    """Every frequent itemset (items joined by ' + ') with its baskets and support.

    Example:
        >>> "frequent_pairs" in frequent_itemsets_sql(BasketSpec()).sql(dialect="duckdb")
        True
    """
    check_spec(spec)
    ctes = [FREQUENT_CTES] + ([TRIPLE_CTES] if spec.max_size == 3 else [])
    parts = ["SELECT item AS itemset, 1 AS items, baskets FROM frequent_items",
             f"SELECT CONCAT_WS('{SEPARATOR}', item_1, item_2), 2, baskets FROM frequent_pairs"]
    if spec.max_size == 3:
        parts.append(f"SELECT CONCAT_WS('{SEPARATOR}', item_1, item_2, item_3), 3, baskets FROM frequent_triples")
    joined = ",\n".join(ctes)
    sql = (f"WITH {joined},\nitemsets AS ({' UNION ALL '.join(parts)})\n"
           "SELECT s.itemset, s.items, s.baskets, CAST(s.baskets AS DOUBLE) / n.baskets AS support\n"
           "FROM itemsets AS s CROSS JOIN basket_count AS n ORDER BY s.items, s.baskets DESC, s.itemset")
    query = inline(parse_sql(sql), basket_source=baskets_query(spec))
    return exp.replace_placeholders(query, min_support=exp.convert(float(spec.support)))


# ---- readings ------------------------------------------------------------------------------


def _label(row: pd.Series, side: str) -> str:
    name = row.get(f"{side}_name")
    item = row[side]
    return item if not isinstance(name, str) or name == item else f"{name}（{item}）"


def _rule_reading(row: pd.Series) -> tuple[str, str]:
    a, c = _label(row, "antecedent"), _label(row, "consequent")
    zh = (f"买了「{a}」的订单中 {row['confidence']:.0%} 也买了「{c}」，是所有订单中该比例"
          f"（{row['consequent_support']:.1%}）的 {row['lift']:.1f} 倍；共 {int(row['baskets'])} 单同时购买。")
    en = (f"{row['confidence']:.0%} of baskets with “{a}” also hold “{c}”, {row['lift']:.1f}× its share of all "
          f"baskets ({row['consequent_support']:.1%}); {int(row['baskets'])} baskets hold both.")
    return zh, en


def _frame(engine: Engine, query: exp.Expression) -> pd.DataFrame:
    frame = query_staged(engine, query).to_pandas()
    if "conviction" in frame:  # NULL means infinite: confidence 1
        frame["conviction"] = frame["conviction"].astype("float64").fillna(np.inf)
    return frame


def association_rules(engine: Engine, level: str = "subcategory", min_support: float | None = None,
                      min_confidence: float = 0.0, min_lift: float = 0.0, max_size: int = 3,
                      since: dt.datetime | None = None, until: dt.datetime | None = None,
                      baskets: str | exp.Expression | None = None) -> Analysis:
    """Association rules between items bought together, strongest lift first.

    Args:
        engine: the workspace's engine; the rules are one query it runs.
        level: product, subcategory or category.
        min_support: the share of baskets an itemset must be in (default per level).
        min_confidence, min_lift: keep only rules at least this confident / lifted.
        max_size: 2 for pairs only, 3 to add triples.
        since, until: orders placed in [since, until).
        baskets: another source of baskets: a query or table with basket_id, item.

    Returns:
        An `Analysis` named `rules`: one row per rule with support, confidence, lift,
        leverage and conviction (infinite when the rule never fails).
    """
    spec = BasketSpec(level, min_support, max_size, since, until, baskets)
    query = rules_sql(spec, min_confidence, min_lift)
    frame = _frame(engine, query)
    readings = [_rule_reading(row) for _, row in frame.head(3).iterrows()]
    if frame.empty:
        readings = [(f"没有达到最小支持度 {spec.support:.2%} 的{LEVEL_ZH[level]}组合，请调低 min_support。",
                     f"no {level} set reaches the minimum support {spec.support:.2%}; lower min_support.")]
    return Analysis(name="rules", frame=frame[RULE_COLUMNS], sql={"rules": engine.render(query)},
                    chart=Chart("bar", "rule", ("lift",), title_zh="关联规则提升度", title_en="Lift of association rules"),
                    readings=readings, params=params_of(spec, min_confidence=min_confidence, min_lift=min_lift))


def params_of(spec: BasketSpec, **extra: object) -> dict[str, object]:
    return {"level": spec.level, "min_support": spec.support, "max_size": spec.max_size,
            "since": spec.since, "until": spec.until, **extra}


# ---- cross-sell ----------------------------------------------------------------------------


def cross_sell_sql(spec: BasketSpec, item: str | None = None, top: int = 5, min_lift: float = 1.0) -> exp.Expression:
    """The `top` items most often added to each item's baskets (one-item rules with lift >=
    `min_lift`, by confidence), for every item or for `item` only."""
    rules = rules_sql(BasketSpec(spec.level, spec.min_support, 2, spec.since, spec.until, spec.baskets),
                      min_lift=min_lift)
    ranked = parse_sql("""SELECT antecedent AS item, antecedent_name AS item_name, consequent AS suggestion,
  consequent_name AS suggestion_name, confidence AS attach_rate, lift, baskets, antecedent_baskets,
  ROW_NUMBER() OVER (PARTITION BY antecedent ORDER BY confidence DESC, lift DESC, consequent) AS rank
FROM pair_rules""")
    where = "r.rank <= :top" + (" AND r.item = :item" if item is not None else "")
    query = parse_sql(f"SELECT r.* FROM ranked AS r WHERE {where} ORDER BY r.antecedent_baskets DESC, r.item, r.rank")
    query = exp.replace_placeholders(query, top=exp.convert(int(top)), **({"item": exp.convert(item)} if item else {}))
    return inline(query, ranked=inline(ranked, pair_rules=rules))


def cross_sell(engine: Engine, item: str | None = None, level: str = "product", top: int = 5,
               min_support: float | None = None, min_lift: float = 1.0, since: dt.datetime | None = None,
               until: dt.datetime | None = None) -> Analysis:
    """Cross-sell lists: for each item (or one), what its buyers most often add, with the
    attach rate (confidence) and lift.

    Returns:
        An `Analysis` named `cross_sell`: item, suggestion, rank, attach_rate, lift, baskets.
    """
    spec = BasketSpec(level, min_support, 2, since, until)
    check_spec(spec)
    query = cross_sell_sql(spec, item, top, min_lift)
    frame = query_staged(engine, query).to_pandas().drop(columns=["antecedent_baskets"])
    if item is not None and frame.empty:
        raise AnalyticsError(
            f"no cross-sell for {level} {item!r}: it is in too few baskets or nothing is bought with it "
            f"more often than usual.", field="item", fix="check the id, lower min_support, or use a coarser level",
            message_zh=f"{LEVEL_ZH[level]} {item!r} 没有连带推荐：出现的订单太少，或没有高于平均的连带购买。",
            fix_zh="检查编号、调低 min_support，或改用更粗的层级")
    readings = [(f"「{display_name(r, 'item')}」的买家最常加购「{display_name(r, 'suggestion')}」（{r.attach_rate:.0%} 的订单，提升度 "
                 f"{r.lift:.1f}）。", f"Buyers of “{display_name(r, 'item')}” most often add “{display_name(r, 'suggestion')}” "
                 f"({r.attach_rate:.0%} of baskets, lift {r.lift:.1f}).")
                for r in frame[frame["rank"] == 1].head(3).itertuples()]
    return Analysis(name="cross_sell", frame=frame, sql={"cross_sell": engine.render(query)},
                    chart=Chart("bar", "suggestion", ("attach_rate",), series="item", title_zh="连带购买率",
                                title_en="Attach rate of cross-sell suggestions"),
                    readings=readings, params=params_of(spec, item=item, top=top, min_lift=min_lift))


def display_name(row: object, prefix: str) -> str:
    name, item = getattr(row, f"{prefix}_name"), getattr(row, prefix)
    return item if not isinstance(name, str) or name == item else name
