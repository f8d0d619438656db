"""The SQL of the marketplace matcher (jingzhun.identity.marketplace), DuckDB dialect.

Pure text builders: nothing here touches an engine. Tables flow

    orders ──► RECEIVERS (one row per buyer and distinct receiver)
    members + receivers ──► TARGETS (what a receiver is compared with: members by full
        phone, and the receivers of the other platforms)
    RECEIVERS × target type ──► PROFILES (with that type's counts: how many share the
        masked key, the first three digits, the surname, the city)
    PROFILES ⋈ TARGETS on (type, masked phone, surname) ──► PAIRS ──► RATES ──► SCORED
        ──► candidate rows

A receiver meets a target only through that equi-join, so the work grows with the
look-alikes, not with buyers × members.
"""

from __future__ import annotations

from jingzhun.identity.config import MarketplaceSettings
from jingzhun.identity.identifiers import in_list, is_masked_phone_sql, lit, masked_phone_sql
from jingzhun.identity.registry import Registry

MEMBER_TYPE = "member_id"
HIDDEN = "10000.0"               # a masked phone hides four digits: 10^4 numbers share a key
LEVELS = ("phone_surname_city", "phone_surname")
CN_MOBILE_E164 = r"^\+861[3-9][0-9]{9}$"
RECEIVERS = "identity_work_market_receivers"   # scratch tables, dropped at the end of the run
TARGETS = "identity_work_market_targets"
PROFILES = "identity_work_market_profiles"
PAIRS = "identity_work_market_pairs"
RATES = "identity_work_market_rates"
SCORED = "identity_work_market_scored"
NEXT = "identity_work_market_next"             # the next match_candidates, before it replaces it
SCRATCH = (RECEIVERS, TARGETS, PROFILES, PAIRS, RATES, SCORED)


def surname_sql(name: str) -> str:
    """The first character of a name when it is a Chinese character (王** → 王), else NULL.

    Masked receivers keep the surname (王**, 王*怡); a garbled or Latin name gives none.
    """
    first = f"SUBSTRING(TRIM({name}), 1, 1)"
    return f"(CASE WHEN REGEXP_MATCHES({first}, '^[一-鿿]$') THEN {first} END)"


def city_sql(city: str) -> str:
    """A city compared without its 市 suffix (上海市 = 上海); NULL when empty."""
    return f"NULLIF(REGEXP_REPLACE(TRIM({city}), '市$', ''), '')"


def buyer_orders_sql(settings: MarketplaceSettings, registry: Registry) -> str:
    """One row per order that names a platform buyer: its id, receiver and shipping city.

    The buyer id is read from `customer_identifiers` under its type or an alias
    (`buyer_open_uid`), else from `customer_ref`.
    """
    phone = ("COALESCE(o.customer_identifiers->>'$.phone_masked', "
             "CASE WHEN o.customer_ref_type = 'phone_masked' THEN o.customer_ref END)")
    masked = "(o.customer_identifiers LIKE '%phone_masked%' OR o.customer_ref_type = 'phone_masked')"
    parts = []
    for kind in settings.buyer_types:
        keys = [kind, *sorted(alias for alias, target in registry.aliases.items() if target == kind)]
        values = ", ".join(f"o.customer_identifiers->>{lit('$.' + key)}" for key in keys)
        ref = f"CASE WHEN o.customer_ref_type IN {in_list(keys)} THEN o.customer_ref END"
        # A substring test first: the JSON is parsed only on orders that can name this buyer.
        named = " OR ".join([f"o.customer_ref_type IN {in_list(keys)}",
                             *(f"o.customer_identifiers LIKE {lit('%' + key + '%')}" for key in keys)])
        parts.append(f"SELECT {lit(kind)} AS buyer_type, NULLIF(TRIM(COALESCE({values}, {ref})), '') AS buyer_id, "
                     f"o.order_id, {phone} AS raw_phone, o.receiver_name, o.ship_city, o.ship_province "
                     f"FROM orders AS o WHERE {masked} AND ({named})")
    return "\nUNION ALL\n".join(parts)


def receivers_sql(settings: MarketplaceSettings, registry: Registry) -> str:
    """Every buyer's distinct receivers (masked phone, surname, city) with their order counts."""
    return f"""
WITH orders AS ({buyer_orders_sql(settings, registry)}),
receivers AS (
  SELECT buyer_type, buyer_id, order_id,
    CASE WHEN {is_masked_phone_sql('raw_phone')} THEN {masked_phone_sql('raw_phone')} END AS masked,
    {surname_sql('receiver_name')} AS surname, {city_sql('ship_city')} AS city,
    NULLIF(TRIM(ship_province), '') AS province
  FROM orders WHERE buyer_id IS NOT NULL
)
SELECT MD5(TO_JSON([buyer_type, buyer_id, masked, surname, city])) AS receiver_id,
  buyer_type, buyer_id, masked, surname, city, MIN(province) AS province, COUNT(*) AS orders
FROM receivers WHERE masked IS NOT NULL
GROUP BY buyer_type, buyer_id, masked, surname, city
"""


def targets_sql(records: str) -> str:
    """Members with a plain mobile phone (one candidate per phone: members who share it are
    one person to the graph) and every receiver, as targets of the other platforms."""
    return f"""
SELECT {lit(MEMBER_TYPE)} AS target_type, member_id AS target_id, phone AS grp,
  {masked_phone_sql('phone')} AS masked, {surname_sql('name')} AS surname, {city_sql('city')} AS city
FROM {records} WHERE REGEXP_MATCHES(phone, {lit(CN_MOBILE_E164)})
UNION ALL
SELECT buyer_type, buyer_id, buyer_type || ':' || buyer_id, masked, surname, city FROM {RECEIVERS}
"""


# Each receiver × each type it is compared with (members; the platforms after its own, so
# a pair of platforms is judged once), with the data's counts for that type.
PROFILES_SQL = f"""
WITH kinds AS (SELECT target_type, COUNT(*) AS targets, COUNT(surname) AS named FROM {TARGETS} GROUP BY target_type),
prefixes AS (SELECT target_type, SUBSTRING(masked, 1, 3) AS prefix, COUNT(DISTINCT grp) AS n FROM {TARGETS}
             GROUP BY target_type, SUBSTRING(masked, 1, 3)),
keyed AS (SELECT target_type, masked, COUNT(DISTINCT grp) AS n FROM {TARGETS} GROUP BY target_type, masked),
surnames AS (SELECT target_type, surname, COUNT(*) AS n FROM {TARGETS} WHERE surname IS NOT NULL
             GROUP BY target_type, surname),
cities AS (SELECT target_type, city, COUNT(*) AS n FROM {TARGETS} WHERE city IS NOT NULL GROUP BY target_type, city)
SELECT r.*, s.target_type, COALESCE(k.n, 0) AS key_targets, COALESCE(x.n, 0) AS prefix_targets,
  CAST(COALESCE(sn.n, 0) AS DOUBLE) / GREATEST(s.named, 1) AS surname_share,
  CAST(COALESCE(c.n, 0) AS DOUBLE) / GREATEST(s.targets, 1) AS city_share
FROM {RECEIVERS} AS r CROSS JOIN kinds AS s
LEFT JOIN keyed AS k ON k.target_type = s.target_type AND k.masked = r.masked
LEFT JOIN prefixes AS x ON x.target_type = s.target_type AND x.prefix = SUBSTRING(r.masked, 1, 3)
LEFT JOIN surnames AS sn ON sn.target_type = s.target_type AND sn.surname = r.surname
LEFT JOIN cities AS c ON c.target_type = s.target_type AND c.city = r.city
WHERE s.target_type = {lit(MEMBER_TYPE)} OR (s.target_type <> {lit(MEMBER_TYPE)} AND s.target_type > r.buyer_type)
"""

# Receiver × target, blocked on type, masked phone and surname; targets of one group (one
# phone, one buyer) are one candidate, named by the one in the city. Rejected pairs are out.
PAIRS_SQL = f"""
WITH joined AS (
  SELECT p.receiver_id, p.target_type, p.buyer_type, p.buyer_id, t.grp, t.target_id,
    CASE WHEN t.city = p.city THEN 1 ELSE 0 END AS same_city
  FROM {PROFILES} AS p
  JOIN {TARGETS} AS t ON t.target_type = p.target_type AND t.masked = p.masked AND t.surname = p.surname
  LEFT JOIN (SELECT left_type, left_value, right_type, right_value FROM match_candidates
             WHERE status = 'rejected') AS r
    ON r.left_type = p.buyer_type AND r.left_value = p.buyer_id AND r.right_type = t.target_type
    AND r.right_value = t.target_id
  WHERE r.right_value IS NULL
)
SELECT receiver_id, target_type, MIN(buyer_type) AS buyer_type, MIN(buyer_id) AS buyer_id, grp,
  MAX(same_city) AS same_city, SUBSTRING(MIN(CAST(1 - same_city AS VARCHAR) || target_id), 2) AS target_id
FROM joined GROUP BY receiver_id, target_type, grp
"""

# Per platform and type compared with: receivers that could fit (they have a surname), the
# chance fits expected over all of them per level, the fits found, and the true-fit rates.
RATES_SQL = f"""
WITH expected AS (
  SELECT buyer_type, target_type, COUNT(*) AS receivers,
    SUM(prefix_targets * surname_share * city_share) / {HIDDEN} AS chance_city,
    SUM(prefix_targets * surname_share * (1 - city_share)) / {HIDDEN} AS chance_other
  FROM {PROFILES} WHERE surname IS NOT NULL GROUP BY buyer_type, target_type
),
found AS (SELECT buyer_type, target_type, SUM(same_city) AS fits_city, SUM(1 - same_city) AS fits_other
          FROM {PAIRS} GROUP BY buyer_type, target_type)
SELECT e.*, COALESCE(f.fits_city, 0) AS fits_city, COALESCE(f.fits_other, 0) AS fits_other,
  GREATEST(COALESCE(f.fits_city, 0) - e.chance_city, 0) / GREATEST(e.receivers, 1) AS rate_city,
  GREATEST(COALESCE(f.fits_other, 0) - e.chance_other, 0) / GREATEST(e.receivers, 1) AS rate_other
FROM expected AS e LEFT JOIN found AS f ON f.buyer_type = e.buyer_type AND f.target_type = e.target_type
"""

# Each receiver × candidate: chance fits λ at its level, odds r against chance, the
# probability shared among the receiver's candidates of that type, and on its own.
SCORED_SQL = f"""
WITH odds AS (
  SELECT a.*, p.masked, p.surname, p.city, p.orders, p.key_targets, p.prefix_targets,
    p.surname_share, p.city_share,
    CASE WHEN a.same_city = 1 THEN r.rate_city ELSE r.rate_other END AS rate,
    p.prefix_targets * p.surname_share
      * CASE WHEN a.same_city = 1 THEN p.city_share ELSE 1 - p.city_share END / {HIDDEN} AS chance,
    LEAST(r.rate_city + r.rate_other, 0.999) AS rate_any
  FROM {PAIRS} AS a
  JOIN {PROFILES} AS p ON p.receiver_id = a.receiver_id AND p.target_type = a.target_type
  JOIN {RATES} AS r ON r.buyer_type = a.buyer_type AND r.target_type = a.target_type
), scored AS (
  SELECT *, CASE WHEN chance > 0 THEN rate / ((1 - rate_any) * chance) ELSE 0 END AS r FROM odds
)
SELECT *, r / (1 + SUM(r) OVER (PARTITION BY receiver_id, target_type)) AS probability, r / (1 + r) AS alone,
  COUNT(*) OVER (PARTITION BY receiver_id, target_type) AS key_surname_targets,
  SUM(same_city) OVER (PARTITION BY receiver_id, target_type) AS fitting_targets
FROM scored
"""

# Per buyer and candidate: the receiver that makes the strongest case, the conflicts,
# and the row for match_candidates. A buyer an operator has settled for a type (an
# accepted member) gets no new candidates of it; accepted pairs count as claims.
CANDIDATES_SQL = f"""
WITH best AS (
  SELECT s.*,
    ROW_NUMBER() OVER (PARTITION BY buyer_type, buyer_id, target_type, grp
                       ORDER BY probability DESC, receiver_id) AS pick,
    SUM(orders) OVER (PARTITION BY buyer_type, buyer_id, target_type, grp) AS orders_fitting,
    MAX(alone) OVER (PARTITION BY buyer_type, buyer_id, target_type, grp) AS best_alone
  FROM {SCORED} AS s
),
plausible AS (SELECT * FROM best WHERE pick = 1 AND best_alone >= :review),
accepted AS (
  SELECT c.left_type AS buyer_type, c.left_value AS buyer_id, c.right_type AS target_type, t.grp
  FROM match_candidates AS c
  JOIN (SELECT DISTINCT target_type, target_id, grp FROM {TARGETS}) AS t
    ON t.target_type = c.right_type AND t.target_id = c.right_value
  WHERE c.status = 'accepted' AND c.candidate_id LIKE :own
),
claims AS (
  SELECT buyer_type, target_type, grp, COUNT(DISTINCT buyer_id) AS buyers FROM (
    SELECT buyer_type, buyer_id, target_type, grp FROM plausible
    UNION ALL SELECT buyer_type, buyer_id, target_type, grp FROM accepted
  ) AS c GROUP BY buyer_type, target_type, grp
),
fits AS (SELECT buyer_type, buyer_id, target_type, COUNT(*) AS groups FROM plausible
         GROUP BY buyer_type, buyer_id, target_type),
totals AS (SELECT buyer_type, buyer_id, SUM(orders) AS orders FROM {RECEIVERS} GROUP BY buyer_type, buyer_id),
judged AS (
  SELECT p.*, t.orders AS buyer_orders,
    CASE WHEN f.groups > 1 THEN 'buyer_fits_several'
         WHEN c.buyers > COALESCE(l.max_per_person, c.buyers) THEN 'target_fits_several_buyers'
         ELSE 'none' END AS conflict
  FROM plausible AS p
  JOIN fits AS f ON f.buyer_type = p.buyer_type AND f.buyer_id = p.buyer_id AND f.target_type = p.target_type
  JOIN claims AS c ON c.buyer_type = p.buyer_type AND c.target_type = p.target_type AND c.grp = p.grp
  JOIN totals AS t ON t.buyer_type = p.buyer_type AND t.buyer_id = p.buyer_id
  LEFT JOIN ({{limits}}) AS l ON l.buyer_type = p.buyer_type
  LEFT JOIN (SELECT DISTINCT buyer_type, buyer_id, target_type FROM accepted) AS settled
    ON settled.buyer_type = p.buyer_type AND settled.buyer_id = p.buyer_id AND settled.target_type = p.target_type
  WHERE settled.buyer_id IS NULL
)
SELECT {{prefix}} || SUBSTRING(MD5(buyer_type || ':' || buyer_id || '|' || target_type || ':' || target_id), 1, 16)
    AS candidate_id,
  buyer_type AS left_type, buyer_id AS left_value, target_type AS right_type, target_id AS right_value,
  probability AS match_probability, LOG2(r) AS match_weight,
  CASE WHEN conflict = 'none' AND probability >= :auto THEN 'auto_merged' ELSE 'pending' END AS status,
  {{evidence}} AS evidence, :version AS model_version, :now AS created_at,
  CAST(NULL AS VARCHAR) AS reviewed_by, CAST(NULL AS TIMESTAMPTZ) AS reviewed_at
FROM judged
"""

# The evidence of one candidate, as JSON. Numbers are decimals of scale 6, so both engines
# print them alike: Spark's to_json prints a small double as 4.0E-4, and a decimal below
# 10^-6 in scientific notation too (6.02388E-7), so the tiny λ is given per million.
EVIDENCE_FIELDS = (
    ("matcher", "'marketplace'"), ("compared_with", "target_type"),
    ("level", f"CASE WHEN same_city = 1 THEN '{LEVELS[0]}' ELSE '{LEVELS[1]}' END"),
    ("phone_masked", "masked"), ("surname", "surname"), ("city", "COALESCE(city, '')"),
    ("orders", "buyer_orders"), ("orders_fitting", "orders_fitting"),
    ("sharing_key", "key_targets"), ("sharing_key_surname", "key_surname_targets"),
    ("fitting", "fitting_targets"), ("sharing_prefix", "prefix_targets"),
    ("surname_share", "CAST(surname_share AS DECIMAL(18, 6))"),
    ("city_share", "CAST(city_share AS DECIMAL(18, 6))"),
    ("expected_chance_fits_per_million", "CAST(chance * 1000000 AS DECIMAL(18, 6))"),
    ("true_fit_rate", "CAST(rate AS DECIMAL(18, 6))"),
    ("false_link_chance", "CAST(1 - probability AS DECIMAL(18, 6))"),
    ("conflict", "conflict"),
)


def evidence_sql() -> str:
    """`TO_JSON(STRUCT_PACK(...))` of the evidence fields (none NULL: Spark would drop it)."""
    return "TO_JSON(STRUCT_PACK(" + ", ".join(f"{name} := {value}" for name, value in EVIDENCE_FIELDS) + "))"


def candidates_sql(settings: MarketplaceSettings, registry: Registry, prefix: str) -> str:
    """This run's candidate rows, placeholders unbound (needs the scratch tables)."""
    limited = [(kind, registry.get(kind)) for kind in settings.buyer_types]
    rows = [f"({lit(kind)}, {id_type.max_per_person})" for kind, id_type in limited
            if id_type is not None and id_type.max_per_person is not None]
    limits = (f"SELECT * FROM (VALUES {', '.join(rows)}) AS l(buyer_type, max_per_person)" if rows else
              "SELECT CAST(NULL AS VARCHAR) AS buyer_type, CAST(NULL AS BIGINT) AS max_per_person WHERE FALSE")
    return CANDIDATES_SQL.format(limits=limits, evidence=evidence_sql(), prefix=lit(prefix))


# Keep operators' decisions and the other matchers' rows; replace this matcher's.
WRITE_SQL = """
WITH kept AS (
  SELECT * FROM match_candidates
  WHERE status IN ('accepted', 'rejected') OR candidate_id NOT LIKE :own
)
SELECT candidate_id, left_type, left_value, right_type, right_value, match_probability,
  match_weight, status, evidence, model_version, created_at, reviewed_by, reviewed_at FROM kept
{fresh}
"""

# The receiver shown for a buyer in the review queue (its most used one), for every buyer
# on either side of this matcher's candidates.
BUYERS_SQL = f"""
WITH named AS (
  SELECT DISTINCT left_type AS buyer_type, left_value AS buyer_id FROM match_candidates WHERE candidate_id LIKE :own
  UNION SELECT right_type, right_value FROM match_candidates
  WHERE candidate_id LIKE :own AND right_type <> {lit(MEMBER_TYPE)}
)
SELECT p.buyer_type, p.buyer_id, p.surname || '**' AS name, CAST(NULL AS VARCHAR) AS birthday,
  CAST(NULL AS VARCHAR) AS gender, p.province, p.city, p.masked AS phone, CAST(t.orders AS BIGINT) AS orders
FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY buyer_type, buyer_id ORDER BY orders DESC, receiver_id) AS n
      FROM {RECEIVERS}) AS p
JOIN (SELECT buyer_type, buyer_id, SUM(orders) AS orders FROM {RECEIVERS} GROUP BY buyer_type, buyer_id) AS t
  ON t.buyer_type = p.buyer_type AND t.buyer_id = p.buyer_id
JOIN named AS c ON c.buyer_type = p.buyer_type AND c.buyer_id = p.buyer_id
WHERE p.n = 1
"""
