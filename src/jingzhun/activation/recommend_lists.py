"""The lists a person or a product page is shown, and the offline test that judges them.

Reads the tables of `recommend_sql` (catalogue, affinity, neighbours, segments and
their popular items) and builds, in the engine:

* 猜你喜欢 `guess_you_like`: what the store sells, re-ranked for the person by their
  category tastes and price band (both shrunk toward the store's, so one view does not
  decide everything) and boosted by item-to-item similarity to their recent items;
  a person with no history gets their segment's best sellers;
* 热门推荐 `popular`: their segment's most bought items;
* 新品上市 `new_arrival`: products launched in the last N days in the categories the
  person buys, at their price band;
* related products for a product page: its neighbours, then its shelf's best sellers.

Every list leaves out what is not available (not launched, out of stock) and what
the person should not be offered again: a durable they own, a consumable bought
within its repurchase cycle. Each row says why, in Chinese and English.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from sqlglot import exp

from jingzhun.activation.recommend_settings import GuessSettings
from jingzhun.activation.recommend_sql import bind

# What a person must not be offered at :as_of: a durable they bought, or a consumable
# bought less than its repurchase cycle ago (a foundation bought last week; after its
# cycle it may be recommended again).
BLOCKED_CTE = """
blocked AS (
  SELECT a.person_id, a.product_id FROM recommend_affinity AS a
  JOIN recommend_catalogue AS c ON c.product_id = a.product_id
  WHERE a.last_bought_at IS NOT NULL
    AND (NOT c.consumable OR EPOCH(:as_of) - EPOCH(a.last_bought_at) < c.cycle_days * 86400)
)"""

# The most specific segment the person belongs to, as words.
SEGMENT_ZH = """CASE WHEN level = 3 THEN '全店热卖' ELSE CONCAT(COALESCE(city, ''),
  CASE WHEN age_band IS NULL THEN '' WHEN age_band = '<25' THEN '25岁以下' WHEN age_band = '50+' THEN '50岁以上'
       ELSE CONCAT(age_band, '岁') END,
  CASE gender WHEN 'F' THEN '女性' WHEN 'M' THEN '男性' ELSE '顾客' END, '都在买') END"""
SEGMENT_EN = """CASE WHEN level = 3 THEN 'popular across the store' ELSE CONCAT('popular among ',
  CASE gender WHEN 'F' THEN 'women' WHEN 'M' THEN 'men' ELSE 'customers' END,
  CASE WHEN age_band IS NULL THEN '' WHEN age_band = '<25' THEN ' under 25' WHEN age_band = '50+' THEN ' aged 50+'
       ELSE CONCAT(' aged ', age_band) END,
  CASE WHEN city IS NULL THEN '' ELSE CONCAT(' in ', city) END) END"""

# 猜你喜欢 scores every candidate (the neighbours of the person's recent items, the best
# sellers of each category they touched, the store's best sellers) as
#
#   popularity(j) x taste(p, category of j) x (1 + boost x similarity(p, j))
#
# taste = the person's share of visits in the category over the store's share, the
# person's share shrunk toward the store's by :taste_prior visits (so one view does not
# decide everything). A visit is a person x category x local day: the five views, the
# add to cart and the purchase of one shopping trip are one choice of category, not seven.
# similarity = Σ recency(i) x neighbour score(i, j), scaled to the person's best.
# A person without any interaction gets their segment's best sellers.
GUESS_SQL = """
WITH {blocked},{focus}
recent AS (SELECT person_id, product_id, recency, strongest FROM recommend_affinity
           WHERE recency_rank <= :recent_items{in_focus}),
contributions AS (
  SELECT r.person_id, n.related_product_id AS product_id, r.product_id AS source_product_id,
    r.strongest AS source_action, r.recency * n.score AS contribution
  FROM recent AS r JOIN recommend_neighbours AS n ON n.product_id = r.product_id
),
sourced AS (
  SELECT person_id, product_id, source_product_id, source_action,
    SUM(contribution) OVER (PARTITION BY person_id, product_id) AS score,
    ROW_NUMBER() OVER (PARTITION BY person_id, product_id
                       ORDER BY ROUND(contribution, 9) DESC, source_product_id) AS pick
  FROM contributions
),
similar AS (
  SELECT person_id, product_id, source_product_id, source_action,
    ROUND(score / MAX(score) OVER (PARTITION BY person_id), 9) AS relative
  FROM sourced WHERE pick = 1 AND score > 0
),
wanted AS (
  SELECT product_id, category,
    ROUND((popularity + :popularity_prior) / (MAX(popularity) OVER () + :popularity_prior), 9) AS pop
  FROM recommend_catalogue WHERE available
),
store AS (SELECT category, SUM(weight) / SUM(SUM(weight)) OVER () AS share FROM recommend_tastes GROUP BY category),
touched AS (
  SELECT person_id, category, weight, SUM(weight) OVER (PARTITION BY person_id) AS total
  FROM recommend_tastes WHERE TRUE{in_focus}
),
people AS (SELECT DISTINCT person_id, total FROM touched),
shelf_top AS (
  SELECT product_id, COALESCE(category, '') AS category,
    ROW_NUMBER() OVER (PARTITION BY COALESCE(category, '') ORDER BY pop DESC, product_id) AS place
  FROM wanted
),
store_top AS (SELECT product_id, ROW_NUMBER() OVER (ORDER BY pop DESC, product_id) AS place FROM wanted),
candidates AS (
  SELECT person_id, product_id, MAX(similar) AS similar, MAX(source_product_id) AS source_product_id,
    MAX(source_action) AS source_action
  FROM (
    SELECT person_id, product_id, relative AS similar, source_product_id, source_action FROM similar
    UNION ALL
    SELECT t.person_id, s.product_id, 0.0, CAST(NULL AS VARCHAR), CAST(NULL AS INTEGER)
    FROM touched AS t JOIN shelf_top AS s ON s.category = t.category WHERE s.place <= :pool
    UNION ALL
    SELECT p.person_id, g.product_id, 0.0, CAST(NULL AS VARCHAR), CAST(NULL AS INTEGER)
    FROM people AS p CROSS JOIN store_top AS g WHERE g.place <= :pool
  ) AS found
  GROUP BY person_id, product_id
),
scored AS (
  SELECT c.person_id, c.product_id, c.similar, c.source_product_id, c.source_action,
    w.pop * ((COALESCE(t.weight, 0) + :taste_prior * st.share) / (p.total + :taste_prior)) / st.share AS liking,
    COALESCE(t.weight, 0) AS touched
  FROM candidates AS c
  JOIN wanted AS w ON w.product_id = c.product_id
  JOIN people AS p ON p.person_id = c.person_id
  JOIN store AS st ON st.category = COALESCE(w.category, '')
  LEFT JOIN touched AS t ON t.person_id = c.person_id AND t.category = COALESCE(w.category, '')
),
personal AS (
  SELECT person_id, product_id, ROUND(liking * (1 + :similar_boost * similar), 9) AS score,
    CASE WHEN :similar_boost > 0 AND similar >= 0.5 THEN 'similar' WHEN touched > 0 THEN 'taste' ELSE 'store' END
      AS basis,
    source_product_id, source_action
  FROM scored
),
{cold}
ranked AS (
  SELECT c.*, ROW_NUMBER() OVER (PARTITION BY c.person_id ORDER BY c.score DESC, c.product_id) AS rank
  FROM ({lists}) AS c
  LEFT JOIN blocked AS b ON b.person_id = c.person_id AND b.product_id = c.product_id
  WHERE b.person_id IS NULL
)
SELECT person_id, rank, product_id, score, basis, source_product_id, source_action FROM ranked WHERE rank <= :k
"""


COLD_CTE = """
cold AS (
  SELECT s.person_id, g.product_id, g.relative AS score, 'popular' AS basis,
    CAST(NULL AS VARCHAR) AS source_product_id, CAST(NULL AS INTEGER) AS source_action
  FROM recommend_segments AS s JOIN recommend_group_top AS g ON g.group_key = s.group_key
  LEFT JOIN people AS p ON p.person_id = s.person_id
  WHERE s.chosen AND p.person_id IS NULL
),"""

# The offline test needs the lists of test users only (persons who bought in the test
# window), all of whom have a history: a fraction of the work at the cut-off.
FOCUS_CTE = """
focus AS (SELECT DISTINCT person_id FROM recommend_interactions
          WHERE action = 'purchase' AND at > :as_of AND at <= :until),"""


def guess_sql(as_of: dt.datetime, settings: GuessSettings, k: int,
              buyers_until: dt.datetime | None = None) -> exp.Expression:
    """猜你喜欢 at `as_of`: person_id, rank, product_id, score, basis, source — for every person,
    or (`buyers_until`) only for those who bought between `as_of` and then."""
    focused = buyers_until is not None
    sql = GUESS_SQL.format(
        blocked=BLOCKED_CTE, focus=FOCUS_CTE if focused else "",
        in_focus=" AND person_id IN (SELECT person_id FROM focus)" if focused else "",
        cold="" if focused else COLD_CTE,
        lists="SELECT * FROM personal" if focused else "SELECT * FROM personal UNION ALL SELECT * FROM cold")
    values = {"as_of": as_of, "k": k, **settings.values()}
    return bind(sql, {**values, "until": buyers_until} if focused else values)


# 新品上市: a person's share of interest per category and their mean price band there
# (0 low, 1 mid, 2 high, weighted by affinity); a new product scores share x band match
# (same band 1, next band 0.5, else 0) x (1 + ln(1 + persons who already looked at it)).
NEW_ARRIVALS_CTES = """
prefs AS (
  SELECT a.person_id, c.category, SUM(a.affinity) AS weight,
    SUM(CASE WHEN c.price_band IS NOT NULL THEN a.affinity * c.price_band END)
      / NULLIF(SUM(CASE WHEN c.price_band IS NOT NULL THEN a.affinity END), 0) AS band
  FROM recommend_affinity AS a JOIN recommend_catalogue AS c ON c.product_id = a.product_id
  WHERE c.category IS NOT NULL GROUP BY a.person_id, c.category
),
shares AS (SELECT person_id, category, band, weight / SUM(weight) OVER (PARTITION BY person_id) AS share FROM prefs),
fresh AS (SELECT product_id, category, price_band FROM recommend_catalogue
          WHERE available AND launch_date IS NOT NULL AND launch_date > :new_since),
looked AS (SELECT product_id, COUNT(DISTINCT person_id) AS persons FROM recommend_interactions
           WHERE at <= :as_of GROUP BY product_id),
new_scored AS (
  SELECT s.person_id, f.product_id, ROUND(s.share
      * CASE WHEN f.price_band IS NULL OR s.band IS NULL THEN 1.0 WHEN ABS(f.price_band - s.band) <= 0.5 THEN 1.0
             WHEN ABS(f.price_band - s.band) <= 1.0 THEN 0.5 ELSE 0.0 END
      * (1 + LN(1 + COALESCE(l.persons, 0))), 9) AS score
  FROM shares AS s JOIN fresh AS f ON f.category = s.category
  LEFT JOIN looked AS l ON l.product_id = f.product_id
),
new_ranked AS (
  SELECT n.person_id, n.product_id, n.score,
    ROW_NUMBER() OVER (PARTITION BY n.person_id ORDER BY n.score DESC, n.product_id) AS rank
  FROM new_scored AS n LEFT JOIN blocked AS b ON b.person_id = n.person_id AND b.product_id = n.product_id
  WHERE n.score > 0 AND b.person_id IS NULL
)"""

POPULAR_CTE = """
popular_ranked AS (
  SELECT s.person_id, g.product_id, g.relative AS score,
    ROW_NUMBER() OVER (PARTITION BY s.person_id ORDER BY g.rank) AS rank
  FROM recommend_segments AS s JOIN recommend_group_top AS g ON g.group_key = s.group_key
  LEFT JOIN blocked AS b ON b.person_id = s.person_id AND b.product_id = g.product_id
  WHERE s.chosen AND b.person_id IS NULL
)"""

REASON_ZH = """CASE
  WHEN l.basis = 'similar' AND l.source_action = 3 THEN CONCAT('买过「', src.name, '」的顾客也常买')
  WHEN l.basis = 'similar' AND l.source_action = 2 THEN CONCAT('常与您加购的「', src.name, '」一起选购')
  WHEN l.basis = 'similar' THEN CONCAT('看过「', src.name, '」的顾客也喜欢')
  WHEN l.basis = 'taste' THEN CONCAT('您常逛的', c.category_zh, '里的热销款')
  WHEN l.basis = 'store' THEN '全店热卖'
  WHEN l.basis = 'popular' THEN sg.segment_zh
  ELSE CONCAT('新品上市：您常买的', c.category_zh, '，价位相符') END"""
REASON_EN = """CASE
  WHEN l.basis = 'similar' AND l.source_action = 3 THEN CONCAT('customers who bought ', src.name, ' also bought this')
  WHEN l.basis = 'similar' AND l.source_action = 2 THEN CONCAT('often chosen with ', src.name, ' in your cart')
  WHEN l.basis = 'similar' THEN CONCAT('customers who viewed ', src.name, ' also liked this')
  WHEN l.basis = 'taste' THEN CONCAT('a best seller in ', c.category_en, ', which you often browse')
  WHEN l.basis = 'store' THEN 'a best seller across the store'
  WHEN l.basis = 'popular' THEN sg.segment_en
  ELSE CONCAT('new in ', c.category_en, ', a category you buy, at your usual prices') END"""

RECOMMENDATIONS_SQL = f"""
WITH {BLOCKED_CTE},
{POPULAR_CTE},
{NEW_ARRIVALS_CTES},
segment AS (SELECT person_id, {SEGMENT_ZH} AS segment_zh, {SEGMENT_EN} AS segment_en
            FROM recommend_segments WHERE chosen),
lists AS (
  SELECT person_id, rank, product_id, score, 'guess_you_like' AS kind, basis, source_product_id, source_action
  FROM recommend_guess
  UNION ALL
  SELECT person_id, rank, product_id, score, 'popular', 'popular', CAST(NULL AS VARCHAR), CAST(NULL AS INTEGER)
  FROM popular_ranked WHERE rank <= :k
  UNION ALL
  SELECT person_id, rank, product_id, score, 'new_arrival', 'new', CAST(NULL AS VARCHAR), CAST(NULL AS INTEGER)
  FROM new_ranked WHERE rank <= :k
)
SELECT l.person_id, CAST(l.rank AS INTEGER) AS rank, l.product_id, CAST(l.score AS DOUBLE) AS score, l.kind,
  {REASON_ZH} AS reason_zh,
  {REASON_EN} AS reason_en,
  CASE WHEN l.basis = 'similar' THEN l.source_product_id END AS source_product_id,
  :model_version AS model_version, :computed_at AS computed_at
FROM lists AS l
JOIN recommend_catalogue AS c ON c.product_id = l.product_id
LEFT JOIN recommend_catalogue AS src ON src.product_id = l.source_product_id
LEFT JOIN segment AS sg ON sg.person_id = l.person_id
"""


def recommendations_sql(as_of: dt.datetime, new_since: dt.date, k: int, model_version: str,
                        computed_at: dt.datetime) -> exp.Expression:
    """The serving table: every person's three lists with their reasons (reads recommend_guess)."""
    return bind(RECOMMENDATIONS_SQL, {"as_of": as_of, "new_since": new_since, "k": k,
                                      "model_version": model_version, "computed_at": computed_at})


# Related products: the product's neighbours that are available, then (so every page has
# k) the best sellers of its shelf (its subcategory, else category).
RELATED_SQL = """
WITH similar AS (
  SELECT n.product_id, n.related_product_id, n.score, n.support, n.co_purchases, n.lift, 0 AS tier,
    CAST(0 AS DOUBLE) AS popularity
  FROM recommend_neighbours AS n JOIN recommend_catalogue AS c ON c.product_id = n.related_product_id AND c.available
),
shelf AS (
  SELECT product_id, COALESCE(subcategory, category) AS shelf, popularity,
    ROW_NUMBER() OVER (PARTITION BY COALESCE(subcategory, category) ORDER BY popularity DESC, product_id) AS place
  FROM recommend_catalogue WHERE available
),
fill AS (
  SELECT a.product_id, s.product_id AS related_product_id, CAST(0 AS DOUBLE) AS score, CAST(0 AS BIGINT) AS support,
    CAST(0 AS BIGINT) AS co_purchases, CAST(NULL AS DOUBLE) AS lift, 1 AS tier, s.popularity
  FROM recommend_catalogue AS a
  JOIN shelf AS s ON s.shelf = COALESCE(a.subcategory, a.category) AND s.product_id <> a.product_id
  WHERE s.place <= :k + 1
),
candidates AS (SELECT * FROM similar UNION ALL SELECT * FROM fill),
deduped AS (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY product_id, related_product_id ORDER BY tier) AS copy FROM candidates
),
ranked AS (
  SELECT *, ROW_NUMBER() OVER (PARTITION BY product_id
                               ORDER BY tier, score DESC, popularity DESC, related_product_id) AS rank
  FROM deduped WHERE copy = 1
)
SELECT r.product_id, CAST(r.rank AS INTEGER) AS rank, r.related_product_id, CAST(r.score AS DOUBLE) AS score,
  CAST(r.support AS BIGINT) AS support, CAST(r.co_purchases AS BIGINT) AS co_purchases,
  CAST(r.lift AS DOUBLE) AS lift,
  CASE WHEN r.tier = 1 THEN 'same_category' WHEN r.co_purchases > 0 THEN 'also_bought'
       ELSE 'also_viewed' END AS basis,
  CASE WHEN r.tier = 1 THEN CONCAT(c.subcategory_zh, '热卖')
       WHEN r.co_purchases > 0 THEN CONCAT('买过此商品的顾客也买了它（', CAST(r.co_purchases AS VARCHAR), ' 位）')
       ELSE '看过此商品的顾客也看了它' END AS reason_zh,
  CASE WHEN r.tier = 1 THEN CONCAT('a best seller in ', c.subcategory_en)
       WHEN r.co_purchases = 1 THEN '1 customer who bought this also bought it'
       WHEN r.co_purchases > 1 THEN CONCAT(CAST(r.co_purchases AS VARCHAR), ' customers who bought this also bought it')
       ELSE 'customers who viewed this also viewed it' END AS reason_en,
  :model_version AS model_version, :computed_at AS computed_at
FROM ranked AS r JOIN recommend_catalogue AS c ON c.product_id = r.related_product_id
WHERE r.rank <= :k
"""


def related_sql(k: int, model_version: str, computed_at: dt.datetime) -> exp.Expression:
    """k related products for every product in the catalogue, with support and reason."""
    return bind(RELATED_SQL, {"k": k, "model_version": model_version, "computed_at": computed_at})


# ---- the offline test ----------------------------------------------------------------

# Test users: persons who had any interaction before the cut-off and bought in
# (:cutoff, :until]. The baseline is the store's decayed best sellers at the cut-off,
# with the same exclusions (availability, owned, within cycle). Novelty is the mean
# self-information -log2 p(i) of a listed item, p(i) = (buyers + 1) / (all buyers + 1)
# before the cut-off.
EVALUATION_SQL = f"""
WITH {BLOCKED_CTE},
known AS (SELECT DISTINCT person_id FROM recommend_affinity),
relevant AS (
  SELECT DISTINCT i.person_id, i.product_id FROM recommend_interactions AS i
  JOIN known AS k ON k.person_id = i.person_id
  WHERE i.action = 'purchase' AND i.at > :as_of AND i.at <= :until
),
users AS (SELECT person_id, COUNT(*) AS relevant FROM relevant GROUP BY person_id),
pool AS (
  SELECT product_id, ROW_NUMBER() OVER (ORDER BY popularity DESC, product_id) AS place
  FROM recommend_catalogue WHERE available AND popularity > 0
),
baseline AS (
  SELECT u.person_id, p.product_id, ROW_NUMBER() OVER (PARTITION BY u.person_id ORDER BY p.place) AS rank
  FROM users AS u CROSS JOIN pool AS p
  LEFT JOIN blocked AS b ON b.person_id = u.person_id AND b.product_id = p.product_id
  WHERE p.place <= :pool AND b.person_id IS NULL
),
lists AS (
  SELECT 'recommender' AS model, g.person_id, g.product_id FROM recommend_guess AS g
  JOIN users AS u ON u.person_id = g.person_id WHERE g.rank <= :k
  UNION ALL
  SELECT 'popularity', person_id, product_id FROM baseline WHERE rank <= :k
),
buyers AS (SELECT CAST(COUNT(DISTINCT person_id) AS DOUBLE) AS n FROM recommend_affinity
           WHERE last_bought_at IS NOT NULL),
judged AS (
  SELECT l.model, l.person_id, l.product_id, CASE WHEN r.person_id IS NULL THEN 0 ELSE 1 END AS hit,
    -LN((COALESCE(c.buyers, 0) + 1) / (n.n + 1)) / LN(2) AS information
  FROM lists AS l
  LEFT JOIN relevant AS r ON r.person_id = l.person_id AND r.product_id = l.product_id
  LEFT JOIN recommend_catalogue AS c ON c.product_id = l.product_id
  CROSS JOIN buyers AS n
),
per_user AS (
  SELECT model, person_id, SUM(hit) AS hits, COUNT(*) AS listed, SUM(information) AS information
  FROM judged GROUP BY model, person_id
),
models AS (SELECT 'recommender' AS model UNION ALL SELECT 'popularity' AS model),
counted AS (
  SELECT m.model, COUNT(*) AS users, COALESCE(SUM(p.hits), 0) AS hits, COALESCE(SUM(p.listed), 0) AS listed,
    SUM(CASE WHEN p.hits > 0 THEN 1 ELSE 0 END) AS users_hit, SUM(u.relevant) AS relevant,
    ROUND(SUM(COALESCE(p.hits, 0) / CAST(u.relevant AS DOUBLE)), 9) AS recall_sum,
    ROUND(SUM(p.information), 6) AS information
  FROM models AS m CROSS JOIN users AS u
  LEFT JOIN per_user AS p ON p.model = m.model AND p.person_id = u.person_id
  GROUP BY m.model
),
covered AS (SELECT model, COUNT(DISTINCT product_id) AS distinct_items FROM lists GROUP BY model),
shelf AS (SELECT COUNT(*) AS available_items FROM recommend_catalogue WHERE available)
SELECT m.model, COALESCE(c.users, 0) AS users, COALESCE(c.hits, 0) AS hits, COALESCE(c.listed, 0) AS listed,
  COALESCE(c.users_hit, 0) AS users_hit, COALESCE(c.relevant, 0) AS relevant, c.recall_sum, c.information,
  COALESCE(v.distinct_items, 0) AS distinct_items, s.available_items
FROM models AS m LEFT JOIN counted AS c ON c.model = m.model LEFT JOIN covered AS v ON v.model = m.model
CROSS JOIN shelf AS s
"""


def evaluation_sql(cutoff: dt.datetime, until: dt.datetime, k: int, pool: int) -> exp.Expression:
    """Per model (recommender, popularity): users, hits, recall sum, information, coverage counts."""
    return bind(EVALUATION_SQL, {"as_of": cutoff, "until": until, "k": k, "pool": pool})


def metrics_from(counts: Mapping[str, object], k: int) -> dict[str, float | int | None]:
    """precision@k, recall@k, hit rate, coverage and novelty from one model's counted row."""
    users = int(counts["users"] or 0)
    listed = int(counts["listed"] or 0)
    available = int(counts["available_items"] or 0)

    def ratio(numerator: float, denominator: float) -> float | None:
        return round(numerator / denominator, 6) if denominator else None

    return {
        "users": users, "hits": int(counts["hits"] or 0), "listed": listed,
        f"precision_at_{k}": ratio(int(counts["hits"] or 0), k * users),
        f"recall_at_{k}": ratio(float(counts["recall_sum"] or 0.0), users),
        f"hit_rate_at_{k}": ratio(int(counts["users_hit"] or 0), users),
        "coverage": ratio(int(counts["distinct_items"] or 0), available),
        "novelty": ratio(float(counts["information"] or 0.0), listed),
    }
