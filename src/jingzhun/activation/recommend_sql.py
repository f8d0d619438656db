"""The SELECTs behind recommendations, authored in DuckDB's dialect, run on any engine.

Everything a recommendation needs is computed by the engine, so the same queries run
on one laptop and on a Spark cluster:

1. `recommend_interactions`: every purchase (kept orders), add-to-cart and product view,
   attributed to its person through `record_persons`, product ids resolved through the
   catalogue (sku, else barcode).
2. `recommend_catalogue`: one row per product at `:as_of`: launched, in stock (stock on
   hand from the inventory ledger; no stock data means available), price band within its
   category, consumable with its repurchase cycle, decayed popularity.
3. `recommend_affinity`: person x product, the time-decayed sum of weighted interactions
   (purchase > cart > view), once with the similarity half-life and once with the
   shorter recency half-life; `recommend_tastes`: person x category, decayed visits.
4. `recommend_neighbours`: item-to-item cosine similarity over the persons' affinity
   vectors (a self-join on person, each person bounded to their strongest items),
   shrunk by support, top-N per item, with support, co-purchases and lift.
5. `recommend_segments` and `recommend_group_top`: each person's segment (gender x age
   band x city, then broader until it has enough buyers) and its most popular items.
6. The lists (recommend_lists.py): 猜你喜欢 (popularity re-ranked by the person's tastes,
   price band and similarity to their recent items), 热门推荐 (segment popularity),
   新品上市 (new products in the person's categories and price band), and related
   products for product pages.

Scores are rounded to 9 decimals before ranking and ties are broken by product id, so
DuckDB and Spark produce the same lists row for row. Values are bound as literals
(`:name` placeholders), never formatted into the text; table names are our constants.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping

from sqlglot import exp

from jingzhun.engine import parse_sql
from jingzhun.profiles.rules_compiler import literal

INTERACTIONS = "recommend_interactions"
STOCK_LINES = "recommend_stock_lines"
CATALOGUE = "recommend_catalogue"
AFFINITY = "recommend_affinity"
NEIGHBOURS = "recommend_neighbours"
SEGMENTS = "recommend_segments"
GROUP_TOP = "recommend_group_top"
GUESS = "recommend_guess"
TASTES = "recommend_tastes"

KINDS = ("guess_you_like", "popular", "new_arrival")
SECONDS_PER_DAY = 86400.0


def bind(sql: str, values: Mapping[str, object]) -> exp.Expression:
    """Parse DuckDB-dialect SQL and bind `:name` placeholders (values or expressions)."""
    bound = {name: value if isinstance(value, exp.Expression) else literal(value) for name, value in values.items()}
    return exp.replace_placeholders(parse_sql(sql), **bound)


def decay_rate(half_life_days: float) -> float:
    """Per-second rate r so that EXP(-r * age_seconds) halves every `half_life_days`."""
    return math.log(2) / (half_life_days * SECONDS_PER_DAY)


# ---- 1. interactions -----------------------------------------------------------------

# Kept orders only: a cancelled or refunded purchase says the person did not want it.
INTERACTIONS_SQL = """
WITH known AS (SELECT DISTINCT product_id FROM products WHERE product_id IS NOT NULL),
by_sku AS (SELECT sku, MIN(product_id) AS product_id FROM products
           WHERE sku IS NOT NULL AND product_id IS NOT NULL GROUP BY sku),
by_barcode AS (SELECT barcode, MIN(product_id) AS product_id FROM products
               WHERE barcode IS NOT NULL AND product_id IS NOT NULL GROUP BY barcode),
purchases AS (
  SELECT rp.person_id, COALESCE(k.product_id, s.product_id, b.product_id) AS product_id,
    'purchase' AS action, o.placed_at AS at
  FROM orders AS o
  JOIN record_persons AS rp ON rp.record_kind = 'order' AND rp.record_id = o.order_id
  JOIN persons AS pe ON pe.person_id = rp.person_id AND pe.status = 'active'
  JOIN order_items AS i ON i.order_id = o.order_id
  LEFT JOIN known AS k ON k.product_id = i.product_id
  LEFT JOIN by_sku AS s ON s.sku = i.sku
  LEFT JOIN by_barcode AS b ON b.barcode = i.barcode
  WHERE o.placed_at <= :as_of AND COALESCE(LOWER(o.status), '') NOT IN ('cancelled', 'refunded')
    AND COALESCE(i.quantity, 1) > 0
),
behaviour AS (
  SELECT rp.person_id, COALESCE(k.product_id, s.product_id) AS product_id,
    CASE WHEN e.event = 'Product Added' THEN 'cart' ELSE 'view' END AS action, e."timestamp" AS at
  FROM events AS e
  JOIN record_persons AS rp ON rp.record_kind = 'event' AND rp.record_id = e.message_id
  JOIN persons AS pe ON pe.person_id = rp.person_id AND pe.status = 'active'
  LEFT JOIN known AS k ON k.product_id = e.properties->>'$.product_id'
  LEFT JOIN by_sku AS s ON s.sku = e.properties->>'$.sku'
  WHERE e.event IN ('Product Viewed', 'Product Added') AND e."timestamp" <= :as_of
)
SELECT person_id, product_id, action, at FROM purchases WHERE product_id IS NOT NULL
UNION ALL
SELECT person_id, product_id, action, at FROM behaviour WHERE product_id IS NOT NULL
"""


def interactions_sql(as_of: dt.datetime) -> exp.Expression:
    """Every interaction up to `as_of`: person_id, product_id, action (purchase | cart | view), at."""
    return bind(INTERACTIONS_SQL, {"as_of": as_of})


# ---- 2. catalogue --------------------------------------------------------------------

# A product is out of stock when the ledger knows it and no location holds any; a
# product the ledger has never seen is available (no stock data is not "sold out").
CATALOGUE_SQL = """
WITH stock AS (SELECT product_id, SUM(CASE WHEN on_hand > 0 THEN on_hand ELSE 0 END) AS on_hand
               FROM ({stock}) AS s WHERE product_id IS NOT NULL GROUP BY product_id),
one AS (
  SELECT product_id,
    CASE WHEN COUNT(DISTINCT name) > 1 THEN REGEXP_REPLACE(MIN(name), ' [^ ]*$', '') ELSE MIN(name) END AS name,
    MIN(category) AS category, MIN(subcategory) AS subcategory, CAST(MIN(price) AS DOUBLE) AS price,
    MIN(launch_date) AS launch_date, MAX(CASE WHEN is_consumable THEN 1 ELSE 0 END) AS consumable
  FROM products WHERE product_id IS NOT NULL GROUP BY product_id
),
terciles AS (
  SELECT category, QUANTILE_CONT(price, 0.3333333333333333) AS low_max,
    QUANTILE_CONT(price, 0.6666666666666666) AS high_min
  FROM one WHERE price IS NOT NULL AND category IS NOT NULL GROUP BY category
),
bought AS (
  SELECT product_id, SUM(EXP(-:popularity_rate * (EPOCH(:as_of) - EPOCH(at)))) AS popularity,
    COUNT(DISTINCT person_id) AS buyers
  FROM recommend_interactions WHERE action = 'purchase' AND at <= :as_of GROUP BY product_id
)
SELECT p.product_id, p.name, p.category, p.subcategory, p.price, p.launch_date,
  p.consumable = 1 AS consumable, CAST(:cycle_days AS INTEGER) AS cycle_days,
  CASE WHEN p.price IS NULL OR t.category IS NULL THEN NULL WHEN p.price <= t.low_max THEN 0
       WHEN p.price > t.high_min THEN 2 ELSE 1 END AS price_band,
  s.on_hand,
  (p.launch_date IS NULL OR p.launch_date <= :as_of_day) AND (s.on_hand IS NULL OR s.on_hand > 0) AS available,
  ROUND(COALESCE(b.popularity, 0), 9) AS popularity, COALESCE(b.buyers, 0) AS buyers,
  :category_zh AS category_zh, :category_en AS category_en,
  :subcategory_zh AS subcategory_zh, :subcategory_en AS subcategory_en
FROM one AS p
LEFT JOIN stock AS s ON s.product_id = p.product_id
LEFT JOIN terciles AS t ON t.category = p.category
LEFT JOIN bought AS b ON b.product_id = p.product_id
"""


def _lookup(column: exp.Expression, mapping: Mapping[str, object], default: exp.Expression) -> exp.Expression:
    """CASE column WHEN key THEN value … ELSE default END (keys sorted, so the SQL is stable)."""
    if not mapping:
        return default
    case = exp.Case()
    for key in sorted(mapping):
        case = case.when(exp.EQ(this=column.copy(), expression=exp.convert(key)), exp.convert(mapping[key]))
    return case.else_(default)


def cycle_days_sql(cycles: Mapping[str, int], default: int) -> exp.Expression:
    """A product's repurchase cycle: by subcategory, else by category, else the default."""
    by_category = _lookup(exp.column("category", "p"), cycles, exp.convert(default))
    return _lookup(exp.column("subcategory", "p"), cycles, by_category)


def label_sql(column: str, labels: Mapping[str, str]) -> exp.Expression:
    """A category code as the reader's word for it (the code itself when unlabelled)."""
    return _lookup(exp.column(column, "p"), labels, exp.column(column, "p"))


def catalogue_sql(stock: exp.Expression, as_of: dt.datetime, as_of_day: dt.date, popularity_rate: float,
                  cycle_days: exp.Expression, labels: Mapping[str, Mapping[str, str]]) -> exp.Expression:
    """One row per product at `as_of`, over `stock` (a stock-on-hand SELECT per location x item)."""
    zh = {key: value["zh"] for key, value in labels.items()}
    en = {key: value["en"] for key, value in labels.items()}
    return bind(CATALOGUE_SQL.format(stock=stock.sql(dialect="duckdb")), {
        "as_of": as_of, "as_of_day": as_of_day, "popularity_rate": popularity_rate, "cycle_days": cycle_days,
        "category_zh": label_sql("category", zh), "category_en": label_sql("category", en),
        "subcategory_zh": label_sql("subcategory", zh), "subcategory_en": label_sql("subcategory", en),
    })


# ---- 3. affinity ---------------------------------------------------------------------

AFFINITY_SQL = """
WITH weighted AS (
  SELECT person_id, product_id, action, at, EPOCH(:as_of) - EPOCH(at) AS age,
    CASE action WHEN 'purchase' THEN :w_purchase WHEN 'cart' THEN :w_cart ELSE :w_view END AS base
  FROM recommend_interactions WHERE at <= :as_of
),
summed AS (
  SELECT person_id, product_id,
    ROUND(SUM(base * EXP(-:similarity_rate * age)), 9) AS affinity,
    ROUND(SUM(base * EXP(-:recent_rate * age)), 9) AS recency,
    MAX(CASE WHEN action = 'purchase' THEN at END) AS last_bought_at,
    MAX(CASE action WHEN 'purchase' THEN 3 WHEN 'cart' THEN 2 ELSE 1 END) AS strongest
  FROM weighted GROUP BY person_id, product_id
)
SELECT person_id, product_id, affinity, recency, last_bought_at, strongest,
  ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY affinity DESC, product_id) AS affinity_rank,
  ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY recency DESC, product_id) AS recency_rank
FROM summed WHERE affinity > 0
"""


def affinity_sql(as_of: dt.datetime, weights: Mapping[str, float], similarity_rate: float,
                 recent_rate: float) -> exp.Expression:
    """Person x product interest at `as_of`: decayed weighted interactions, ranked per person."""
    return bind(AFFINITY_SQL, {"as_of": as_of, "similarity_rate": similarity_rate, "recent_rate": recent_rate,
                               **{f"w_{action}": float(weight) for action, weight in weights.items()}})


# A visit is a person x category x local day: the views, the add to cart and the purchase
# of one shopping trip are one choice of category, not seven. Tastes = decayed visits.
TASTES_SQL = """
WITH visits AS (
  SELECT i.person_id, COALESCE(c.category, '') AS category,
    CAST(CAST(i.at AS TIMESTAMPTZ) AT TIME ZONE :tz AS DATE) AS day, MAX(i.at) AS at
  FROM recommend_interactions AS i JOIN recommend_catalogue AS c ON c.product_id = i.product_id
  WHERE i.at <= :as_of
  GROUP BY i.person_id, COALESCE(c.category, ''), CAST(CAST(i.at AS TIMESTAMPTZ) AT TIME ZONE :tz AS DATE)
)
SELECT person_id, category, ROUND(SUM(EXP(-:taste_rate * (EPOCH(:as_of) - EPOCH(at)))), 9) AS weight
FROM visits GROUP BY person_id, category
"""


def tastes_sql(as_of: dt.datetime, timezone: str, taste_rate: float) -> exp.Expression:
    """Person x category: decayed visits (person x category x local day) up to `as_of`."""
    return bind(TASTES_SQL, {"as_of": as_of, "tz": timezone, "taste_rate": taste_rate})


# ---- 4. item-to-item similarity ------------------------------------------------------

# Asymmetric cosine (Aiolli 2013): Σ_p a_pi · a_pj / (‖a_i‖^(2α) · ‖a_j‖^(2(1-α))), shrunk by
# support / (support + λ) so a pair seen together by one person does not outrank one seen by
# twenty. α = 0.5 is the cosine; towards 1 it becomes "of those who wanted i, how much did
# they want j", which favours products many people want. Each person
# contributes only their `:max_items` strongest products, which bounds the self-join
# (a person with n items makes n·(n-1) pairs).
NEIGHBOURS_SQL = """
WITH basis AS (
  SELECT person_id, product_id, affinity, CASE WHEN last_bought_at IS NULL THEN 0 ELSE 1 END AS bought
  FROM recommend_affinity WHERE affinity_rank <= :max_items
),
norms AS (SELECT product_id, SQRT(SUM(affinity * affinity)) AS norm, COUNT(*) AS persons
          FROM basis GROUP BY product_id),
population AS (SELECT CAST(COUNT(DISTINCT person_id) AS DOUBLE) AS persons FROM basis),
pairs AS (
  SELECT x.product_id, y.product_id AS related_product_id, SUM(x.affinity * y.affinity) AS dot,
    COUNT(*) AS support, SUM(x.bought * y.bought) AS co_purchases
  FROM basis AS x JOIN basis AS y ON x.person_id = y.person_id AND x.product_id <> y.product_id
  GROUP BY x.product_id, y.product_id
),
scored AS (
  SELECT p.product_id, p.related_product_id, p.support, p.co_purchases,
    ROUND(p.dot / (POWER(a.norm, 2 * :alpha) * POWER(b.norm, 2 - 2 * :alpha))
      * p.support / (p.support + :shrinkage), 9) AS score,
    ROUND(p.support * n.persons / CAST(a.persons * b.persons AS DOUBLE), 6) AS lift
  FROM pairs AS p
  JOIN norms AS a ON a.product_id = p.product_id
  JOIN norms AS b ON b.product_id = p.related_product_id
  CROSS JOIN population AS n
),
ranked AS (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY product_id ORDER BY score DESC, related_product_id) AS rank
  FROM scored
)
SELECT product_id, related_product_id, score, support, co_purchases, lift, rank FROM ranked
WHERE rank <= :neighbours
"""


def neighbours_sql(max_items: int, alpha: float, shrinkage: float, neighbours: int) -> exp.Expression:
    """Each product's most similar products: score, support, co_purchases, lift, rank."""
    return bind(NEIGHBOURS_SQL, {"max_items": max_items, "alpha": float(alpha), "shrinkage": float(shrinkage),
                                 "neighbours": neighbours})


# ---- 5. segments and their popular items ---------------------------------------------

# Level 0 is the narrowest segment (gender x age band x city), 3 everyone; a person's
# segment is the narrowest one with at least :min_buyers buyers before :as_of.
SEGMENTS_SQL = """
WITH people AS (
  SELECT p.person_id, t.gender, t.age_band, t.city
  FROM persons AS p LEFT JOIN person_traits AS t ON t.person_id = p.person_id
  WHERE p.status = 'active'
),
levels AS (
  SELECT person_id, 0 AS level, gender, age_band, city FROM people
  WHERE gender IS NOT NULL AND age_band IS NOT NULL AND city IS NOT NULL
  UNION ALL
  SELECT person_id, 1, gender, age_band, CAST(NULL AS VARCHAR) FROM people
  WHERE gender IS NOT NULL AND age_band IS NOT NULL
  UNION ALL
  SELECT person_id, 2, gender, CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR) FROM people WHERE gender IS NOT NULL
  UNION ALL
  SELECT person_id, 3, CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR) FROM people
),
keyed AS (
  SELECT *, CONCAT(CAST(level AS VARCHAR), '|', COALESCE(gender, ''), '|', COALESCE(age_band, ''), '|',
                   COALESCE(city, '')) AS group_key
  FROM levels
),
buyers AS (SELECT DISTINCT person_id FROM recommend_interactions WHERE action = 'purchase' AND at <= :as_of),
sizes AS (SELECT k.group_key, COUNT(*) AS buyers FROM keyed AS k JOIN buyers AS b ON b.person_id = k.person_id
          GROUP BY k.group_key),
picked AS (
  SELECT k.*, COALESCE(s.buyers, 0) AS group_buyers,
    ROW_NUMBER() OVER (PARTITION BY k.person_id ORDER BY
      CASE WHEN COALESCE(s.buyers, 0) >= :min_buyers OR k.level = 3 THEN 0 ELSE 1 END, k.level) AS pick
  FROM keyed AS k LEFT JOIN sizes AS s ON s.group_key = k.group_key
)
SELECT person_id, level, group_key, gender, age_band, city, group_buyers, pick = 1 AS chosen FROM picked
"""


def segments_sql(as_of: dt.datetime, min_buyers: int) -> exp.Expression:
    """Every person at every segment level, the chosen (narrowest big enough) one flagged."""
    return bind(SEGMENTS_SQL, {"as_of": as_of, "min_buyers": min_buyers})


GROUP_TOP_SQL = """
WITH used AS (SELECT DISTINCT group_key FROM recommend_segments WHERE chosen),
members AS (SELECT s.person_id, s.group_key FROM recommend_segments AS s JOIN used AS u ON u.group_key = s.group_key),
bought AS (
  SELECT m.group_key, i.product_id, SUM(EXP(-:popularity_rate * (EPOCH(:as_of) - EPOCH(i.at)))) AS popularity
  FROM recommend_interactions AS i JOIN members AS m ON m.person_id = i.person_id
  WHERE i.action = 'purchase' AND i.at <= :as_of
  GROUP BY m.group_key, i.product_id
),
ranked AS (
  SELECT b.group_key, b.product_id, ROUND(b.popularity, 9) AS popularity,
    ROW_NUMBER() OVER (PARTITION BY b.group_key ORDER BY ROUND(b.popularity, 9) DESC, b.product_id) AS rank
  FROM bought AS b JOIN recommend_catalogue AS c ON c.product_id = b.product_id AND c.available
)
SELECT group_key, product_id, popularity,
  ROUND(popularity / MAX(popularity) OVER (PARTITION BY group_key), 9) AS relative, rank
FROM ranked WHERE rank <= :pool
"""


def group_top_sql(as_of: dt.datetime, popularity_rate: float, pool: int) -> exp.Expression:
    """The `pool` most bought available products of every chosen segment, decayed."""
    return bind(GROUP_TOP_SQL, {"as_of": as_of, "popularity_rate": popularity_rate, "pool": pool})
